#include "control/desired_state.h"

namespace sluice {
namespace {

bool SamePrefix(const Ipv4Prefix& a, const Ipv4Prefix& b) {
  return a.address == b.address && a.length == b.length;
}

bool SameKey(const api::ServicePortKey& a, const api::ServicePortKey& b) {
  return a.namespace_name == b.namespace_name && a.service_name == b.service_name &&
         a.port_name == b.port_name && a.protocol == b.protocol;
}

bool SameEndpoint(const api::Endpoint& a, const api::Endpoint& b) {
  return a.ip == b.ip && a.port == b.port && a.ready == b.ready && a.serving == b.serving &&
         a.terminating == b.terminating && a.node_name == b.node_name && a.zone == b.zone;
}

// Appends what turns map `from` into map `to`: upserts of new or changed
// values, and (separately, so the caller can order them) deletions.
template <typename Map, typename Same, typename Upsert, typename Delete>
void Diff(const Map& from, const Map& to, Same same, Upsert upsert, Delete del) {
  for (const auto& [k, v] : to) {
    auto it = from.find(k);
    if (it == from.end() || !same(it->second, v)) upsert(v);
  }
  for (const auto& [k, v] : from)
    if (to.find(k) == to.end()) del(v);
}

// Diff over `keys` only.
template <typename Map, typename Same, typename Upsert, typename Delete>
void DiffKeys(const std::set<std::string>& keys, const Map& from, const Map& to, Same same,
              Upsert upsert, Delete del) {
  for (const std::string& k : keys) {
    const auto f = from.find(k);
    const auto t = to.find(k);
    if (t != to.end() && (f == from.end() || !same(f->second, t->second))) upsert(t->second);
    if (t == to.end() && f != from.end()) del(f->second);
  }
}

}  // namespace

bool SameLease(const FlannelLease& a, const FlannelLease& b) {
  return SamePrefix(a.subnet, b.subnet) && a.public_ip == b.public_ip &&
         a.backend_type == b.backend_type && a.vni == b.vni && a.vtep_mac == b.vtep_mac;
}

bool SameServicePort(const api::ServicePort& a, const api::ServicePort& b) {
  return SameKey(a.key, b.key) && a.type == b.type && a.port == b.port &&
         a.node_port == b.node_port && a.cluster_ips == b.cluster_ips &&
         a.external_ips == b.external_ips && a.load_balancer_ips == b.load_balancer_ips &&
         a.external_traffic_policy == b.external_traffic_policy &&
         a.internal_traffic_policy == b.internal_traffic_policy &&
         a.health_check_node_port == b.health_check_node_port;
}

bool SameEndpoints(const api::EndpointSetReplace& a, const api::EndpointSetReplace& b) {
  if (!SameKey(a.key, b.key) || a.endpoints.size() != b.endpoints.size()) return false;
  for (size_t i = 0; i < a.endpoints.size(); ++i)
    if (!SameEndpoint(a.endpoints[i], b.endpoints[i])) return false;
  return true;
}

bool SameNodeSettings(const api::NodeSettings& a, const api::NodeSettings& b) {
  const NodeSpec& x = a.node;
  const NodeSpec& y = b.node;
  const FlannelNetworkConfig& n = a.network;
  const FlannelNetworkConfig& m = b.network;
  return x.name == y.name && x.node_ip == y.node_ip &&
         x.uplink_prefix_length == y.uplink_prefix_length && x.gateway_ip == y.gateway_ip &&
         x.uplink_mtu == y.uplink_mtu && x.uplink_mac == y.uplink_mac && x.pods_mac == y.pods_mac &&
         x.has_host_port == y.has_host_port && x.host_mac == y.host_mac &&
         x.host_peer_mac == y.host_peer_mac && SamePrefix(n.network, m.network) &&
         n.subnet_len == m.subnet_len && n.backend_type == m.backend_type && n.vni == m.vni &&
         n.port == m.port && n.direct_routing == m.direct_routing &&
         a.local_port_lo == b.local_port_lo && a.local_port_hi == b.local_port_hi;
}

bool SameNeighbors(const std::vector<NeighborEntry>& a, const std::vector<NeighborEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].port != b[i].port || a[i].ip != b[i].ip || a[i].mac != b[i].mac) return false;
  return true;
}

