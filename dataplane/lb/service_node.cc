// service: finds the Service port a conntrack miss is addressed to, in
// bulk, in the ServiceDirectory: exact (ClusterIP, externalIP, LoadBalancer
// IP) first, then NodePort
// for destinations that are the node's own addresses, the order of
// kube-proxy's KUBE-SERVICES chain. A miss that reaches no Service is routed
// here once; it goes to the slow path only when policy needs a connection
// (masquerade, or tracking so that its replies are left alone), otherwise it
// is forwarded statelessly (pod to pod pays one conntrack miss, no slow path).
// In: conntrack. Out: new_flow, route. Drops: none.
#include "dataplane/graph/context.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/policy/kube_policy.h"

namespace sluice {
namespace {

enum Edge : rte_edge_t { kToNewFlow, kToRoute };

void LookupServices(const ServiceDirectory& dir, const NodeView& node, void** objs, uint16_t base,
                    uint16_t end) {
  ServiceKey skey[kBurstSize];
  const ServiceKey* skp[kBurstSize];
  ServiceRef found[kBurstSize];
  PacketPriv* pp[kBurstSize];
  uint16_t nk = 0;
  for (uint16_t i = base; i < end; ++i) {
    PacketPriv* p = Priv(static_cast<rte_mbuf*>(objs[i]));
    const FlowKey& k = p->meta.key;
    if (k.proto != kProtoTcp && k.proto != kProtoUdp) continue;
    skey[nk] = ServiceKey{k.dst_ip, k.dst_port, k.proto, 0};
    skp[nk] = &skey[nk];
    pp[nk++] = p;
  }
  if (nk == 0) return;
  dir.LookupBulk(skp, nk, found);
  uint16_t nn = 0;
  for (uint16_t j = 0; j < nk; ++j) {
    pp[j]->svc = found[j];
    if (found[j] == kNoService && node.IsLocalAddress(pp[j]->meta.key.dst_ip)) {
      skey[nn] = ServiceKey{0, pp[j]->meta.key.dst_port, pp[j]->meta.key.proto, 0};
      skp[nn] = &skey[nn];
      pp[nn++] = pp[j];
    }
  }
  if (nn == 0) return;
  dir.LookupBulk(skp, nn, found);
  for (uint16_t j = 0; j < nn; ++j) pp[j]->svc = found[j];
}

rte_edge_t Decide(const TableSet& t, PacketPriv* pp) {
  if (pp->svc != kNoService) return kToNewFlow;
  const FlowKey& k = pp->meta.key;
  const RouteResult rr = RouteTo(t, k.dst_ip);
  pp->routed = 1;
  pp->egress = static_cast<uint8_t>(rr.egress);
  pp->next_hop = rr.next_hop;
  pp->peer = rr.peer;
  if (FlannelMasquerades(t.node, k.src_ip, k.dst_ip, rr.egress) ||
      TrackedWithoutNat(t.node, k.src_ip, k.dst_ip, rr.egress))
    return kToNewFlow;
  pp->stateless = 1;
  return kToRoute;
}

uint16_t ServiceProcess(rte_graph* graph, rte_node* node, void** objs, uint16_t n) {
  WorkerContext* ctx = Ctx(node);
  const TableSet& t = *ctx->tables;
  const ServiceDirectory& dir = *ctx->shared.services;
  rte_edge_t next[RTE_GRAPH_BURST_SIZE];
  for (uint16_t base = 0; base < n; base += kBurstSize)
    LookupServices(dir, t.node, objs, base, base + kBurstSize < n ? base + kBurstSize : n);
  for (uint16_t i = 0; i < n; ++i) next[i] = Decide(t, Priv(static_cast<rte_mbuf*>(objs[i])));
  EnqueueByEdge(graph, node, objs, next, n);
  return n;
}

}  // namespace

const GraphNodeSpec& ServiceNodeSpec() {
  static const GraphNodeSpec spec{kServiceNode, &ServiceProcess, false, {kNewFlowNode, kRouteNode}};
  return spec;
}

}  // namespace sluice
