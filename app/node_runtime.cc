#include "app/node_runtime.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "control/table_builder.h"
#include "dataplane/common/eal_cleanup.h"

namespace sluice {

absl::StatusOr<std::unique_ptr<NodeRuntime>> NodeRuntime::Create(const Config& config,
                                                                 const ClusterModel& model,
                                                                 const WorkerPorts& ports,
                                                                 rte_mempool* pool) {
  auto rt = Create(config, ports, pool);
  if (!rt.ok()) return rt.status();
  (*rt)->services().SetNodeName(model.node.name);
  if (absl::Status s = (*rt)->Reload(model); !s.ok()) return s;
  return rt;
}

absl::StatusOr<std::unique_ptr<NodeRuntime>> NodeRuntime::Create(const Config& config,
                                                                 const WorkerPorts& ports,
                                                                 rte_mempool* pool) {
  std::unique_ptr<NodeRuntime> rt(new NodeRuntime());
  rt->config_ = config;
  rt->qsbr_ = static_cast<rte_rcu_qsbr*>(
      rte_zmalloc("sluice_qsbr", rte_rcu_qsbr_get_memsize(config.workers), RTE_CACHE_LINE_SIZE));
  if (rt->qsbr_ == nullptr || rte_rcu_qsbr_init(rt->qsbr_, config.workers) != 0)
    return absl::ResourceExhaustedError("cannot allocate the QSBR variable");
  auto publisher = TablePublisher::Create(rt->qsbr_);
  if (!publisher.ok()) return publisher.status();
  rt->publisher_ = *std::move(publisher);
  ConntrackTable::Config ct;
  ct.capacity = config.conntrack_capacity;
  ct.workers = config.workers;
  ct.qsbr = rt->qsbr_;
  ct.ticks_per_second = rte_get_tsc_hz();
  auto conntrack = ConntrackTable::Create(ct);
  if (!conntrack.ok()) return conntrack.status();
  rt->conntrack_ = *std::move(conntrack);
  NeighborTable::Config nc = config.neighbors;
  nc.qsbr = rt->qsbr_;
  nc.ticks_per_second = rte_get_tsc_hz();
  auto neighbors = NeighborTable::Create(nc);
  if (!neighbors.ok()) return neighbors.status();
  rt->neighbors_ = *std::move(neighbors);
  ServiceDirectory::Config sc = config.services;
  sc.qsbr = rt->qsbr_;
  auto services = ServiceDirectory::Create(sc);
  if (!services.ok()) return services.status();
  rt->services_ = *std::move(services);
  ServiceProgrammer::Config pc;
  pc.max_pending_sets = sc.service_ports;
  rt->programmer_ = std::make_unique<ServiceProgrammer>(pc, rt->services_.get(),
                                                        rt->conntrack_.get(), rt->publisher_.get());

  WorkerShared shared;
  shared.tables = rt->publisher_.get();
  shared.services = rt->services_.get();
  shared.conntrack = rt->conntrack_.get();
  shared.neighbors = rt->neighbors_.get();
  shared.qsbr = rt->qsbr_;
  shared.workers = config.workers;
  shared.ticks_per_second = rte_get_tsc_hz();
  unsigned lcore = rte_get_next_lcore(-1, 1, 0);
  for (uint16_t w = 0; w < config.workers; ++w) {
    if (lcore >= RTE_MAX_LCORE)
      return absl::InvalidArgumentError(
          absl::StrFormat("%u workers need %u worker lcores", config.workers, config.workers));
    auto slot = std::make_unique<Slot>();
    if (config.trace) slot->tracer = std::make_unique<Tracer>(w, config.seq_offset);
    WorkerPorts wp = ports;
    wp.queue = w;
    slot->worker = std::make_unique<Worker>(w, shared, wp, pool, slot->tracer.get());
    slot->stop = &rt->stop_;
    slot->lcore = lcore;
    rt->slots_.push_back(std::move(slot));
    lcore = rte_get_next_lcore(lcore, 1, 0);
  }
  return rt;
}

NodeRuntime::~NodeRuntime() {
  if (launched_) StopAndJoin();
  slots_.clear();
  programmer_.reset();
  services_.reset();
  publisher_.reset();
  conntrack_.reset();
  neighbors_.reset();
  rte_free(qsbr_);
}

absl::StatusOr<uint64_t> NodeRuntime::PublishNetwork(const ClusterModel& model) {
  auto network = BuildNetworkSpec(model);
  if (!network.ok()) return network.status();
  if (absl::Status s = publisher_->Validate(*network); !s.ok()) return s;
  return publisher_->Publish(*network);
}

absl::Status NodeRuntime::ReplaceStaticNeighbors(const std::vector<NeighborEntry>& entries) {
  std::vector<StaticNeighbor> s;
  for (const NeighborEntry& e : entries) s.push_back({e.port, e.ip, e.mac});
  if (absl::Status v = neighbors_->ValidateStatic(s); !v.ok()) return v;
  return neighbors_->ReplaceStatic(s);
}

absl::Status NodeRuntime::Reload(const ClusterModel& model) {
  auto prepared = PrepareReload(model, *publisher_, *neighbors_, *programmer_);
  if (!prepared.ok()) return prepared.status();
  return CommitReload(*std::move(prepared), *neighbors_, *publisher_, *programmer_);
}

uint32_t NodeRuntime::AgeNeighbors() { return neighbors_->Age(rte_rdtsc()); }

int NodeRuntime::WorkerMain(void* arg) {
  Slot* slot = static_cast<Slot*>(arg);
  slot->worker->Start();
  while (!slot->stop->load(std::memory_order_acquire)) {
    const uint32_t n = slot->worker->PollOnce(rte_rdtsc());
    // Published after the burst was transmitted: "processed" includes output.
    if (n != 0) slot->processed.fetch_add(n, std::memory_order_release);
  }
  slot->worker->Stop();
  return 0;
}

void NodeRuntime::Launch() {
  stop_.store(false, std::memory_order_release);
  for (auto& s : slots_) rte_eal_remote_launch(&NodeRuntime::WorkerMain, s.get(), s->lcore);
  launched_ = true;
}

void NodeRuntime::StopAndJoin() {
  stop_.store(true, std::memory_order_release);
  for (auto& s : slots_) rte_eal_wait_lcore(s->lcore);
  launched_ = false;
}

uint64_t NodeRuntime::Processed() const {
  uint64_t p = 0;
  for (const auto& s : slots_) p += s->processed.load(std::memory_order_acquire);
  return p;
}

uint64_t NodeRuntime::Total(Counter c) const {
  uint64_t v = 0;
  for (const auto& s : slots_) v += s->worker->counters().value[c];
  return v;
}

void NodeRuntime::PrintCounters(FILE* out) const {
  std::fprintf(out, "\n%-28s %12s", "counter", "total");
  for (size_t w = 0; w < slots_.size(); ++w)
    std::fprintf(out, " %10s", absl::StrFormat("worker%u", w).c_str());
  std::fprintf(out, "\n");
  for (int kind = 0; kind < 2; ++kind) {
    std::fprintf(out, kind == 0 ? "-- outcomes\n" : "-- drops (reason)\n");
    bool any = false;
    for (int c = 0; c < kCounterCount; ++c) {
      const CounterInfo& info = CounterInfoOf(static_cast<Counter>(c));
      if (static_cast<int>(info.kind) != kind) continue;
      uint64_t total = 0;
      for (const auto& s : slots_) total += s->worker->counters().value[c];
      if (total == 0) continue;
      any = true;
      std::fprintf(out, "%-28s %12lu", info.name, static_cast<unsigned long>(total));
      for (const auto& s : slots_)
        std::fprintf(out, " %10lu", static_cast<unsigned long>(s->worker->counters().value[c]));
      std::fprintf(out, "   %s\n", info.help);
    }
    if (!any) std::fprintf(out, "(none)\n");
  }
}

std::string NodeRuntime::CountersJson() const {
  std::vector<std::string> workers;
  uint64_t total[kCounterCount] = {};
  for (const auto& s : slots_) {
    std::vector<std::string> fields;
    for (int c = 0; c < kCounterCount; ++c) {
      const uint64_t v = s->worker->counters().value[c];
      total[c] += v;
      fields.push_back(
          absl::StrFormat("\"%s\": %u", CounterInfoOf(static_cast<Counter>(c)).name, v));
    }
    workers.push_back("{" + absl::StrJoin(fields, ", ") + "}");
  }
  std::vector<std::string> fields;
  for (int c = 0; c < kCounterCount; ++c)
    fields.push_back(
        absl::StrFormat("\"%s\": %u", CounterInfoOf(static_cast<Counter>(c)).name, total[c]));
  return absl::StrFormat("{\"total\": {%s},\n \"workers\": [%s]}\n", absl::StrJoin(fields, ", "),
                         absl::StrJoin(workers, ",\n  "));
}

std::vector<NodeStats> NodeRuntime::StageStats() const {
  std::vector<NodeStats> total;
  for (const auto& s : slots_) {
    const std::vector<NodeStats> w = s->worker->Stats();
    if (total.empty()) {
      total = w;
      continue;
    }
    for (size_t i = 0; i < w.size() && i < total.size(); ++i) {
      total[i].calls += w[i].calls;
      total[i].packets += w[i].packets;
      total[i].cycles += w[i].cycles;
    }
  }
  return total;
}

void NodeRuntime::PrintStageStats(FILE* out) const {
  std::fprintf(out, "\n%-22s %12s %12s %10s %12s\n", "stage (graph node)", "calls", "packets",
               "pkts/call", "cycles/pkt");
  for (const NodeStats& n : StageStats()) {
    if (n.calls == 0) continue;
    std::fprintf(out, "%-22s %12lu %12lu %10.1f %12.1f\n", n.node.c_str(),
                 static_cast<unsigned long>(n.calls), static_cast<unsigned long>(n.packets),
                 static_cast<double>(n.packets) / n.calls,
                 n.packets ? static_cast<double>(n.cycles) / n.packets : 0.0);
  }
}

std::vector<Tracer::Line> NodeRuntime::TakeTrace() {
  std::vector<Tracer::Line> lines;
  for (auto& s : slots_) {
    if (!s->tracer) continue;
    for (auto& l : s->tracer->TakeLines(services_.get())) lines.push_back(std::move(l));
  }
  std::stable_sort(lines.begin(), lines.end(),
                   [](const Tracer::Line& a, const Tracer::Line& b) { return a.seq < b.seq; });
  return lines;
}

bool ConfigurePort(uint16_t port, uint16_t queues, rte_mempool* pool, bool rss,
                   std::string* error) {
  rte_eth_conf conf = {};
  rte_eth_dev_info info;
  if (rte_eth_dev_info_get(port, &info) != 0) {
    *error = absl::StrFormat("port %u: no device info", port);
    return false;
  }
  if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
    *error = absl::StrFormat("port %u (%s): %u queues wanted, device has %u rx / %u tx", port,
                             info.driver_name, queues, info.max_rx_queues, info.max_tx_queues);
    return false;
  }
  if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP)
    conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
  if (rss && queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf =
        (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  }
  int rc = rte_eth_dev_configure(port, queues, queues, &conf);
  for (uint16_t q = 0; rc == 0 && q < queues; ++q)
    rc = rte_eth_rx_queue_setup(port, q, 1024, rte_eth_dev_socket_id(port), nullptr, pool);
  for (uint16_t q = 0; rc == 0 && q < queues; ++q)
    rc = rte_eth_tx_queue_setup(port, q, 1024, rte_eth_dev_socket_id(port), nullptr);
  if (rc == 0) rc = rte_eth_dev_start(port);
  if (rc != 0) {
    *error = absl::StrFormat("port %u: setup failed: %s", port, rte_strerror(-rc));
    return false;
  }
  return true;
}

bool HugepagesAvailable() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  long value = 0;
  while (meminfo >> key >> value) {
    if (key == "HugePages_Free:") return value >= 256;  // 512 MB of 2 MB pages
    meminfo.ignore(256, '\n');
  }
  return false;
}

void AppendPrivateMemoryArgs(std::vector<std::string>* eal, const std::string& prefix,
                             bool allow_huge) {
  if (allow_huge && HugepagesAvailable()) {
    eal->push_back("--in-memory");
  } else {
    eal->push_back("--no-huge");
    eal->push_back("--no-shconf");
    eal->push_back(absl::StrFormat("--file-prefix=%s-%d", prefix, getpid()));
  }
}

bool InitEal(std::vector<std::string> args, const char* who) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
    std::fprintf(stderr, "%s: DPDK EAL init failed: %s\n", who, rte_strerror(rte_errno));
    return false;
  }
  RemoveEalRuntimeDir();
  return true;
}

}  // namespace sluice
