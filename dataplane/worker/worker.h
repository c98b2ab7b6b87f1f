// Worker: one poll-mode lcore. Its per-packet work is an rte_graph of small
// stages (dataplane/graph/nodes.h lists them and their edges); the loop is
// the removal requests for flows it owns, the graph walk, the tx bursts, the
// RCU quiescent report and a slice of conntrack aging.
//
// Concurrency: a Worker is used by one lcore only. What it shares with other
// workers is documented on each shared table: TablePublisher (read-only
// generations, RCU), ServiceDirectory (lock-free reads, RCU),
// ConntrackTable (lock-free reads, serialised inserts, removal requests
// from the control thread), NeighborTable (lock-free reads, serialised
// writes). The worker loads the table generation once per walk and reports
// a quiescent state to `qsbr` after the walk (PollOnce), never while a node
// holds a TableSet, Service or conntrack pointer. NodeStats() and counters() may be read from
// another thread (racy reads of single 64-bit words).
//
// The per-packet path does no allocation, takes no lock, logs nothing and
// makes no virtual call (the graph calls each node through one function
// pointer per burst). Exceptions to that, all off the established-flow path:
// a flow's first packet (conntrack insert takes a spinlock), ARP (neighbour
// writes take a spinlock; ARP requests allocate an mbuf), and tracing, which
// is off unless a Tracer is given.
#ifndef SLUICE_DATAPLANE_WORKER_WORKER_H_
#define SLUICE_DATAPLANE_WORKER_WORKER_H_

#include <rte_graph.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/common/counters.h"
#include "dataplane/common/types.h"
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/graph/trace.h"

namespace sluice {

class Worker {
 public:
  // `id` is 0..workers-1 and also this worker's QSBR thread id. Every packet
  // it is given must come from a pool with kMbufPrivSize private bytes (as
  // `pool`, which also supplies ARP requests). `tracer` may be null. Aborts
  // with a message when the graph cannot be created (a setup error).
  Worker(uint16_t id, const WorkerShared& shared, const WorkerPorts& ports, rte_mempool* pool,
         Tracer* tracer);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Registers with QSBR and marks the worker online; call on its lcore.
  void Start();
  void Stop();

  // One loop iteration: removal requests for its flows, one rx burst per
  // port through the graph, the tx bursts, a quiescent-state report, and a
  // slice of conntrack aging.
  // Returns the number of packets received. `now` is in TSC cycles.
  uint32_t PollOnce(uint64_t now);

  // The graph on one burst (n <= kRxBurstPerPort) that arrived on `ingress`.
  // Outputs are left in the tx buffers: Flush() sends them, TakeTx() hands
  // them to a test or benchmark instead.
  void ProcessBurst(PortRole ingress, rte_mbuf** pkts, uint16_t n, uint64_t now);
  void Flush();
  uint16_t TakeTx(PortRole port, rte_mbuf** out);

  // The most TakeTx returns for one port.
  static constexpr uint16_t kTxCapacity = WorkerContext::kTxCapacity;

  // Attaches (or, with nullptr, detaches) a Tracer; not while the worker runs.
  void SetTracer(Tracer* tracer) { ctx_->tracer = tracer; }

  const WorkerCounters& counters() const { return ctx_->counters; }
  uint16_t id() const { return ctx_->id; }
  // rte_graph's per-node statistics for this worker's graph.
  std::vector<NodeStats> Stats() const { return GraphNodeStats(graph_name_); }

 private:
  void Walk(uint64_t now);
  void ServiceHeldPackets();
  void Queue(PortRole port, rte_mbuf* m);  // straight to the tx buffers

  std::unique_ptr<WorkerContext> ctx_;
  std::string graph_name_;
  rte_graph* graph_ = nullptr;
  std::unique_ptr<NeighborHoldQueue> hold_;
  // Aging: the worker's conntrack slice is swept once per kSweepSeconds in
  // steps of sweep_budget_ entries, one step per sweep_step_ TSC cycles. An
  // idle entry is thus removed at most kSweepSeconds after its timeout (the
  // kernel's conntrack GC allows far more); a faster sweep pulls the whole
  // table through the caches (1 s at 2^20 entries: 64 MB/s, measurably
  // slower established forwarding in bench/).
  // Removal requests (ConntrackTable::RequestRemoval) taken per loop at
  // most: a large cleanup is spread over loops, never one long pause.
  static constexpr uint32_t kRemovalBudget = 256;
  static constexpr uint32_t kSweepSeconds = 4;
  static constexpr uint32_t kSweepStepsPerSecond = 1000;
  static constexpr uint32_t kMinSweepBudget = 16;
  uint64_t sweep_step_ = 0;
  uint64_t next_sweep_ = 0;
  uint32_t sweep_budget_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_WORKER_WORKER_H_
