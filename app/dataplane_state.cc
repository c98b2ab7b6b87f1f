#include "app/dataplane_state.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

constexpr uint32_t kMaxVni = (1u << 24) - 1;

// An Error for `object`'s `field`.
api::Message Reject(std::string object, std::string field, std::string message) {
  return api::Error{std::move(object), std::move(field), std::move(message)};
}

// absl::Status whose message is "object\tfield\tmessage" internally, split
// into the Error's parts by ToError.
absl::Status Bad(const std::string& object, const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(object, "\t", field, "\t", what));
}

api::Message ToError(const absl::Status& s, const std::string& default_object) {
  const std::string m(s.message());
  const size_t a = m.find('\t');
  const size_t b = a == std::string::npos ? a : m.find('\t', a + 1);
  if (b == std::string::npos) return Reject(default_object, "", m);
  return Reject(m.substr(0, a), m.substr(a + 1, b - a - 1), m.substr(b + 1));
}

std::string Prefix(const Ipv4Prefix& p) {
  return absl::StrFormat("%s/%u", FormatIpv4(p.address), p.length);
}

bool StationMac(const MacAddress& m) { return (m[0] & 1) == 0 && m != MacAddress{}; }

absl::Status CheckNode(const api::NodeSettings& s) {
  const std::string o = "node settings";
  const NodeSpec& n = s.node;
  if (n.name.empty() || n.name.size() > 253) return Bad(o, "node.name", "must be 1..253 characters");
  if (!IsUnicastHost(n.node_ip))
    return Bad(o, "node.nodeIP", absl::StrCat(FormatIpv4(n.node_ip), " is not a unicast address"));
  if (n.uplink_prefix_length < 1 || n.uplink_prefix_length > 32)
    return Bad(o, "node.uplinkPrefixLength",
               absl::StrCat("must be 1..32, got ", n.uplink_prefix_length));
  if (n.gateway_ip != 0 && (!IsUnicastHost(n.gateway_ip) || n.gateway_ip == n.node_ip))
    return Bad(o, "node.gateway",
               absl::StrCat(FormatIpv4(n.gateway_ip), " is not a unicast address other than nodeIP"));
  if (n.uplink_mtu < 576 || n.uplink_mtu > 9216)
    return Bad(o, "node.uplinkMTU", absl::StrCat("must be 576..9216, got ", n.uplink_mtu));
  if (!StationMac(n.uplink_mac))
    return Bad(o, "node.ports.uplink.mac", absl::StrCat("must be a unicast MAC, got ", FormatMac(n.uplink_mac)));
  if (!StationMac(n.pods_mac))
    return Bad(o, "node.ports.pods.mac", absl::StrCat("must be a unicast MAC, got ", FormatMac(n.pods_mac)));
  if (n.has_host_port && (!StationMac(n.host_mac) || !StationMac(n.host_peer_mac)))
    return Bad(o, "node.ports.host", "mac and peerMAC must be unicast MACs");
  const FlannelNetworkConfig& c = s.network;
  if (c.network.length < 8 || c.network.length > 28 ||
      (c.network.address & ~PrefixMask(c.network.length)) != 0)
    return Bad(o, "network.Network",
               absl::StrCat(Prefix(c.network), " must be a network address of length 8..28"));
  if (c.subnet_len < c.network.length + 2 || c.subnet_len > 30)
    return Bad(o, "network.SubnetLen",
               absl::StrFormat("must be %u..30 for Network %s, got %u", c.network.length + 2,
                               Prefix(c.network), c.subnet_len));
  if (c.backend_type != "vxlan")
    return Bad(o, "network.Backend.Type",
               absl::StrCat("only vxlan is supported, got \"", c.backend_type, "\""));
  if (c.vni > kMaxVni) return Bad(o, "network.Backend.VNI", absl::StrCat(c.vni, " does not fit 24 bits"));
  if (c.port == 0) return Bad(o, "network.Backend.Port", "must be 1..65535 (8472 is flannel's default)");
  if (s.local_port_lo == 0 || s.local_port_lo > s.local_port_hi)
    return Bad(o, "local_port_range",
               absl::StrFormat("%u-%u is not a port range", s.local_port_lo, s.local_port_hi));
  return absl::OkStatus();
}

