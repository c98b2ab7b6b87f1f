#include "app/inspect.h"

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

const char* ProtoName(uint8_t p) {
  return p == kProtoTcp ? "tcp" : p == kProtoUdp ? "udp" : p == kProtoIcmp ? "icmp" : "other";
}

nlohmann::json Tuple(const FlowKey& k) {
  return {{"src", FormatIpv4(k.src_ip)},
          {"dst", FormatIpv4(k.dst_ip)},
          {"sport", k.src_port},
          {"dport", k.dst_port}};
}

bool Matches(const FlowKey& o, const FlowKey& r, const ConntrackFilter& f) {
  if (f.protocol != 0 && o.proto != f.protocol) return false;
  if (f.address != 0 && o.src_ip != f.address && o.dst_ip != f.address &&
      r.src_ip != f.address && r.dst_ip != f.address)
    return false;
  if (f.port != 0 && o.src_port != f.port && o.dst_port != f.port && r.src_port != f.port &&
      r.dst_port != f.port)
    return false;
  return true;
}

}  // namespace

nlohmann::json PeersJson(const TableSet& t) {
  const NodeView& n = t.node;
  nlohmann::json peers = nlohmann::json::array();
  for (const uint32_t slot : t.overlay->Peers()) {
    const VtepPeer& p = t.overlay->peer(slot);
    peers.push_back({{"subnet", absl::StrFormat("%s/%u", FormatIpv4(p.subnet), p.subnet_length)},
                     {"public_ip", FormatIpv4(p.public_ip)},
                     {"vtep_mac", FormatMac(p.vtep_mac)},
                     {"local", p.local}});
  }
  return {{"generation", t.generation},
          {"node",
           {{"name", n.name},
            {"node_ip", FormatIpv4(n.node_ip)},
            {"gateway", FormatIpv4(n.gateway_ip)},
            {"pod_subnet", absl::StrFormat("%s/%d", FormatIpv4(n.pod_net),
                                           __builtin_popcount(n.pod_mask))},
            {"cluster_network", absl::StrFormat("%s/%d", FormatIpv4(n.cluster_net),
                                                __builtin_popcount(n.cluster_mask))},
            {"vxlan_ip", FormatIpv4(n.vxlan_ip)},
            {"vtep_mac", FormatMac(n.vtep_mac)},
            {"vni", n.vni},
            {"vxlan_port", n.vxlan_port}}},
          {"peers", peers}};
}

nlohmann::json NeighborsJson(const NeighborTable& table, uint64_t now) {
  static const char* kStates[] = {"PERMANENT", "REACHABLE", "STALE"};
  const NeighborTable::Config& c = table.config();
  const double hz = static_cast<double>(c.ticks_per_second);
  nlohmann::json entries = nlohmann::json::array();
  for (const NeighborTable::Entry& e : table.Entries(now)) {
    const bool is_static = e.state == NeighborTable::EntryState::kPermanent;
    nlohmann::json j = {{"port", PortRoleName(e.port)},
                        {"ip", FormatIpv4(e.ip)},
                        {"mac", FormatMac(e.mac)},
                        {"static", is_static},
                        {"state", kStates[static_cast<int>(e.state)]}};
    if (!is_static) j["confirmed_seconds_ago"] = static_cast<double>(e.confirmed_ago) / hz;
    entries.push_back(std::move(j));
  }
  nlohmann::json ports = nlohmann::json::array();
  for (int p = 0; p < kPortRoleCount; ++p)
    ports.push_back({{"port", PortRoleName(static_cast<PortRole>(p))},
                     {"learned", table.learned_count(static_cast<PortRole>(p))},
                     {"learn_quota", c.learn_quota[p]}});
  return {{"neighbors", entries},
          {"ports", ports},
          {"static", {{"count", table.static_count()}, {"capacity", c.static_capacity}}},
          {"reachable_seconds", c.reachable_ms / 1000.0},
          {"stale_seconds", c.stale_ms / 1000.0}};
}

