// new_flow: the slow path of a flow's first packet. Looks the flow up once
// more when an earlier packet of this walk may have created it since the
// bulk lookup (WorkerContext::created_in_walk; one another worker created
// meanwhile is found by the insert), then applies kube-proxy's and
// flannel's policy (dataplane/policy/): endpoint choice, masquerade and its
// address, and creates the connection with everything its packets will need
// precomputed: both tuples, the checksum deltas of both directions and the
// original direction's egress. A chunk's policy runs first and its inserts
// after, so that their cache misses overlap.
// In: service. Out: nat (tracked), route (needs no connection after all),
// drop. Drops: ttl_exceeded (a flow is never created by a packet that dies
// here, as the kernel never confirms such a connection),
// icmp_echo_reply_untracked, service_no_endpoints, no_route, conntrack_full, conntrack_reply_clash,
// snat_ports_exhausted.
#include <new>
#include <type_traits>

#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/policy/kube_policy.h"
#include "dataplane/route/route_cache.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToNat, kToRoute, kToDrop };

// Inserts `e`, picking the masquerade port when it is SNATed: a random port
// of the original port's class outside the kernel's ephemeral range, and of
// this worker's share (ports congruent to its id), so workers never hand
// out the same port. Returns the ref or kMiss with *drop set.
uint32_t Insert(WorkerContext* ctx, rte_mbuf* m, ConntrackEntry& e, Counter* drop) {
  ConntrackTable& ct = *ctx->shared.conntrack;
  const bool snat = e.flags & ConntrackEntry::kSnat;
  // This worker's ports of the class (divisions: only for SNAT flows).
  const uint32_t w = ctx->shared.workers;
  uint32_t first[2] = {0, 0}, slots[2] = {0, 0}, total = 0;
  if (snat) {
    PortSpan spans[2];
    const int nspans =
        MasqueradePortSpans(ctx->tables->node, e.original.proto, e.original.src_port, spans);
    for (int s = 0; s < nspans; ++s) {
      first[s] = spans[s].lo + ((ctx->id + w - spans[s].lo % w) % w);
      slots[s] = first[s] > spans[s].hi ? 0 : (spans[s].hi - first[s]) / w + 1;
      total += slots[s];
    }
  }
  constexpr int kMaxAttempts = 32;
  for (int attempt = 0; attempt < (snat ? kMaxAttempts : 1); ++attempt) {
    if (snat) {
      if (total == 0) break;
      uint32_t r = PickBelow(ctx, total);
      const int s = r < slots[0] ? 0 : 1;
      if (s == 1) r -= slots[0];
      e.reply.dst_port = static_cast<uint16_t>(first[s] + r * w);
      if (ct.ReplyTupleInUse(e.reply)) continue;
    }
    for (int d = 0; d < 2; ++d) {
      const RewriteDeltas rd = ComputeRewriteDeltas(
          d == 0 ? e.original : e.reply, d == 0 ? e.reply.Reversed() : e.original.Reversed());
      e.rewrite[d].ip_csum_delta = rd.ip;
      e.rewrite[d].l4_csum_delta = rd.l4;
    }
    const ConntrackTable::InsertResult r = ct.Insert(ctx->id, e, ctx->now);
    switch (r.status) {
      case ConntrackTable::InsertStatus::kCreated:
        NoteCreated(ctx, e.original);
        NoteCreated(ctx, e.reply);
        ctx->counters.Add(k_conntrack_created);
        if (e.flags & ConntrackEntry::kDnat) ctx->counters.Add(k_service_dnat);
        if (snat) ctx->counters.Add(k_masquerade);
        SLUICE_TRACE(ctx, m, kConntrackNew);
        return r.ref;
      case ConntrackTable::InsertStatus::kExists:
        ctx->counters.Add(k_conntrack_insert_raced);
        SLUICE_TRACE(ctx, m, kConntrackRaced);
        return r.ref;
      case ConntrackTable::InsertStatus::kFull:
        *drop = k_conntrack_full;
        return ConntrackTable::kMiss;
      case ConntrackTable::InsertStatus::kReplyClash:
        if (!snat) {
          *drop = k_conntrack_reply_clash;
          return ConntrackTable::kMiss;
        }
        break;  // another port
    }
  }
  *drop = snat ? k_snat_ports_exhausted : k_conntrack_reply_clash;
  return ConntrackTable::kMiss;
}