absl::Status CheckLease(const FlannelLease& l, const std::optional<api::NodeSettings>& node,
                        const std::map<std::pair<uint32_t, uint8_t>, FlannelLease>& others) {
  const std::string o = absl::StrCat("lease ", Prefix(l.subnet));
  if (l.subnet.length > 32 || (l.subnet.address & ~PrefixMask(l.subnet.length)) != 0)
    return Bad(o, "subnet", "must be a network address with a prefix length 0..32");
  if (node) {
    const Ipv4Prefix& net = node->network.network;
    if (l.subnet.length < net.length || !net.Contains(l.subnet.address))
      return Bad(o, "subnet", absl::StrCat("is not inside the cluster network ", Prefix(net)));
  }
  if (!IsUnicastHost(l.public_ip))
    return Bad(o, "PublicIP", absl::StrCat(FormatIpv4(l.public_ip), " is not a unicast address"));
  if (l.backend_type != "vxlan")
    return Bad(o, "BackendType", absl::StrCat("only vxlan is supported, got \"", l.backend_type, "\""));
  if (l.vni > kMaxVni) return Bad(o, "BackendData.VNI", absl::StrCat(l.vni, " does not fit 24 bits"));
  if (!StationMac(l.vtep_mac))
    return Bad(o, "BackendData.VtepMAC",
               absl::StrCat("must be a unicast MAC, got ", FormatMac(l.vtep_mac)));
  for (const auto& [key, other] : others) {
    if (key == std::make_pair(l.subnet.address, l.subnet.length)) continue;  // its old version
    const Ipv4Prefix& wider = other.subnet.length <= l.subnet.length ? other.subnet : l.subnet;
    const Ipv4Prefix& narrower = &wider == &other.subnet ? l.subnet : other.subnet;
    if (wider.Contains(narrower.address))
      return Bad(o, "subnet", absl::StrCat("overlaps the lease ", Prefix(other.subnet)));
    if (other.public_ip == l.public_ip)
      return Bad(o, "PublicIP", absl::StrCat(FormatIpv4(l.public_ip), " already holds the lease ",
                                             Prefix(other.subnet)));
  }
  return absl::OkStatus();
}

absl::Status CheckNeighbors(const std::vector<NeighborEntry>& ns) {
  std::set<std::pair<int, uint32_t>> seen;
  for (size_t i = 0; i < ns.size(); ++i) {
    const NeighborEntry& n = ns[i];
    const std::string f = absl::StrCat("neighbors[", i, "]");
    if (!IsUnicastHost(n.ip)) return Bad("neighbors", f + ".ip", FormatIpv4(n.ip) + " is not unicast");
    if (!StationMac(n.mac)) return Bad("neighbors", f + ".mac", FormatMac(n.mac) + " is not a unicast MAC");
    if (!seen.insert({static_cast<int>(n.port), n.ip}).second)
      return Bad("neighbors", f, FormatIpv4(n.ip) + " listed twice on its port");
  }
  return absl::OkStatus();
}

std::string PortObject(const api::ServicePortKey& k) {
  return "Service " + api::FormatServicePortKey(k);
}

}  // namespace

DataplaneState::DataplaneState(Targets targets, uint64_t instance)
    : targets_(std::move(targets)), instance_(instance) {}

api::HelloReply DataplaneState::Hello(bool writer) const {
  api::HelloReply r;
  r.instance = instance_;
  r.last_epoch = last_epoch_;
  r.writer = writer;
  return r;
}

api::Message DataplaneState::OkReply() const {
  return api::Ok{targets_.generation ? targets_.generation() : 0};
}

