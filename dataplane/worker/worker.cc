#include "dataplane/worker/worker.h"

#include <rte_ethdev.h>
#include <rte_graph_worker.h>
#include <rte_malloc.h>
#include <rte_random.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  if (pool == nullptr || rte_pktmbuf_priv_size(pool) < sizeof(PacketPriv)) {
    std::fprintf(stderr, "sluice: worker %u: packet pool needs %u private bytes per mbuf\n", id,
                 kMbufPrivSize);
    std::abort();
  }
  ctx_->peer_headers = static_cast<VxlanPeerHeader*>(
      rte_zmalloc("sluice_vxlan_headers", sizeof(VxlanPeerHeader) * kMaxVxlanPeers, 64));
  auto graph = CreateWorkerGraph(ctx_.get(), &graph_name_);
  if (ctx_->peer_headers == nullptr || !graph.ok()) {
    std::fprintf(
        stderr, "sluice: worker %u: %s\n", id,
        graph.ok() ? "no memory for VXLAN headers" : std::string(graph.status().message()).c_str());
    std::abort();
  }
  graph_ = *graph;
}

Worker::~Worker() {
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
  ctx_->tables = ctx_->shared.tables->Current();
  ctx_->now = now;
  rte_graph_walk(graph_);
  ctx_->tables = nullptr;
}

void Worker::ProcessBurst(PortRole ingress, rte_mbuf** pkts, uint16_t n, uint64_t now) {
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
  if ((++loops_ & 63) == 0)
    ctx_->counters.Add(k_conntrack_expired, ctx_->shared.conntrack->Expire(ctx_->id, now, 256));
  return static_cast<uint32_t>(ctx_->counters.value[k_rx_packets] - before);
}

}  // namespace sluice