nlohmann::json ConntrackJson(const ConntrackTable& table, const ConntrackFilter& filter,
                             uint64_t now) {
  nlohmann::json flows = nlohmann::json::array();
  uint64_t matched = 0;
  const uint32_t tick = table.Tick(now);
  for (uint32_t i = 0; i < table.capacity(); ++i) {
    const ConntrackEntry& e = table.entry(i);
    if (!e.in_use) continue;
    const FlowKey o = e.original;
    const FlowKey r = e.reply;
    if (!Matches(o, r, filter)) continue;
    ++matched;
    if (flows.size() >= filter.limit) continue;
    const uint8_t state = e.state.load(std::memory_order_relaxed);
    const int32_t idle =
        static_cast<int32_t>(tick - e.last_seen.load(std::memory_order_relaxed));
    flows.push_back({{"protocol", ProtoName(o.proto)},
                     {"original", Tuple(o)},
                     {"reply", Tuple(r)},
                     {"dnat", (e.flags & ConntrackEntry::kDnat) != 0},
                     {"snat", (e.flags & ConntrackEntry::kSnat) != 0},
                     {"seen_reply", (state & ConntrackEntry::kSeenReply) != 0},
                     {"fin", (state & ConntrackEntry::kFin) != 0},
                     {"rst", (state & ConntrackEntry::kRst) != 0},
                     {"idle_seconds", idle < 0 ? 0.0 : idle * table.TickSeconds()},
                     {"owner", e.owner}});
  }
  return {{"flows", flows},
          {"matched", matched},
          {"shown", flows.size()},
          {"in_use", table.InUse()}};
}

nlohmann::json StagesJson(const std::vector<NodeStats>& stats) {
  nlohmann::json out = nlohmann::json::array();
  for (const NodeStats& s : stats)
    out.push_back({{"node", s.node},
                   {"calls", s.calls},
                   {"packets", s.packets},
                   {"cycles", s.cycles},
                   {"cycles_per_packet",
                    s.packets == 0 ? 0.0 : static_cast<double>(s.cycles) / s.packets}});
  return out;
}

nlohmann::json ServicesJson(const ServiceProgrammer& programmer, uint32_t address, uint16_t port) {
  static const char* kKinds[] = {"ClusterIP", "NodePort", "ExternalIP", "LoadBalancerIP"};
  nlohmann::json out = nlohmann::json::array();
  for (const ServiceProgrammer::PortView& v : programmer.View(address, port)) {
    nlohmann::json addrs = nlohmann::json::array();
    for (const auto& [k, kind] : v.keys) {
      nlohmann::json a = {{"kind", kKinds[static_cast<int>(kind) & 3]}, {"port", k.port}};
      if (k.ip != 0) a["ip"] = FormatIpv4(k.ip);
      addrs.push_back(a);
    }
    nlohmann::json eps = nlohmann::json::array();
    for (const Endpoint& e : v.all) {
      bool local = false;
      for (const Endpoint& l : v.local) local |= l == e;
      eps.push_back({{"ip", FormatIpv4(e.ip)}, {"port", e.port}, {"ready", true},
                     {"local", local}, {"chosen", true}});
    }
    for (const Endpoint& l : v.local) {
      bool listed = false;
      for (const Endpoint& e : v.all) listed |= l == e;
      if (!listed)
        eps.push_back({{"ip", FormatIpv4(l.ip)}, {"port", l.port}, {"ready", true},
                       {"local", true}, {"chosen", true}});
    }
    out.push_back(
        {{"name", v.id},
         {"type", v.proxied ? "proxied" : "not proxied"},
         {"external_traffic_policy",
          (v.flags & EndpointSet::kExternalLocalOnly) ? "Local" : "Cluster"},
         {"internal_traffic_policy",
          (v.flags & EndpointSet::kInternalLocalOnly) ? "Local" : "Cluster"},
         {"addresses", addrs},
         {"endpoints", eps}});
  }
  return {{"services", out}};
}

}  // namespace sluice