std::vector<api::Message> FullSyncMessages(const DesiredState& s, uint64_t epoch) {
  std::vector<api::Message> out;
  out.push_back(api::SyncBegin{epoch});
  if (s.node) out.push_back(*s.node);
  for (const auto& [k, l] : s.leases) out.push_back(api::LeaseUpsert{l});
  for (const auto& [k, p] : s.ports) out.push_back(api::ServicePortUpsert{p});
  for (const auto& [k, e] : s.endpoints) out.push_back(e);
  if (s.neighbors) out.push_back(api::NeighborsReplace{*s.neighbors});
  out.push_back(api::SyncEnd{epoch});
  return out;
}

std::vector<api::Message> DeltaMessages(const DesiredState& from, const DesiredState& to,
                                        const std::set<std::string>* service_keys) {
  std::vector<api::Message> out;
  if (to.node && (!from.node || !SameNodeSettings(*from.node, *to.node))) out.push_back(*to.node);
  // Deletions before upserts of the same kind: an address or subnet that
  // moves from one object to another is never claimed twice in between.
  std::vector<api::Message> upserts;
  Diff(
      from.leases, to.leases, SameLease,
      [&](const FlannelLease& l) { upserts.push_back(api::LeaseUpsert{l}); },
      [&](const FlannelLease& l) { out.push_back(api::LeaseDelete{l.subnet}); });
  out.insert(out.end(), upserts.begin(), upserts.end());
  upserts.clear();
  // A removed Service port takes its endpoint set with it: no separate
  // replace for it.
  const auto port_upsert = [&](const api::ServicePort& p) {
    upserts.push_back(api::ServicePortUpsert{p});
  };
  const auto port_delete = [&](const api::ServicePort& p) {
    out.push_back(api::ServicePortDelete{p.key});
  };
  const auto set_replace = [&](const api::EndpointSetReplace& e) { out.push_back(e); };
  const bool renamed = to.node && from.node && from.node->node.name != to.node->node.name;
  const auto same_set = [renamed](const api::EndpointSetReplace& a,
                                  const api::EndpointSetReplace& b) {
    return !renamed && SameEndpoints(a, b);
  };
  const auto set_gone = [&](const api::EndpointSetReplace& e) {
    // Endpoints gone while the port stays: an empty set.
    if (to.ports.count(api::FormatServicePortKey(e.key)) != 0)
      out.push_back(api::EndpointSetReplace{e.key, {}});
  };
  if (service_keys == nullptr) {
    Diff(from.ports, to.ports, SameServicePort, port_upsert, port_delete);
    out.insert(out.end(), upserts.begin(), upserts.end());
    Diff(from.endpoints, to.endpoints, same_set, set_replace, set_gone);
  } else {
    DiffKeys(*service_keys, from.ports, to.ports, SameServicePort, port_upsert, port_delete);
    out.insert(out.end(), upserts.begin(), upserts.end());
    DiffKeys(*service_keys, from.endpoints, to.endpoints, same_set, set_replace, set_gone);
  }
  if (to.neighbors && (!from.neighbors || !SameNeighbors(*from.neighbors, *to.neighbors)))
    out.push_back(api::NeighborsReplace{*to.neighbors});
  return out;
}

void ApplyDelta(DesiredState* state, const DesiredState& to,
                const std::set<std::string>* service_keys) {
  state->node = to.node;
  state->leases = to.leases;
  state->neighbors = to.neighbors;
  if (service_keys == nullptr) {
    state->ports = to.ports;
    state->endpoints = to.endpoints;
    return;
  }
  for (const std::string& k : *service_keys) {
    if (auto p = to.ports.find(k); p != to.ports.end())
      state->ports[k] = p->second;
    else
      state->ports.erase(k);
    if (auto e = to.endpoints.find(k); e != to.endpoints.end())
      state->endpoints[k] = e->second;
    else
      state->endpoints.erase(k);
  }
}

}  // namespace sluice
