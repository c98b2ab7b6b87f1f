// The per-worker state every graph node reaches through its node context,
// and the two helpers all nodes use: the edge-run enqueue and the drop mark.
//
// A WorkerContext belongs to one worker lcore: only that lcore's graph walk
// reads or writes it (the control thread reads `counters` racily, which is
// fine for counters). Shared tables are reached through `shared` and follow
// their own contracts; `tables` is the generation loaded once per walk and
// must not be held across the quiescent report that follows the walk.
#ifndef SLUICE_DATAPLANE_GRAPH_CONTEXT_H_
#define SLUICE_DATAPLANE_GRAPH_CONTEXT_H_

#include <rte_graph.h>
#include <rte_graph_worker.h>
#include <rte_hash_crc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <cstring>

#include "dataplane/common/counters.h"
#include "dataplane/common/packet_priv.h"
#include "dataplane/common/types.h"
#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/graph/trace.h"
#include "dataplane/neighbor/hold_queue.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/service_directory.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// Everything node-wide a worker uses; not owned.
struct WorkerShared {
  TablePublisher* tables = nullptr;
  const ServiceDirectory* services = nullptr;
  ConntrackTable* conntrack = nullptr;
  NeighborTable* neighbors = nullptr;
  rte_rcu_qsbr* qsbr = nullptr;
  uint16_t workers = 1;
  uint64_t ticks_per_second = 1;  // unit of the loop's `now` (TSC Hz on lcores)
};

struct WorkerPorts {
  bool present[kPortRoleCount] = {false, false, false};
  uint16_t port_id[kPortRoleCount] = {0, 0, 0};
  uint16_t queue = 0;  // this worker's rx and tx queue on every port
};

// Per-peer VXLAN outer header, built once per (table generation, neighbour
// table version) and copied into every packet to that peer (VPP's
// vxlan4-encap rewrite string).
struct alignas(64) VxlanPeerHeader {
  uint64_t generation = 0;  // 0: never built
  uint64_t neighbor_version = 0;
  bool resolved = false;      // the next hop's MAC is known
  uint32_t next_hop = 0;      // L2 next hop on the uplink towards the peer
  uint64_t checked_at = 0;    // when the next hop's freshness was last looked at
  uint16_t ip_csum_base = 0;  // outer IPv4 checksum with total length and ID 0
  uint8_t bytes[50];          // Ethernet + IPv4 + UDP + VXLAN
  uint8_t inner_macs[12];     // the peer's VtepMAC, then ours
};
// Node arrays hold one walk's packets: every port's rx burst.
static_assert(kPortRoleCount * kRxBurstPerPort <= RTE_GRAPH_BURST_SIZE);

inline constexpr uint32_t kMaxVxlanPeers = OverlayTable::kMaxPeers;

struct WorkerContext {
  uint16_t id = 0;
  WorkerShared shared;
  WorkerPorts ports;
  rte_mempool* pool = nullptr;  // ARP requests
  Tracer* tracer = nullptr;     // null: tracing off

  // Loaded by the worker loop before each walk.
  const TableSet* tables = nullptr;
  uint64_t now = 0;

  // A burst handed in by ProcessBurst (tests, benchmarks) instead of port rx.
  rte_mbuf** inject = nullptr;
  uint16_t inject_count = 0;
  PortRole inject_port = PortRole::kUplink;

  uint16_t ip_id = 0;  // outer IPv4 ID of VXLAN packets

  // Both keys of every flow this worker created during the current walk, as
  // a 256-bit filter (CreatedFilterBit), cleared before each walk. A packet
  // that missed the bulk lookup is looked up again in new_flow only when an
  // earlier packet of the walk may have created its flow; flows another
  // worker creates meanwhile are caught by the insert (InsertStatus::kExists).
  uint64_t created_in_walk[4] = {0, 0, 0, 0};

  uint64_t rng = 0;  // PickBelow's generator state, seeded from rte_rand()
  WorkerCounters counters;

