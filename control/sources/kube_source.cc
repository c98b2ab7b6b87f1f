#include "control/sources/kube_source.h"

#include <cerrno>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "control/cluster_file.h"  // ParseIpv4Prefix, FormatIpv4Prefix

namespace sluice {
namespace {

using nlohmann::json;

constexpr const char* kPaths[3] = {"/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices",
                                   "/api/v1/nodes"};

std::string Id(const std::string& namespace_name, const std::string& name) {
  return absl::StrCat(namespace_name, "/", name);
}

std::pair<uint32_t, uint8_t> SubnetKey(const Ipv4Prefix& p) { return {p.address, p.length}; }

bool SameLease(const FlannelLease& a, const FlannelLease& b) {
  return a.subnet.address == b.subnet.address && a.subnet.length == b.subnet.length &&
         a.public_ip == b.public_ip && a.backend_type == b.backend_type && a.vni == b.vni &&
         a.vtep_mac == b.vtep_mac;
}

std::string EventLabel(KubeResourceKind kind, WatchEventType type) {
  return absl::StrCat(KubeResourceName(kind), ": watch ", WatchEventTypeName(type));
}

}  // namespace

const char* KubeResourceName(KubeResourceKind kind) {
  switch (kind) {
    case KubeResourceKind::kServices:
      return "services";
    case KubeResourceKind::kEndpointSlices:
      return "endpointslices";
    case KubeResourceKind::kNodes:
      return "nodes";
  }
  return "?";
}

KubeSource::KubeSource(KubeApiConfig api, KubeSourceOptions options, UpdateSink on_update,
                       ProblemSink on_problem)
    : api_(std::move(api)),
      options_(std::move(options)),
      on_update_(std::move(on_update)),
      on_problem_(std::move(on_problem)) {}

KubeSource::~KubeSource() { Stop(); }

absl::Status KubeSource::Start() {
  const bool wanted[3] = {options_.services, options_.endpoint_slices, options_.nodes};
  if (!wanted[0] && !wanted[1] && !wanted[2]) {
    return absl::FailedPreconditionError("kube source: no resource selected");
  }
  for (int i = 0; i < 3; ++i) {
    if (watches_[i] != nullptr)
      return absl::FailedPreconditionError("kube source: already started");
  }
  for (int i = 0; i < 3; ++i) {
    if (!wanted[i]) continue;
    const auto kind = static_cast<KubeResourceKind>(i);
    ListWatchOptions list_watch = options_.list_watch;
    list_watch.label_selector = kind == KubeResourceKind::kNodes ? "" : options_.label_selector;
    ListWatch::Handlers handlers;
    handlers.on_snapshot = [this, kind](std::vector<json> items, const std::string& rv) {
      Snapshot(kind, std::move(items), rv);
    };
    handlers.on_event = [this, kind](WatchEventType type, json object, const std::string& rv) {
      Event(kind, type, object, rv);
    };
    handlers.on_problem = [this](const absl::Status& problem) { Problem(problem); };
    watches_[i] = std::make_unique<ListWatch>(api_, kPaths[i], KubeResourceName(kind),
                                              std::move(list_watch), std::move(handlers));
  }
  for (int i = 0; i < 3; ++i) {
    if (watches_[i] == nullptr) continue;
    absl::Status started = watches_[i]->Start();
    if (!started.ok()) {
      Stop();
      return started;
    }
  }
  return absl::OkStatus();
}

void KubeSource::Stop() {
  for (auto& watch : watches_) {
    if (watch != nullptr) watch->Stop();
  }
}

KubeSourceStats KubeSource::stats() const {
  KubeSourceStats s;
  if (watches_[0] != nullptr) s.services = watches_[0]->stats();
  if (watches_[1] != nullptr) s.endpoint_slices = watches_[1]->stats();
  if (watches_[2] != nullptr) s.nodes = watches_[2]->stats();
  s.malformed_objects = malformed_;
  s.skipped_objects = skipped_;
  s.updates = updates_;
  return s;
}

void KubeSource::Deliver(KubeUpdate update) {
  std::lock_guard<std::mutex> lock(sink_mu_);
  ++updates_;
  if (on_update_) on_update_(std::move(update));
}

void KubeSource::Problem(const absl::Status& problem) {
  std::lock_guard<std::mutex> lock(sink_mu_);
  if (on_problem_) on_problem_(problem);
}

void KubeSource::Malformed(const absl::Status& problem) {
  ++malformed_;
  Problem(problem);
}

void KubeSource::Snapshot(KubeResourceKind kind, std::vector<json> items, const std::string& rv) {
  Delivered& delivered = delivered_[static_cast<int>(kind)];
  delivered = Delivered();
  KubeUpdate update;
  update.resource = kind;
  update.kind = KubeUpdateKind::kSnapshot;
  update.resource_version = rv;
  const std::string where = absl::StrCat(KubeResourceName(kind), ": list: ");
  for (const json& item : items) {
    absl::StatusOr<ObjectUse> use;
    switch (kind) {
      case KubeResourceKind::kServices: {
        ServiceSpec service;
        use = ReadService(item, KubeReading::kKubeProxy, &service);
        if (use.ok() && *use == ObjectUse::kUsed) {
          delivered.names.insert(Id(service.namespace_name, service.name));
          update.services.push_back(std::move(service));
        }
        break;
      }
      case KubeResourceKind::kEndpointSlices: {
        EndpointSliceSpec slice;
        use = ReadEndpointSlice(item, KubeReading::kKubeProxy, &slice);
        if (use.ok() && *use == ObjectUse::kUsed) {
          delivered.names.insert(Id(slice.namespace_name, slice.name));
          update.endpoint_slices.push_back(std::move(slice));
        }
        break;
      }
      case KubeResourceKind::kNodes: {
        FlannelLease lease;
        std::string node;
        use = ReadNodeLease(item, options_.node_reading, &lease, &node);
        if (use.ok() && *use == ObjectUse::kUsed) {
          const auto [owner, fresh] = delivered.subnet_owner.emplace(SubnetKey(lease.subnet), node);
          if (!fresh) {
            use = absl::InvalidArgumentError(
                absl::StrCat("Node ", node, ": spec.podCIDR: ", FormatIpv4Prefix(lease.subnet),
                             " is already the subnet of Node ", owner->second));
            break;
          }
          delivered.leases[node] = lease;
          update.leases.push_back(lease);
        }
        break;
      }
    }
    if (!use.ok()) {
      Malformed(absl::InvalidArgumentError(absl::StrCat(where, use.status().message())));
    } else if (*use == ObjectUse::kSkipped) {
      ++skipped_;
    }
  }
  Deliver(std::move(update));
}

void KubeSource::Event(KubeResourceKind kind, WatchEventType type, const json& object,
                       const std::string& rv) {
  if (kind == KubeResourceKind::kNodes) return NodeEvent(type, object, rv);
  Delivered& delivered = delivered_[static_cast<int>(kind)];
  const std::string label = EventLabel(kind, type);
  const bool services = kind == KubeResourceKind::kServices;
  const char* object_kind = services ? "Service" : "EndpointSlice";
  KubeUpdate update;
  update.resource = kind;
  update.resource_version = rv;

  std::string namespace_name, name;
  absl::Status named =
      ReadObjectName(object, object_kind, /*namespaced=*/true, &namespace_name, &name);
  if (!named.ok())
    return Malformed(absl::InvalidArgumentError(absl::StrCat(label, ": ", named.message())));
  const std::string id = Id(namespace_name, name);
  const auto remove = [&] {
    if (delivered.names.erase(id) == 0) return;
    update.kind = KubeUpdateKind::kDelete;
    update.deleted_name = id;
    Deliver(std::move(update));
  };
  // A deleted object is gone whatever its last state holds.
  if (type == WatchEventType::kDeleted) return remove();

  absl::StatusOr<ObjectUse> use;
  if (services) {
    ServiceSpec service;
    use = ReadService(object, KubeReading::kKubeProxy, &service);
    if (use.ok() && *use == ObjectUse::kUsed) update.services.push_back(std::move(service));
  } else {
    EndpointSliceSpec slice;
    use = ReadEndpointSlice(object, KubeReading::kKubeProxy, &slice);
    if (use.ok() && *use == ObjectUse::kUsed) update.endpoint_slices.push_back(std::move(slice));
  }
  if (!use.ok()) {
    // The last good state of the object stays.
    return Malformed(absl::InvalidArgumentError(absl::StrCat(label, ": ", use.status().message())));
  }
  if (*use == ObjectUse::kSkipped) {
    ++skipped_;
    return remove();  // e.g. labelled for another proxy since
  }
  delivered.names.insert(id);
  update.kind = KubeUpdateKind::kUpsert;
  Deliver(std::move(update));
}

void KubeSource::NodeEvent(WatchEventType type, const json& object, const std::string& rv) {
  Delivered& delivered = delivered_[static_cast<int>(KubeResourceKind::kNodes)];
  const std::string label = EventLabel(KubeResourceKind::kNodes, type);
  std::string unused, node;
  absl::Status named = ReadObjectName(object, "Node", /*namespaced=*/false, &unused, &node);
  if (!named.ok())
    return Malformed(absl::InvalidArgumentError(absl::StrCat(label, ": ", named.message())));

  const auto remove = [&] {
    const auto it = delivered.leases.find(node);
    if (it == delivered.leases.end()) return;
    KubeUpdate update;
    update.resource = KubeResourceKind::kNodes;
    update.kind = KubeUpdateKind::kDelete;
    update.resource_version = rv;
    update.deleted_name = node;
    update.deleted_lease = it->second.subnet;
    delivered.subnet_owner.erase(SubnetKey(it->second.subnet));
    delivered.leases.erase(it);
    Deliver(std::move(update));
  };
  if (type == WatchEventType::kDeleted) return remove();

  FlannelLease lease;
  absl::StatusOr<ObjectUse> use = ReadNodeLease(object, options_.node_reading, &lease, &node);
  if (!use.ok()) {
    return Malformed(absl::InvalidArgumentError(absl::StrCat(label, ": ", use.status().message())));
  }
  if (*use == ObjectUse::kSkipped) {
    ++skipped_;
    return remove();
  }
  const auto owner = delivered.subnet_owner.find(SubnetKey(lease.subnet));
  if (owner != delivered.subnet_owner.end() && owner->second != node) {
    return Malformed(absl::InvalidArgumentError(
        absl::StrCat(label, ": Node ", node, ": spec.podCIDR: ", FormatIpv4Prefix(lease.subnet),
                     " is already the subnet of Node ", owner->second)));
  }
  const auto previous = delivered.leases.find(node);
  if (previous != delivered.leases.end()) {
    if (SameLease(previous->second, lease)) return;  // a heartbeat, not a lease change
    if (SubnetKey(previous->second.subnet) != SubnetKey(lease.subnet)) remove();
  }
  delivered.leases[node] = lease;
  delivered.subnet_owner[SubnetKey(lease.subnet)] = node;
  KubeUpdate update;
  update.resource = KubeResourceKind::kNodes;
  update.kind = KubeUpdateKind::kUpsert;
  update.resource_version = rv;
  update.leases.push_back(lease);
  Deliver(std::move(update));
}

// ---- subnet.env ----------------------------------------------------------------------

absl::StatusOr<FlannelSubnetEnv> ParseFlannelSubnetEnv(std::string_view text) {
  const std::string where = "subnet.env";
  std::map<std::string, std::string> values;
  int line_number = 0;
  for (absl::string_view raw : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_number;
    const absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " line ", line_number, ": expected KEY=VALUE"));
    }
    const std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    const std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (!values.emplace(key, value).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " line ", line_number, ": ", key, " given twice"));
    }
  }
  const auto get = [&](const char* key) -> absl::StatusOr<std::string> {
    const auto it = values.find(key);
    if (it == values.end())
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ": missing"));
    return it->second;
  };
  const auto bad = [&](const char* key, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, ": ", why));
  };

  FlannelSubnetEnv env;
  absl::StatusOr<std::string> network = get("FLANNEL_NETWORK");
  if (!network.ok()) return network.status();
  absl::StatusOr<Ipv4Prefix> network_prefix = ParseIpv4Prefix(*network);
  if (!network_prefix.ok()) return bad("FLANNEL_NETWORK", network_prefix.status().message());
  network_prefix->address &= PrefixMask(network_prefix->length);
  env.network.network = *network_prefix;

  absl::StatusOr<std::string> subnet = get("FLANNEL_SUBNET");
  if (!subnet.ok()) return subnet.status();
  absl::StatusOr<Ipv4Prefix> subnet_prefix = ParseIpv4Prefix(*subnet);
  if (!subnet_prefix.ok()) return bad("FLANNEL_SUBNET", subnet_prefix.status().message());
  env.subnet_gateway = subnet_prefix->address;
  env.subnet.address = subnet_prefix->address & PrefixMask(subnet_prefix->length);
  env.subnet.length = subnet_prefix->length;
  if (env.subnet.length < env.network.network.length ||
      !env.network.network.Contains(env.subnet.address)) {
    return bad("FLANNEL_SUBNET", absl::StrCat(*subnet, " is outside FLANNEL_NETWORK ",
                                              FormatIpv4Prefix(env.network.network)));
  }
  env.network.subnet_len = env.subnet.length;

  absl::StatusOr<std::string> mtu = get("FLANNEL_MTU");
  if (!mtu.ok()) return mtu.status();
  uint32_t mtu_value = 0;
  if (!absl::SimpleAtoi(*mtu, &mtu_value) || mtu_value < 68 || mtu_value > 65535) {
    return bad("FLANNEL_MTU",
               absl::StrCat("expected 68..65535, got \"", absl::CHexEscape(*mtu), "\""));
  }
  env.mtu = static_cast<uint16_t>(mtu_value);

  absl::StatusOr<std::string> masq = get("FLANNEL_IPMASQ");
  if (!masq.ok()) return masq.status();
  if (*masq == "true") {
    env.ip_masq = true;
  } else if (*masq == "false") {
    env.ip_masq = false;
  } else {
    return bad("FLANNEL_IPMASQ",
               absl::StrCat("expected true or false, got \"", absl::CHexEscape(*masq), "\""));
  }
  return env;
}

absl::StatusOr<FlannelSubnetEnv> LoadFlannelSubnetEnv(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  std::string text;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() < (1u << 20)) {
    text.append(buffer, n);
  }
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) return absl::ErrnoToStatus(error, absl::StrCat("cannot read ", path));
  absl::StatusOr<FlannelSubnetEnv> env = ParseFlannelSubnetEnv(text);
  if (!env.ok()) {
    return absl::Status(env.status().code(), absl::StrCat(path, ": ", env.status().message()));
  }
  return env;
}

}  // namespace sluice
