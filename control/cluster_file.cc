#include "control/cluster_file.h"

#include <cerrno>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "control/flannel_values.h"
#include "control/json_fields.h"
#include "control/kube_objects.h"

namespace sluice {
namespace {

// nlohmann::json throws from get<>, at() and friends on a type mismatch. This
// file never calls those on a value whose type it has not checked, reads
// values through get_ptr<>() (which returns nullptr instead of throwing), and
// parses with allow_exceptions=false, so no exception leaves the parser.
using json = nlohmann::json;

#define CF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status cf_status_ = (expr);        \
    if (!cf_status_.ok()) return cf_status_; \
  } while (0)

constexpr absl::string_view kConfigKey = "/coreos.com/network/config";
constexpr absl::string_view kSubnetsPrefix = "/coreos.com/network/subnets/";

// The located field readers shared with the flannel values and the sources.
using namespace json_fields;  // NOLINT(build/namespaces): this file's vocabulary

absl::Status ParsePortRole(const json& v, const Loc& loc, PortRole* out) {
  std::string name;
  CF_RETURN_IF_ERROR(AsString(v, loc, &name));
  if (name == "uplink") {
    *out = PortRole::kUplink;
  } else if (name == "pods") {
    *out = PortRole::kPods;
  } else if (name == "host") {
    *out = PortRole::kHost;
  } else {
    return loc.Error(absl::StrCat("expected \"uplink\", \"pods\" or \"host\", got ", Quote(name)));
  }
  return absl::OkStatus();
}


absl::Status ParseNodePorts(const json& node, const Loc& loc, NodeSpec* out) {
  const json* ports = nullptr;
  CF_RETURN_IF_ERROR(GetObject(node, loc, "ports", Need::kRequired, &ports));
  const Loc ports_loc = loc.Child("ports");
  // A misspelt port name would silently drop that port: reject unknown ones.
  for (const auto& [name, value] : ports->items()) {
    if (name != "uplink" && name != "pods" && name != "host") {
      return ports_loc.Child(name).Error("unknown port; expected uplink, pods or host");
    }
  }
  const json* uplink = nullptr;
  CF_RETURN_IF_ERROR(GetObject(*ports, ports_loc, "uplink", Need::kRequired, &uplink));
  CF_RETURN_IF_ERROR(
      GetStationMac(*uplink, ports_loc.Child("uplink"), "mac", Need::kRequired, &out->uplink_mac));
  const json* pods = nullptr;
  CF_RETURN_IF_ERROR(GetObject(*ports, ports_loc, "pods", Need::kRequired, &pods));
  CF_RETURN_IF_ERROR(
      GetStationMac(*pods, ports_loc.Child("pods"), "mac", Need::kRequired, &out->pods_mac));
  const json* host = nullptr;
  CF_RETURN_IF_ERROR(GetObject(*ports, ports_loc, "host", Need::kOptional, &host));
  if (host != nullptr) {
    const Loc host_loc = ports_loc.Child("host");
    CF_RETURN_IF_ERROR(GetStationMac(*host, host_loc, "mac", Need::kRequired, &out->host_mac));
    CF_RETURN_IF_ERROR(
        GetStationMac(*host, host_loc, "peerMAC", Need::kRequired, &out->host_peer_mac));
    out->has_host_port = true;
  }
  return absl::OkStatus();
}

absl::Status ParseNeighbors(const json& node, const Loc& loc, NodeSpec* out) {
  const json* neighbors = nullptr;
  CF_RETURN_IF_ERROR(GetArray(node, loc, "neighbors", Need::kOptional, &neighbors));
  if (neighbors == nullptr) return absl::OkStatus();
  std::map<std::pair<PortRole, uint32_t>, size_t> seen;
  for (size_t i = 0; i < neighbors->size(); ++i) {
    const json& entry = (*neighbors)[i];
    const Loc entry_loc = loc.Child("neighbors").Index(i);
    CF_RETURN_IF_ERROR(AsObject(entry, entry_loc));
    NeighborEntry neighbor;
    const json* port = nullptr;
    CF_RETURN_IF_ERROR(Find(entry, entry_loc, "port", Need::kRequired, &port));
    CF_RETURN_IF_ERROR(ParsePortRole(*port, entry_loc.Child("port"), &neighbor.port));
    if (neighbor.port == PortRole::kHost && !out->has_host_port) {
      return entry_loc.Child("port").Error("\"host\", but node.ports.host is absent");
    }
    CF_RETURN_IF_ERROR(GetIpv4(entry, entry_loc, "ip", Need::kRequired, &neighbor.ip));
    CF_RETURN_IF_ERROR(GetStationMac(entry, entry_loc, "mac", Need::kRequired, &neighbor.mac));
    const auto [it, inserted] = seen.emplace(std::make_pair(neighbor.port, neighbor.ip), i);
    if (!inserted) {
      return entry_loc.Error(absl::StrCat("duplicates neighbors[", it->second, "] (",
                                          PortRoleName(neighbor.port), " ", FormatIpv4(neighbor.ip),
                                          ")"));
    }
    out->neighbors.push_back(neighbor);
  }
  return absl::OkStatus();
}

absl::Status ParseNode(const json& doc, NodeSpec* out) {
  const Loc loc("node");
  const json* node = Member(doc, "node");
  if (node == nullptr) return loc.Error("missing");
  CF_RETURN_IF_ERROR(AsObject(*node, loc));

  CF_RETURN_IF_ERROR(GetString(*node, loc, "name", Need::kRequired, &out->name));
  if (out->name.empty()) return loc.Child("name").Error("must not be empty");
  CF_RETURN_IF_ERROR(GetIpv4(*node, loc, "nodeIP", Need::kRequired, &out->node_ip));
  int64_t value = 0;
  bool present = false;
  CF_RETURN_IF_ERROR(
      GetInt(*node, loc, "uplinkPrefixLength", Need::kOptional, 0, 32, &value, &present));
  if (present) out->uplink_prefix_length = static_cast<uint8_t>(value);
  CF_RETURN_IF_ERROR(GetIpv4(*node, loc, "gateway", Need::kOptional, &out->gateway_ip));
  if (out->gateway_ip != 0 && out->gateway_ip == out->node_ip) {
    return loc.Child("gateway").Error("must differ from nodeIP");
  }
  // The gateway may lie outside the uplink prefix: clouds hand out /32
  // addresses with an on-link gateway.
  CF_RETURN_IF_ERROR(GetInt(*node, loc, "uplinkMTU", Need::kOptional, 576, 9216, &value, &present));
  if (present) out->uplink_mtu = static_cast<uint16_t>(value);
  CF_RETURN_IF_ERROR(ParseNodePorts(*node, loc, out));
  return ParseNeighbors(*node, loc, out);
}

// ---- etcd ----------------------------------------------------------------

// One kvs entry we use, its key decoded.
struct EtcdEntry {
  std::string key;
  size_t index = 0;  // in etcd.kvs
  bool base64 = false;
  const json* value = nullptr;  // nullptr when absent
};

Loc EtcdKeyLoc(absl::string_view key) { return Loc(EtcdKeyObject(ToStd(key))); }

absl::Status ParseEtcd(const json& doc, const NodeSpec& node, FlannelNetworkConfig* network,
                       std::vector<FlannelLease>* leases) {
  const Loc loc("etcd");
  const json* etcd = Member(doc, "etcd");
  if (etcd == nullptr) return loc.Error("missing");
  CF_RETURN_IF_ERROR(AsObject(*etcd, loc));
  // etcdctl -w json leaves "kvs" out when nothing matched the prefix.
  const json* kvs = nullptr;
  CF_RETURN_IF_ERROR(GetArray(*etcd, loc, "kvs", Need::kOptional, &kvs));

  const EtcdEntry* config = nullptr;
  std::vector<EtcdEntry> entries;
  entries.reserve(kvs == nullptr ? 0 : kvs->size());
  for (size_t i = 0; kvs != nullptr && i < kvs->size(); ++i) {
    const json& kv = (*kvs)[i];
    const Loc kv_loc = loc.Child("kvs").Index(i);
    CF_RETURN_IF_ERROR(AsObject(kv, kv_loc));
    EtcdEntry entry;
    entry.index = i;
    std::string raw_key;
    CF_RETURN_IF_ERROR(GetString(kv, kv_loc, "key", Need::kRequired, &raw_key));
    if (absl::StartsWith(raw_key, "/")) {
      entry.key = std::move(raw_key);
    } else if (absl::Base64Unescape(raw_key, &entry.key)) {
      entry.base64 = true;
    } else {
      return kv_loc.Child("key").Error(
          absl::StrCat("neither a plain key starting with \"/\" nor base64: ", Quote(raw_key)));
    }
    entry.value = Member(kv, "value");
    // Other keys under the prefix (and outside it) are not ours.
    if (entry.key != kConfigKey && !absl::StartsWith(entry.key, kSubnetsPrefix)) continue;
    entries.push_back(std::move(entry));
  }

  for (const EtcdEntry& entry : entries) {
    if (entry.key != kConfigKey) continue;
    if (config != nullptr) {
      return EtcdKeyLoc(entry.key).Error(absl::StrCat("listed twice (etcd.kvs[", config->index,
                                                      "] and etcd.kvs[", entry.index, "])"));
    }
    config = &entry;
  }
  if (config == nullptr) return EtcdKeyLoc(kConfigKey).Error("missing");
  absl::StatusOr<FlannelNetworkConfig> parsed_config =
      ParseFlannelNetworkConfig(config->key, config->value, config->base64);
  if (!parsed_config.ok()) return parsed_config.status();
  *network = *std::move(parsed_config);

  std::vector<const EtcdEntry*> lease_entries;  // parallel to *leases
  for (const EtcdEntry& entry : entries) {
    if (entry.key == kConfigKey) continue;
    const Loc lease_loc = EtcdKeyLoc(entry.key);
    absl::StatusOr<FlannelLease> parsed_lease =
        ParseFlannelLease(entry.key, ToStd(kSubnetsPrefix), entry.value, entry.base64, *network);
    if (!parsed_lease.ok()) return parsed_lease.status();
    const FlannelLease& lease = *parsed_lease;
    // Overlapping leases would make the route to a pod ambiguous.
    for (size_t j = 0; j < leases->size(); ++j) {
      const Ipv4Prefix& other = (*leases)[j].subnet;
      const Ipv4Prefix& wider = other.length <= lease.subnet.length ? other : lease.subnet;
      const Ipv4Prefix& narrower = &wider == &other ? lease.subnet : other;
      if (!wider.Contains(narrower.address)) continue;
      const bool same = other.length == lease.subnet.length;
      return lease_loc.Error(absl::StrCat(same ? "duplicates" : "overlaps", " the lease at ",
                                          lease_entries[j]->key, " (etcd.kvs[",
                                          lease_entries[j]->index, "])"));
    }
    leases->push_back(lease);
    lease_entries.push_back(&entry);
  }

  // This node's own lease: flannel's subnet for its pods.
  std::vector<std::string> local;
  for (const FlannelLease& lease : *leases) {
    if (lease.public_ip == node.node_ip) local.push_back(FormatIpv4Prefix(lease.subnet));
  }
  if (local.size() != 1) {
    const Loc node_ip_loc = Loc("node").Child("nodeIP");
    if (local.empty()) {
      return node_ip_loc.Error(absl::StrCat(FormatIpv4(node.node_ip),
                                            " is the PublicIP of no flannel lease; this node "
                                            "needs exactly one (its pod subnet)"));
    }
    return node_ip_loc.Error(absl::StrCat(FormatIpv4(node.node_ip), " is the PublicIP of ",
                                          local.size(), " flannel leases (",
                                          absl::StrJoin(local, ", "), "); expected exactly one"));
  }
  return absl::OkStatus();
}

// ---- kubernetes ----------------------------------------------------------

absl::Status ParseKubernetes(const json& doc, ClusterModel* model) {
  const json* list = Member(doc, "kubernetes");
  if (list == nullptr) return Loc("kubernetes").Error("missing");
  return ParseKubernetesList(*list, "kubernetes", KubeReading::kClusterFile, &model->services,
                             &model->endpoint_slices);
}

}  // namespace