absl::Status DataplaneState::Republish(const std::optional<api::NodeSettings>& node,
                                       const std::map<LeaseKey, FlannelLease>& leases) {
  if (!node) return absl::OkStatus();
  bool has_local = false;
  for (const auto& [k, l] : leases) has_local |= l.public_ip == node->node.node_ip;
  if (!has_local) {
    // Incomplete (this node's own lease not known yet): kept, not published;
    // but a map that once was complete may not lose the node's own lease.
    if (published_)
      return Bad("lease", "", absl::StrCat("this node's own lease (PublicIP ",
                                           FormatIpv4(node->node.node_ip), ") cannot be removed"));
    return absl::OkStatus();
  }
  ClusterModel m;
  m.node = node->node;
  m.node.neighbors.clear();
  m.network = node->network;
  for (const auto& [k, l] : leases) m.leases.push_back(l);
  absl::StatusOr<uint64_t> g = targets_.publish_network(m);
  if (!g.ok()) return g.status();
  published_ = true;
  return absl::OkStatus();
}

absl::Status DataplaneState::ApplyNodeSettings(const api::NodeSettings& s) {
  if (absl::Status st = CheckNode(s); !st.ok()) return st;
  // Leases already held must still fit the (maybe new) cluster network.
  for (const auto& [k, l] : leases_) {
    if (s.network.network.length > l.subnet.length || !s.network.network.Contains(l.subnet.address))
      return Bad("node settings", "network.Network",
                 absl::StrCat(Prefix(s.network.network), " does not contain the lease ",
                              Prefix(l.subnet)));
  }
  if (absl::Status st = Republish(s, leases_); !st.ok()) return st;
  const bool renamed = !node_ || node_->node.name != s.node.name;
  node_ = s;
  if (renamed && targets_.services != nullptr) targets_.services->SetNodeName(s.node.name);
  return absl::OkStatus();
}

absl::Status DataplaneState::ApplyLease(const FlannelLease& lease) {
  if (absl::Status st = CheckLease(lease, node_, leases_); !st.ok()) return st;
  std::map<LeaseKey, FlannelLease> next = leases_;
  next[{lease.subnet.address, lease.subnet.length}] = lease;
  if (absl::Status st = Republish(node_, next); !st.ok()) return st;
  leases_ = std::move(next);
  return absl::OkStatus();
}

absl::Status DataplaneState::ApplyLeaseDelete(const Ipv4Prefix& subnet) {
  auto it = leases_.find({subnet.address, subnet.length});
  if (it == leases_.end()) return absl::OkStatus();  // already gone: nothing to do
  if (node_ && it->second.public_ip == node_->node.node_ip)
    return Bad(absl::StrCat("lease ", Prefix(subnet)), "",
               "is this node's own lease (its pod subnet); it cannot be removed");
  std::map<LeaseKey, FlannelLease> next = leases_;
  next.erase({subnet.address, subnet.length});
  if (absl::Status st = Republish(node_, next); !st.ok()) return st;
  leases_ = std::move(next);
  return absl::OkStatus();
}

absl::Status DataplaneState::Seed(const ClusterModel& model) {
  api::NodeSettings s;
  s.node = model.node;
  s.network = model.network;
  std::map<LeaseKey, FlannelLease> leases;
  for (const FlannelLease& l : model.leases) {
    if (absl::Status st = CheckLease(l, s, leases); !st.ok()) return st;
    leases[{l.subnet.address, l.subnet.length}] = l;
  }
  if (absl::Status st = CheckNode(s); !st.ok()) return st;
  node_ = s;
  leases_ = std::move(leases);
  if (targets_.services != nullptr) targets_.services->SetNodeName(s.node.name);
  // Tables were built from the same model by the caller: complete.
  published_ = true;
  return absl::OkStatus();
}

