// NodeRuntime: everything a running node holds besides its ports, shared by
// sluice-node (real ports) and sluice-replay (captures): the QSBR variable,
// the table publisher, the Service directory and its programmer, the
// connection and neighbour tables, one Worker per worker lcore, and the
// counters report.
//
// Threading: Create, Reload, services(), Launch, StopAndJoin and the reports
// run on the main lcore (the control thread); workers run on their own
// lcores. Reload may be called while workers run: it publishes a new
// generation, returns after the old one has been freed (one grace period),
// and applies the model's Services as a full sync (unchanged Service ports
// keep their slot, endpoint set and flows).
#ifndef SLUICE_APP_NODE_RUNTIME_H_
#define SLUICE_APP_NODE_RUNTIME_H_

#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"
#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/state/service_programmer.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/service_directory.h"
#include "dataplane/tables/table_set.h"
#include "dataplane/worker/worker.h"

namespace sluice {

class NodeRuntime {
 public:
  struct Config {
    uint16_t workers = 1;
    uint32_t conntrack_capacity = 1 << 20;
    bool trace = false;
    int seq_offset = -1;  // mbuf dynfield with the packet's sequence (traces)
    // Quotas, static capacity and times; Create sets qsbr and the clock.
    NeighborTable::Config neighbors;
    // Capacities (Service ports, keys, endpoints per set); Create sets qsbr.
    ServiceDirectory::Config services;
  };
  // Call after rte_eal_init with at least `workers` worker lcores. Errors:
  // ResourceExhausted (DPDK memory), or the table build's error for `model`.
  static absl::StatusOr<std::unique_ptr<NodeRuntime>> Create(const Config& config,
                                                             const ClusterModel& model,
                                                             const WorkerPorts& ports,
                                                             rte_mempool* pool);
  // The same without tables: workers drop what they receive (no_tables)
  // until the first PublishNetwork or Reload (sluice-node fed by
  // sluice-control).
  static absl::StatusOr<std::unique_ptr<NodeRuntime>> Create(const Config& config,
                                                             const WorkerPorts& ports,
                                                             rte_mempool* pool);
  // Frees every DPDK object; call before rte_eal_cleanup.
  ~NodeRuntime();

  // Builds and checks everything a reload changes (the generation, the
  // static neighbour set and the Service sync), then applies it. On error
  // nothing changes: the last good tables, Services and static neighbours
  // keep serving.
  absl::Status Reload(const ClusterModel& model);

  // Builds the node view and subnet map of `model` (Services are not in it:
  // they go through services()) and publishes them as the next generation;
  // returns it. On error nothing changes.
  absl::StatusOr<uint64_t> PublishNetwork(const ClusterModel& model);
  // Makes the static neighbours exactly `entries` (validated first: on
  // error nothing changes).
  absl::Status ReplaceStaticNeighbors(const std::vector<NeighborEntry>& entries);
  uint64_t generation() const { return publisher_->generation(); }
  bool has_tables() const { return publisher_->Current() != nullptr; }
  // The Service API (per-object changes between reloads) and the directory.
  ServiceProgrammer& services() { return *programmer_; }
  const ServiceDirectory& service_directory() const { return *services_; }
  // Posts flow removals a worker's ring had no room for (the programmer
  // keeps them); call from the control loop. Returns how many still wait.
  size_t FlushFlowRemovals() { return programmer_->FlushFlowRemovals(); }

  // Removes neighbours learned from ARP and not confirmed for the stale time
  // (NeighborTable::Age); call about once a second. Returns how many.
  uint32_t AgeNeighbors();

  void Launch();
  void StopAndJoin();
  // Packets received by all workers and fully processed (transmitted or
  // dropped).
  uint64_t Processed() const;

  // Sum of counter `c` over all workers (racy reads of live counters are
  // fine: each is a single aligned 64-bit word).
  uint64_t Total(Counter c) const;
  ConntrackTable& conntrack() { return *conntrack_; }
  // Worker `w` (0..workers-1), for a benchmark or tool that drives the loop
  // itself on the calling lcore instead of Launch() (sluice-bench-throughput
  // interleaves a traffic generator with it): Start() on that lcore, then
  // PollOnce() in a loop, then Stop(). Never while launched; one lcore at a
  // time per worker.
  Worker& worker(uint16_t w) { return *slots_[w]->worker; }
  NeighborTable& neighbors() { return *neighbors_; }
  void PrintCounters(FILE* out) const;
  // Per-stage breakdown from the workers' graph statistics: calls, packets,
  // packets per call and TSC cycles per packet of each node, over all workers.
  void PrintStageStats(FILE* out) const;
  std::vector<NodeStats> StageStats() const;
  std::string CountersJson() const;
  // Trace lines of all workers, in packet order (after StopAndJoin).
  std::vector<Tracer::Line> TakeTrace();
  const TableSet& tables() const { return *publisher_->Current(); }

 private:
  struct Slot {
    std::unique_ptr<Tracer> tracer;
    std::unique_ptr<Worker> worker;
    std::atomic<uint64_t> processed{0};
    std::atomic<bool>* stop = nullptr;
    unsigned lcore = 0;
  };
  static int WorkerMain(void* slot);
  NodeRuntime() = default;

  Config config_;
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<TablePublisher> publisher_;
  std::unique_ptr<ServiceDirectory> services_;
  std::unique_ptr<ServiceProgrammer> programmer_;
  std::unique_ptr<ConntrackTable> conntrack_;
  std::unique_ptr<NeighborTable> neighbors_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<bool> stop_{false};
  bool launched_ = false;
};

// Sets up `queues` rx and tx queues; with `rss`, spreads flows over the rx
// queues by an IP/TCP/UDP hash when the device can. Starts the port.
bool ConfigurePort(uint16_t port, uint16_t queues, rte_mempool* pool, bool rss, std::string* error);
bool HugepagesAvailable();
// EAL arguments for a process that shares nothing with other DPDK processes
// (so parallel runs never clash): --in-memory on hugepages when the machine
// has them and `allow_huge`, else plain memory with a runtime folder named
// `prefix`-<pid>.
void AppendPrivateMemoryArgs(std::vector<std::string>* eal, const std::string& prefix,
                             bool allow_huge = true);
// rte_eal_init on `args` (args[0] is the program), then the runtime folder
// removed (dataplane/common/eal_cleanup.h). False, with DPDK's reason on
// stderr after `who`, when the EAL refused.
bool InitEal(std::vector<std::string> args, const char* who);

}  // namespace sluice

#endif  // SLUICE_APP_NODE_RUNTIME_H_