absl::StatusOr<ClusterModel> ParseClusterFile(std::string_view json_text) {
  const Loc loc("cluster file");
  absl::StatusOr<json> doc = ParseJson(FromStd(json_text), loc);
  if (!doc.ok()) return doc.status();
  if (!doc->is_object()) return TypeError(loc, "a JSON object", *doc);

  ClusterModel model;
  CF_RETURN_IF_ERROR(ParseNode(*doc, &model.node));
  CF_RETURN_IF_ERROR(ParseEtcd(*doc, model.node, &model.network, &model.leases));
  CF_RETURN_IF_ERROR(ParseKubernetes(*doc, &model));
  return model;
}

absl::StatusOr<ClusterModel> LoadClusterFile(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open cluster file ", path));
  }
  std::string text;
  char buffer[16384];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const bool failed = std::ferror(file) != 0;
  const int error = errno;
  std::fclose(file);
  if (failed) return absl::ErrnoToStatus(error, absl::StrCat("cannot read cluster file ", path));

  absl::StatusOr<ClusterModel> model = ParseClusterFile(text);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(path, ": ", model.status().message()));
  }
  return model;
}

absl::StatusOr<uint32_t> ParseIpv4(std::string_view std_text) {
  const absl::string_view text = FromStd(std_text);
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("malformed IPv4 address ", Quote(text)));
  };
  uint32_t ip = 0;
  size_t pos = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (pos >= text.size() || text[pos] != '.') return malformed();
      ++pos;
    }
    const size_t start = pos;
    uint32_t value = 0;
    while (pos < text.size() && pos - start < 4 && absl::ascii_isdigit(text[pos])) {
      value = value * 10 + static_cast<uint32_t>(text[pos] - '0');
      ++pos;
    }
    const size_t digits = pos - start;
    // Leading zeros are refused: inet_aton would read them as octal.
    if (digits == 0 || digits > 3 || value > 255 || (digits > 1 && text[start] == '0')) {
      return malformed();
    }
    ip = ip << 8 | value;
  }
  if (pos != text.size()) return malformed();
  return ip;
}