  // Output of the tx node; sent by Worker::Flush (or taken by tests).
  static constexpr uint16_t kTxCapacity = 2 * RTE_GRAPH_BURST_SIZE;
  rte_mbuf* tx[kPortRoleCount][kTxCapacity];
  uint16_t tx_count[kPortRoleCount] = {0, 0, 0};

  VxlanPeerHeader* peer_headers = nullptr;  // kMaxVxlanPeers, rte_zmalloc'd

  // Packets waiting for their next hop's MAC (neighbor node holds them; the
  // worker loop releases, retransmits for and expires them).
  NeighborHoldQueue* hold = nullptr;
  // Refresh requests for stale neighbours, at most one per hop per
  // interval: a small direct-mapped record of the last ones sent.
  struct RefreshSlot {
    NeighborKey key;
    uint64_t sent = 0;
  };
  static constexpr uint32_t kRefreshSlots = 64;
  RefreshSlot refresh[kRefreshSlots];
  uint64_t refresh_interval = 1;  // ticks (1 s)

  // L2 rewrites of resolved next hops (VPP's adjacency rewrite): written by
  // the neighbor node when it resolves a hop, used by nat for established
  // packets whose cached egress is a port, so that they skip the neighbour
  // node. A slot holds for one neighbour-table version and at most one
  // refresh interval (then a packet goes through the neighbour node again,
  // which refreshes a stale entry and rewrites the slot).
  struct Adjacency {
    uint64_t key = 0;  // AdjacencyKey(); 0: empty
    uint64_t neighbor_version = 0;
    uint64_t filled_at = 0;
    uint8_t macs[12];  // destination, then source, as in the Ethernet header
  };
  static constexpr uint32_t kAdjacencySlots = 256;
  Adjacency adjacency[kAdjacencySlots];
};

// A next hop as one word (never 0: the port is in bits 32..39, plus bit 40).
inline uint64_t AdjacencyKey(uint8_t port, uint32_t next_hop) {
  return uint64_t{next_hop} | uint64_t{port} << 32 | uint64_t{1} << 40;
}
inline WorkerContext::Adjacency& AdjacencySlot(WorkerContext* ctx, uint64_t key) {
  const uint32_t h = static_cast<uint32_t>(key) * 2654435761u;
  return ctx->adjacency[h >> 24];  // 256 slots
}
static_assert(WorkerContext::kAdjacencySlots == 256);

// Whether a refresh request for stale neighbour `k` may go now (at most one
// per hop per refresh interval); records it when so.
inline bool TakeRefreshTurn(WorkerContext* ctx, const NeighborKey& k) {
  WorkerContext::RefreshSlot& s =
      ctx->refresh[rte_hash_crc(&k, sizeof(k), 0) % WorkerContext::kRefreshSlots];
  if (std::memcmp(&s.key, &k, sizeof(k)) == 0 && ctx->now - s.sent < ctx->refresh_interval)
    return false;
  s.key = k;
  s.sent = ctx->now;
  return true;
}

// A key's bit in WorkerContext::created_in_walk (0..255): the top byte of
// a multiplicative hash of its two words.
inline uint32_t CreatedFilterBit(const FlowKey& k) {
  uint64_t w[2];
  std::memcpy(w, &k, sizeof(w));
  return static_cast<uint32_t>((w[0] * 0x9e3779b97f4a7c15ull + w[1] * 0xc2b2ae3d27d4eb4full) >> 56);
}
inline void NoteCreated(WorkerContext* ctx, const FlowKey& k) {
  const uint32_t b = CreatedFilterBit(k);
  ctx->created_in_walk[b >> 6] |= uint64_t{1} << (b & 63);
}
inline bool MayHaveCreated(const WorkerContext* ctx, const FlowKey& k) {
  const uint32_t b = CreatedFilterBit(k);
  return (ctx->created_in_walk[b >> 6] >> (b & 63)) & 1;
}