// A new flow between the two phases of the node: the connection to insert,
// and what the trace tells once it is made.
struct PendingFlow {
  ConntrackEntry e;
  MasqueradeReason masq = MasqueradeReason::kNone;
  Egress egress = Egress::kNone;
};
static_assert(std::is_trivially_destructible_v<PendingFlow>);
constexpr rte_edge_t kToInsert = 0xffff;  // Prepare's verdict: insert f->e

// The policy of a flow's first packet, up to the insert: returns the edge,
// or kToInsert with *f filled.
rte_edge_t Prepare(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp, PendingFlow* f) {
  const TableSet& t = *ctx->tables;
  const NodeView& n = t.node;
  const FlowKey& k = pp->meta.key;
  if (Ipv4Header(m, pp->meta)->time_to_live <= 1 &&
      (pp->svc != kNoService || !n.IsLocalAddress(k.dst_ip))) {
    MarkDrop(m, k_ttl_exceeded);
    return kToDrop;
  }
  // An echo reply opens no connection: the kernel's conntrack calls it
  // INVALID and kube-proxy's FORWARD rules drop it. (Rewriting it as the
  // first packet of a masqueraded flow would also put the masquerade port on
  // the side its identifier is not.)
  if (pp->meta.is_icmp_echo_reply) {
    MarkDrop(m, k_icmp_echo_reply_untracked);
    return kToDrop;
  }
  ConntrackEntry& e = f->e;
  e.original = k;
  e.reply = k.Reversed();  // src: the endpoint; dst: the (masqueraded) source
  MasqueradeReason& masq = f->masq;
  if (const ServiceRef svc = pp->svc; svc != kNoService) {
    const ServiceEntryKind kind = ServiceKindOf(svc);
    SLUICE_TRACE(ctx, m, kService, .a8 = static_cast<uint8_t>(kind), .a = ServiceSlotOf(svc),
                 .key = &k);
    // Loaded once: the endpoint comes from the set this packet saw, even if
    // a new one is published meanwhile (valid until the quiescent report).
    const EndpointSet& eps = ctx->shared.services->Endpoints(svc);
    const EndpointChoice c = ChooseEndpoints(n, eps, kind, k.src_ip);
    if (c.count == 0) {
      MarkDrop(m, k_service_no_endpoints);
      return kToDrop;
    }
    const uint32_t pick = c.count == 1 ? 0 : PickBelow(ctx, c.count);
    const Endpoint& ep = eps.endpoints()[c.begin + pick];
    SLUICE_TRACE(ctx, m, kEndpoint, .a8 = static_cast<uint8_t>(c.set), .a16 = ep.port, .a = ep.ip,
                 .b = c.count);
    masq = IsHairpin(k.src_ip, ep.ip) ? MasqueradeReason::kHairpin : c.masquerade;
    e.reply.src_ip = ep.ip;
    e.reply.src_port = ep.port;
    ctx->shared.conntrack->PrefetchBucket(e.reply);  // final unless masqueraded
    e.flags |= ConntrackEntry::kDnat;
    pp->routed = 0;  // the destination changed
  }
  const RouteResult rr = pp->routed
                             ? RouteResult{static_cast<Egress>(pp->egress), pp->next_hop, pp->peer}
                             : RouteTo(t, e.reply.src_ip);
  // MASQUERADE sits in POSTROUTING, which what is delivered to the node
  // itself (a hostNetwork endpoint) never reaches: kube-proxy's mark is
  // then without effect, and the host must see the client's address.
  if (rr.egress == Egress::kHost) masq = MasqueradeReason::kNone;
  if (masq == MasqueradeReason::kNone && FlannelMasquerades(n, k.src_ip, e.reply.src_ip, rr.egress))
    masq = MasqueradeReason::kFlannelIpMasq;
  if (pp->svc == kNoService && masq == MasqueradeReason::kNone) {
    if (!TrackedWithoutNat(n, k.src_ip, k.dst_ip, rr.egress)) {
      pp->stateless = 1;
      return kToRoute;
    }
    SLUICE_TRACE(ctx, m, kTrackedNoNat);
  }
  if (masq != MasqueradeReason::kNone) {
    if (rr.egress == Egress::kNone) {
      MarkDrop(m, k_no_route);
      return kToDrop;
    }
    e.reply.dst_ip = MasqueradeAddress(n, rr.egress);
    e.flags |= ConntrackEntry::kSnat;
  }
  const uint16_t sport =
      rr.egress == Egress::kVxlan ? VxlanSourcePort(VxlanInnerHash(e.reply.Reversed())) : 0;
  e.route[0].store(
      EncodeRouteCache(t.generation, rr.egress, rr.peer,
                       rr.egress == Egress::kUplink && rr.next_hop != e.reply.src_ip, sport),
      std::memory_order_relaxed);
  f->egress = rr.egress;
  return kToInsert;
}

