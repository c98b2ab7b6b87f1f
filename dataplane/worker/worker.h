// Worker: one poll-mode lcore's loop and the per-burst pipeline.
//
//   rx burst (per port) -> parse -> [ARP] / [VXLAN decap] -> conntrack bulk
//   lookup -> hits: NAT from the entry | misses: Service bulk lookup ->
//   slow path (endpoint choice, masquerade decision, SNAT port, conntrack
//   insert) -> route -> TTL -> [VXLAN encap] -> neighbour bulk lookup ->
//   per-port tx buffer -> one tx burst per port.
//
// Concurrency: a Worker is used by one lcore only. What it shares with other
// workers is documented on each shared table: TablePublisher (read-only
// generations, RCU), ConntrackTable (lock-free reads, serialised inserts),
// NeighborTable (lock-free reads, serialised writes). The worker reports a
// quiescent state to `qsbr` after every loop iteration (PollOnce), i.e.
// between bursts, never while it holds a TableSet or conntrack pointer.
//
// The per-packet path does no allocation, takes no lock, logs nothing and
// makes no virtual call. Exceptions to that, all off the established-flow
// path: a flow's first packet (conntrack insert takes a spinlock), ARP
// (neighbour writes take a spinlock; ARP requests allocate an mbuf), and
// tracing, which is off unless a Tracer is given and then formats strings.
#ifndef SLUICE_DATAPLANE_WORKER_WORKER_H_
#define SLUICE_DATAPLANE_WORKER_WORKER_H_

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/common/counters.h"
#include "dataplane/common/types.h"
#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/parse/packet_parser.h"
#include "dataplane/route/route.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// Collects a readable account of each packet's journey (sluice-replay
// --trace). Each worker has its own; lines carry the packet's sequence
// number so that they can be merged in input order.
class Tracer {
 public:
  struct Line {
    uint64_t seq;
    uint16_t worker;
    std::string text;
  };
  // `seq_offset`: mbuf dynamic field holding the packet's sequence number,
  // or -1 (all packets then have seq 0).
  Tracer(uint16_t worker, int seq_offset) : worker_(worker), seq_offset_(seq_offset) {}
  void Note(const rte_mbuf* m, std::string text);
  std::vector<Line>& lines() { return lines_; }

 private:
  uint16_t worker_;
  int seq_offset_;
  std::vector<Line> lines_;
};

// Everything node-wide a worker uses; not owned.
struct WorkerShared {
  TablePublisher* tables = nullptr;
  ConntrackTable* conntrack = nullptr;
  NeighborTable* neighbors = nullptr;
  rte_rcu_qsbr* qsbr = nullptr;
  uint16_t workers = 1;
};

struct WorkerPorts {
  bool present[kPortRoleCount] = {false, false, false};
  uint16_t port_id[kPortRoleCount] = {0, 0, 0};
  uint16_t queue = 0;  // this worker's rx and tx queue on every port
};

class Worker {
 public:
  // `id` is 0..workers-1 and also this worker's QSBR thread id. `pool`
  // supplies ARP requests. `tracer` may be null.
  Worker(uint16_t id, const WorkerShared& shared, const WorkerPorts& ports, rte_mempool* pool,
         Tracer* tracer);

  // Registers with QSBR and marks the worker online; call on its lcore.
  void Start();
  void Stop();

  // One loop iteration: one rx burst per port, processed and transmitted,
  // a quiescent-state report, and a slice of conntrack aging. Returns the
  // number of packets received. `now` is in TSC cycles.
  uint32_t PollOnce(uint64_t now);

  // The pipeline on one burst (n <= kBurstSize) that arrived on `ingress`.
  // Outputs are left in the tx buffers: Flush() sends them, TakeTx() hands
  // them to a test or benchmark instead.
  void ProcessBurst(PortRole ingress, rte_mbuf** pkts, uint16_t n, uint64_t now);
  void Flush();
  uint16_t TakeTx(PortRole port, rte_mbuf** out);

  // What one PollOnce can queue for one port (a burst from each port), and
  // so the most TakeTx returns.
  static constexpr uint16_t kTxCapacity = kPortRoleCount * kBurstSize;

  const WorkerCounters& counters() const { return counters_; }
  uint16_t id() const { return id_; }

 private:
  void Drop(rte_mbuf* m, Counter reason);
  void Enqueue(PortRole port, rte_mbuf* m);
  void HandleArp(PortRole ingress, rte_mbuf* m, const PacketMeta& meta, const TableSet& t,
                 uint64_t now);
  // Slow path for a conntrack miss. Returns a conntrack ref, or kMiss with
  // *drop set when the packet must be dropped, or kMiss with *drop ==
  // kCounterCount when the packet needs no NAT.
  uint32_t NewFlow(rte_mbuf* m, const PacketMeta& meta, const ServiceEntry* svc, const TableSet& t,
                   uint64_t now, Counter* drop);
  uint32_t InsertWithSnat(rte_mbuf* m, ConntrackEntry& proto, uint64_t now, Counter* drop);
  void ApplyTranslation(rte_mbuf* m, PacketMeta* meta, uint32_t ref);
  void SendArpRequest(PortRole port, uint32_t target_ip, const TableSet& t);

  uint16_t id_;
  WorkerShared shared_;
  WorkerPorts ports_;
  rte_mempool* pool_;
  Tracer* tracer_;
  uint16_t ip_id_ = 0;
  uint64_t loops_ = 0;
  WorkerCounters counters_;
  rte_mbuf* tx_[kPortRoleCount][kTxCapacity];
  uint16_t tx_count_[kPortRoleCount] = {0, 0, 0};
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_WORKER_WORKER_H_