// A uniform integer in [0, n), n >= 1, from the worker's own generator:
// endpoint choice and masquerade ports. wyrand (a 64-bit counter mixed by a
// 128-bit multiply), and Lemire's multiply-and-reject for the range, which
// divides only in the rare case that may need a redraw: a few instructions
// where rte_rand_max took about a hundred (BM_PipelineNewFlow). Under
// `--seed` the sequence is as reproducible as rte_rand's, from which the
// state is seeded.
inline uint64_t NextRandom(WorkerContext* ctx) {
  ctx->rng += 0xa0761d6478bd642full;
  const unsigned __int128 t =
      static_cast<unsigned __int128>(ctx->rng) * (ctx->rng ^ 0xe7037ed1a0b428dbull);
  return static_cast<uint64_t>(t >> 64) ^ static_cast<uint64_t>(t);
}
inline uint32_t PickBelow(WorkerContext* ctx, uint32_t n) {
  uint64_t m = (NextRandom(ctx) >> 32) * n;
  if (unlikely(static_cast<uint32_t>(m) < n)) {
    const uint32_t threshold = (0u - n) % n;  // 2^32 mod n
    while (static_cast<uint32_t>(m) < threshold) m = (NextRandom(ctx) >> 32) * n;
  }
  return static_cast<uint32_t>(m >> 32);
}

// The WorkerContext of the graph a node belongs to (set by the nodes' init).
inline WorkerContext* Ctx(const rte_node* node) {
  WorkerContext* c;
  std::memcpy(&c, node->ctx, sizeof(c));
  return c;
}

// Marks `m` for the drop node with `reason`.
inline void MarkDrop(rte_mbuf* m, Counter reason) { Priv(m)->drop = reason; }

// Enqueues objs[0..n) to their edges next[0..n), one enqueue per run of
// equal edges; a whole stream bound for one edge is moved, not copied.
inline void EnqueueByEdge(rte_graph* graph, rte_node* node, void** objs, const rte_edge_t* next,
                          uint16_t n) {
  if (n == 0) return;
  // Most bursts take one edge: tell that with one branch-free pass (which
  // the compiler vectorises) before looking for runs.
  rte_edge_t differ = 0;
  for (uint16_t i = 1; i < n; ++i) differ |= static_cast<rte_edge_t>(next[i] ^ next[0]);
  if (differ == 0) {
    if (objs == node->objs && n == node->idx)
      rte_node_next_stream_move(graph, node, next[0]);
    else
      rte_node_enqueue(graph, node, next[0], objs, n);
    return;
  }
  uint16_t start = 0;
  for (uint16_t i = 1; i <= n; ++i) {
    if (i < n && next[i] == next[start]) continue;
    rte_node_enqueue(graph, node, next[start], objs + start, i - start);
    start = i;
  }
}

// The shape of most nodes: `decide(m)` picks each packet's edge, then the
// burst is enqueued run by run. A lambda, inlined: no indirect call.
template <typename Decide>
inline uint16_t ForEachPacket(rte_graph* graph, rte_node* node, void** objs, uint16_t n,
                              Decide&& decide) {
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t i = 0; i < n; ++i) next[i] = decide(static_cast<rte_mbuf*>(objs[i]));
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

// Whether code may trace. A hot node's per-packet code is a template on a
// `bool kMayTrace` parameter, which hides this constant: the node's process
// function picks the instance once per burst, so the untraced one has no
// tracing test at all. Elsewhere the run-time test stays.
inline constexpr bool kMayTrace = true;

// Records a trace event when tracing is on.
#define SLUICE_TRACE(ctx, m, event, ...)                                     \
  do {                                                                       \
    if (kMayTrace && unlikely((ctx)->tracer != nullptr))                     \
      (ctx)->tracer->Record((m), TraceEvent::event, TraceArgs{__VA_ARGS__}); \
  } while (0)

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_GRAPH_CONTEXT_H_