absl::StatusOr<Ipv4Prefix> ParseIpv4Prefix(std::string_view std_text) {
  const absl::string_view text = FromStd(std_text);
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat("malformed IPv4 prefix ", Quote(text)));
  };
  const size_t slash = text.find('/');
  if (slash == absl::string_view::npos) return malformed();
  absl::StatusOr<uint32_t> address = ParseIpv4(ToStd(text.substr(0, slash)));
  if (!address.ok()) return malformed();
  const absl::string_view length = text.substr(slash + 1);
  if (length.empty() || length.size() > 2 || (length.size() == 2 && length[0] == '0')) {
    return malformed();
  }
  uint32_t value = 0;
  for (const char c : length) {
    if (!absl::ascii_isdigit(c)) return malformed();
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 32) return malformed();
  Ipv4Prefix prefix;
  prefix.address = *address;
  prefix.length = static_cast<uint8_t>(value);
  return prefix;
}

absl::StatusOr<MacAddress> ParseMac(std::string_view std_text) {
  const absl::string_view text = FromStd(std_text);
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  MacAddress mac{};
  bool ok = text.size() == 17;
  for (size_t i = 0; ok && i < mac.size(); ++i) {
    const int high = hex(text[3 * i]);
    const int low = hex(text[3 * i + 1]);
    ok = high >= 0 && low >= 0 && (i == mac.size() - 1 || text[3 * i + 2] == ':');
    if (ok) mac[i] = static_cast<uint8_t>(high << 4 | low);
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("malformed MAC ", Quote(text)));
  return mac;
}

std::string FormatIpv4Prefix(const Ipv4Prefix& prefix) {
  return absl::StrCat(FormatIpv4(prefix.address), "/", static_cast<int>(prefix.length));
}

#undef CF_RETURN_IF_ERROR

}  // namespace sluice