api::Message DataplaneState::Apply(uint64_t connection, const api::Message& message) {
  // Inside a sync, every object named is seen (even when rejected).
  const bool in_sync = sync_ && sync_->connection == connection;
  if (const auto* m = std::get_if<api::SyncBegin>(&message)) {
    if (m->epoch == 0 || m->epoch <= last_epoch_)
      return Reject("SyncBegin", "epoch",
                    absl::StrCat(m->epoch, " is not after the last completed epoch ", last_epoch_));
    if (sync_ && sync_->connection != connection)
      std::fprintf(stderr, "sluice-node: full sync (epoch %lu) abandoned for a new one\n",
                   static_cast<unsigned long>(sync_->epoch));
    sync_ = Sync{m->epoch, connection, {}, {}};
    return OkReply();
  }
  if (const auto* m = std::get_if<api::SyncEnd>(&message)) {
    if (!in_sync || sync_->epoch != m->epoch)
      return Reject("SyncEnd", "epoch",
                    absl::StrCat(m->epoch, " does not end a sync open on this connection"));
    // Prune what the epoch did not name: Service ports first (they may use
    // nothing of the leases, but keep the order of DeltaMessages).
    std::string failures;
    if (targets_.services != nullptr) {
      for (const api::ServicePortKey& k : targets_.services->Keys()) {
        if (sync_->ports.count(api::FormatServicePortKey(k)) != 0) continue;
        if (absl::Status s = targets_.services->Delete(k); !s.ok())
          absl::StrAppend(&failures, " ", s.message());
      }
    }
    std::map<LeaseKey, FlannelLease> next;
    for (const auto& [k, l] : leases_)
      if (sync_->leases.count(k) != 0 || (node_ && l.public_ip == node_->node.node_ip))
        next[k] = l;
    if (next.size() != leases_.size()) {
      if (absl::Status s = Republish(node_, next); s.ok())
        leases_ = std::move(next);
      else
        absl::StrAppend(&failures, " ", s.message());
    }
    last_epoch_ = sync_->epoch;
    sync_.reset();
    if (!failures.empty()) return Reject("SyncEnd", "", "pruning failed:" + failures);
    return OkReply();
  }
  absl::Status st;
  std::string object = "message";
  if (const auto* m = std::get_if<api::NodeSettings>(&message)) {
    object = "node settings";
    st = ApplyNodeSettings(*m);
  } else if (const auto* m = std::get_if<api::LeaseUpsert>(&message)) {
    object = absl::StrCat("lease ", Prefix(m->lease.subnet));
    if (in_sync) sync_->leases.insert({m->lease.subnet.address, m->lease.subnet.length});
    st = ApplyLease(m->lease);
  } else if (const auto* m = std::get_if<api::LeaseDelete>(&message)) {
    object = absl::StrCat("lease ", Prefix(m->subnet));
    st = ApplyLeaseDelete(m->subnet);
  } else if (const auto* m = std::get_if<api::NeighborsReplace>(&message)) {
    object = "neighbors";
    st = CheckNeighbors(m->neighbors);
    if (st.ok()) st = targets_.replace_neighbors(m->neighbors);
  } else if (const auto* m = std::get_if<api::ServicePortUpsert>(&message)) {
    object = PortObject(m->port.key);
    if (in_sync) sync_->ports.insert(api::FormatServicePortKey(m->port.key));
    st = targets_.services == nullptr ? absl::UnavailableError("no Service tables")
                                      : targets_.services->Upsert(m->port);
  } else if (const auto* m = std::get_if<api::EndpointSetReplace>(&message)) {
    object = PortObject(m->key);
    st = targets_.services == nullptr ? absl::UnavailableError("no Service tables")
                                      : targets_.services->Replace(*m);
  } else if (const auto* m = std::get_if<api::ServicePortDelete>(&message)) {
    object = PortObject(m->key);
    st = targets_.services == nullptr ? absl::UnavailableError("no Service tables")
                                      : targets_.services->Delete(m->key);
  } else {
    return Reject("message", "type", "not a write message");
  }
  if (!st.ok()) return ToError(st, object);
  return OkReply();
}

}  // namespace sluice