// Inserts a prepared flow; returns the edge and fills pp->ct_ref.
rte_edge_t Commit(WorkerContext* ctx, rte_mbuf* m, PacketPriv* pp, PendingFlow& f) {
  Counter drop = kCounterCount;
  pp->ct_ref = Insert(ctx, m, f.e, &drop);
  if (pp->ct_ref == ConntrackTable::kMiss) {
    MarkDrop(m, drop);
    return kToDrop;
  }
  pp->created = 1;
  if (f.masq != MasqueradeReason::kNone) {
    const ConntrackEntry& made = ctx->shared.conntrack->entry(pp->ct_ref);
    SLUICE_TRACE(ctx, m, kMasquerade, .a8 = static_cast<uint8_t>(f.masq),
                 .a16 = made.reply.dst_port, .a = made.reply.dst_ip,
                 .b = static_cast<uint32_t>(f.egress), .key = &pp->meta.key);
  }
  return kToNat;
}

// Whether the flow of `pp` exists now (made earlier in this walk: the bulk
// lookup ran before); counts the hit.
bool FoundAfterAll(WorkerContext* ctx, PacketPriv* pp) {
  if (!MayHaveCreated(ctx, pp->meta.key)) return false;
  pp->ct_ref = ctx->shared.conntrack->Lookup(pp->meta.key);
  if (pp->ct_ref == ConntrackTable::kMiss) return false;
  ctx->counters.Add((pp->ct_ref & ConntrackTable::kReplyBit) ? k_conntrack_hit_reply
                                                             : k_conntrack_hit_original);
  return true;
}

// Two phases a chunk: every packet's policy first, then the inserts, so
// that the cache misses the inserts meet in a big table (the reply tuples'
// buckets, prefetched by Prepare, and the entries) overlap instead of
// coming one flow after the other.
uint16_t NewFlowProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  alignas(PendingFlow) unsigned char raw[kBurstSize * sizeof(PendingFlow)];
  auto* flows = reinterpret_cast<PendingFlow*>(raw);
  rte_edge_t next[kBurstSize];
  for (uint16_t base = 0; base < n; base += kBurstSize) {
    const uint16_t end = base + kBurstSize < n ? base + kBurstSize : n;
    uint32_t pending = 0;
    for (uint16_t i = base; i < end; ++i) {
      PacketPriv* pp = Priv(static_cast<rte_mbuf*>(objs[i]));
      pp->ct_ref = ConntrackTable::kMiss;
      if (FoundAfterAll(ctx, pp)) {
        next[i - base] = kToNat;
        continue;
      }
      PendingFlow* f = new (&flows[i - base]) PendingFlow();
      next[i - base] = Prepare(ctx, static_cast<rte_mbuf*>(objs[i]), pp, f);
      pending += next[i - base] == kToInsert;
    }
    if (pending != 0) ctx->shared.conntrack->PrefetchNextEntries(ctx->id, pending);
    for (uint16_t i = base; i < end; ++i) {
      rte_edge_t& e = next[i - base];
      auto* m = static_cast<rte_mbuf*>(objs[i]);
      // A packet of a flow an earlier one of this chunk just made is a hit.
      if (e == kToInsert) {
        e = FoundAfterAll(ctx, Priv(m)) ? rte_edge_t{kToNat}
                                        : Commit(ctx, m, Priv(m), flows[i - base]);
      }
      rte_node_enqueue_x1(graph, node, e, m);
    }
  }
  return n;
}

}  // namespace

const GraphNodeSpec& NewFlowNodeSpec() {
  static const GraphNodeSpec spec{
      kNewFlowNode, &NewFlowProcess, false, {kNatNode, kRouteNode, kDropNode}};
  return spec;
}

}  // namespace sluice
