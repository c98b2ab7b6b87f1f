#include "dataplane/worker/worker.h"

#include <rte_ethdev.h>
#include <rte_graph_worker.h>
#include <rte_malloc.h>
#include <rte_random.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "dataplane/neighbor/arp_request.h"

namespace sluice {

Worker::Worker(uint16_t id, const WorkerShared& shared, const WorkerPorts& ports, rte_mempool* pool,
               Tracer* tracer)
    : ctx_(std::make_unique<WorkerContext>()) {
  ctx_->id = id;
  ctx_->shared = shared;
  ctx_->ports = ports;
  ctx_->pool = pool;
  ctx_->tracer = tracer;
  // Outer IP IDs (DF clear) start at a random point per worker, so that two
  // workers do not emit the same ID sequence towards one peer.
  ctx_->ip_id = static_cast<uint16_t>(rte_rand());
  ctx_->rng = rte_rand();
  if (pool == nullptr || rte_pktmbuf_priv_size(pool) < sizeof(PacketPriv)) {
    std::fprintf(stderr, "sluice: worker %u: packet pool needs %u private bytes per mbuf\n", id,
                 kMbufPrivSize);
    std::abort();
  }
  ctx_->peer_headers = static_cast<VxlanPeerHeader*>(
      rte_zmalloc("sluice_vxlan_headers", sizeof(VxlanPeerHeader) * kMaxVxlanPeers, 64));
  ctx_->refresh_interval = shared.ticks_per_second;
  NeighborHoldQueue::Config hq;
  hq.ticks_per_second = shared.ticks_per_second;
  auto hold = NeighborHoldQueue::Create(hq);
  if (!hold.ok()) {
    std::fprintf(stderr, "sluice: worker %u: %s\n", id,
                 std::string(hold.status().message()).c_str());
    std::abort();
  }
  hold_ = *std::move(hold);
  ctx_->hold = hold_.get();
  auto graph = CreateWorkerGraph(ctx_.get(), &graph_name_);
  if (ctx_->peer_headers == nullptr || !graph.ok()) {
    std::fprintf(
        stderr, "sluice: worker %u: %s\n", id,
        graph.ok() ? "no memory for VXLAN headers" : std::string(graph.status().message()).c_str());
    std::abort();
  }
  graph_ = *graph;
  sweep_step_ = shared.ticks_per_second / kSweepStepsPerSecond;
  if (sweep_step_ == 0) sweep_step_ = 1;
  const uint64_t steps = uint64_t{kSweepSeconds} * shared.ticks_per_second / sweep_step_;
  sweep_budget_ = static_cast<uint32_t>(
      (shared.conntrack->SliceSize(id) + steps - 1) / (steps == 0 ? 1 : steps));
  if (sweep_budget_ < kMinSweepBudget) sweep_budget_ = kMinSweepBudget;
}

Worker::~Worker() {
  hold_.reset();  // frees what it still holds
  for (int p = 0; p < kPortRoleCount; ++p) rte_pktmbuf_free_bulk(ctx_->tx[p], ctx_->tx_count[p]);
  DestroyWorkerGraph(graph_name_);
  rte_free(ctx_->peer_headers);
}

void Worker::Start() {
  rte_rcu_qsbr_thread_register(ctx_->shared.qsbr, ctx_->id);
  rte_rcu_qsbr_thread_online(ctx_->shared.qsbr, ctx_->id);
}

void Worker::Stop() {
  rte_rcu_qsbr_thread_offline(ctx_->shared.qsbr, ctx_->id);
  rte_rcu_qsbr_thread_unregister(ctx_->shared.qsbr, ctx_->id);
}

void Worker::Walk(uint64_t now) {
  // Flows the control thread asked this worker (their owner) to remove
  // after a Service change go before the walk, so that their next packet
  // makes a new flow.
  ConntrackTable& ct = *ctx_->shared.conntrack;
  if (unlikely(ct.HasRemovalRequests(ctx_->id)))
    ctx_->counters.Add(k_conntrack_purged, ct.TakeRemovalRequests(ctx_->id, kRemovalBudget));
  ctx_->tables = ctx_->shared.tables->Current();
  ctx_->now = now;
  std::memset(ctx_->created_in_walk, 0, sizeof(ctx_->created_in_walk));
  rte_graph_walk(graph_);
  if (unlikely(!hold_->empty()) && ctx_->tables != nullptr) ServiceHeldPackets();
  ctx_->tables = nullptr;
}

// Held packets whose next hop answered go out (their MACs written, queued
// for tx); hops due for another request get one; hops that never answered
// give their packets back to be dropped. Only runs while something is held.
void Worker::ServiceHeldPackets() {
  WorkerContext& c = *ctx_;
  const NodeView& n = c.tables->node;
  rte_mbuf* pkts[kBurstSize];
  uint32_t tags[kBurstSize];
  NeighborKey keys[kBurstSize];
  MacAddress macs[kBurstSize];
  const uint16_t released =
      hold_->Release(*c.shared.neighbors, c.now, pkts, tags, keys, macs, kBurstSize);
  for (uint16_t i = 0; i < released; ++i) {
    auto* eth = rte_pktmbuf_mtod(pkts[i], rte_ether_hdr*);
    std::memcpy(eth->dst_addr.addr_bytes, macs[i].data(), 6);
    std::memcpy(eth->src_addr.addr_bytes, n.port_mac[keys[i].port].data(), 6);
    Queue(static_cast<PortRole>(keys[i].port), pkts[i]);
  }
  c.counters.Add(k_neighbor_released, released);
  const uint16_t due = hold_->Retransmits(c.now, keys, kBurstSize);
  for (uint16_t i = 0; i < due; ++i) {
    rte_mbuf* req = BuildArpRequest(c.pool, n, static_cast<PortRole>(keys[i].port), keys[i].ip);
    if (req == nullptr) continue;
    c.counters.Add(k_arp_requests_sent);
    Queue(static_cast<PortRole>(keys[i].port), req);
  }
  const uint16_t expired = hold_->Expire(c.now, pkts, kBurstSize);
  c.counters.Add(k_neighbor_unresolved, expired);
  rte_pktmbuf_free_bulk(pkts, expired);
}

void Worker::Queue(PortRole port, rte_mbuf* m) {
  const int p = static_cast<int>(port);
  if (unlikely(ctx_->tx_count[p] == WorkerContext::kTxCapacity)) {
    ctx_->counters.Add(k_tx_full);
    rte_pktmbuf_free(m);
    return;
  }
  ctx_->tx[p][ctx_->tx_count[p]++] = m;
}

void Worker::ProcessBurst(PortRole ingress, rte_mbuf** pkts, uint16_t n, uint64_t now) {
  RTE_ASSERT(n <= kRxBurstPerPort);
  ctx_->inject = pkts;
  ctx_->inject_count = n;
  ctx_->inject_port = ingress;
  Walk(now);
  ctx_->inject = nullptr;
}

uint16_t Worker::TakeTx(PortRole port, rte_mbuf** out) {
  const int p = static_cast<int>(port);
  const uint16_t n = ctx_->tx_count[p];
  std::memcpy(out, ctx_->tx[p], n * sizeof(rte_mbuf*));
  ctx_->tx_count[p] = 0;
  ctx_->counters.Add(k_tx_packets, n);
  ctx_->counters.Add(static_cast<Counter>(k_tx_uplink + p), n);
  return n;
}

void Worker::Flush() {
  for (int p = 0; p < kPortRoleCount; ++p) {
    const uint16_t n = ctx_->tx_count[p];
    if (n == 0) continue;
    ctx_->tx_count[p] = 0;
    if (unlikely(!ctx_->ports.present[p])) {
      // The cluster file names a port this worker was not given (a host
      // port without --host): nothing goes out of a port that is not there.
      ctx_->counters.Add(
          p == static_cast<int>(PortRole::kHost) ? k_host_path_unavailable : k_tx_full, n);
      rte_pktmbuf_free_bulk(ctx_->tx[p], n);
      continue;
    }
    const uint16_t sent =
        rte_eth_tx_burst(ctx_->ports.port_id[p], ctx_->ports.queue, ctx_->tx[p], n);
    ctx_->counters.Add(k_tx_packets, sent);
    ctx_->counters.Add(static_cast<Counter>(k_tx_uplink + p), sent);
    if (sent < n) {
      ctx_->counters.Add(k_tx_full, n - sent);
      rte_pktmbuf_free_bulk(ctx_->tx[p] + sent, n - sent);
    }
  }
}

uint32_t Worker::PollOnce(uint64_t now) {
  const uint64_t before = ctx_->counters.value[k_rx_packets];
  Walk(now);
  Flush();
  rte_rcu_qsbr_quiescent(ctx_->shared.qsbr, ctx_->id);
  // Aging by time, not by loop: an idle worker polls millions of times a
  // second and a busy one ~100k; neither should change how fast the slice is
  // swept, nor should a sweep cost the packets of every burst.
  // After a gap (a capture's idle time in replay) the steps missed are made
  // up, up to one whole sweep.
  if (now >= next_sweep_) {
    const uint64_t missed = next_sweep_ == 0 ? 1 : (now - next_sweep_) / sweep_step_ + 1;
    const uint64_t budget = missed * sweep_budget_;
    next_sweep_ = now + sweep_step_;
    ctx_->counters.Add(k_conntrack_expired,
                       ctx_->shared.conntrack->Expire(
                           ctx_->id, now, static_cast<uint32_t>(std::min<uint64_t>(budget, ~0u))));
  }
  return static_cast<uint32_t>(ctx_->counters.value[k_rx_packets] - before);
}

}  // namespace sluice
