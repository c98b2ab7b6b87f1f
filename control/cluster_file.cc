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
#include "control/kube_objects.h"

namespace sluice {
namespace {

// nlohmann::json throws from get<>, at() and friends on a type mismatch. This
// file never calls those on a value whose type it has not checked, reads
// values through get_ptr<>() (which returns nullptr instead of throwing), and
// parses with allow_exceptions=false, so no exception leaves the parser.
using json = nlohmann::json;

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view); the public API speaks std::string_view.
absl::string_view FromStd(std::string_view s) { return absl::string_view(s.data(), s.size()); }
std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

#define CF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status cf_status_ = (expr);        \
    if (!cf_status_.ok()) return cf_status_; \
  } while (0)

constexpr absl::string_view kConfigKey = "/coreos.com/network/config";
constexpr absl::string_view kSubnetsPrefix = "/coreos.com/network/subnets/";

// Where a value sits, for error messages: the object it belongs to ("node",
// "etcd key /coreos.com/network/config",
// "kubernetes.items[3] (Service default/web)") and the field path inside it
// ("spec.ports[0].port"; empty for the object itself).
class Loc {
 public:
  explicit Loc(std::string object) : object_(std::move(object)) {}

  Loc Child(absl::string_view key) const {
    Loc child = *this;
    if (!child.field_.empty()) child.field_ += '.';
    child.field_.append(key.data(), key.size());
    return child;
  }
  // For keys holding dots, such as label names: labels["kubernetes.io/x"].
  Loc Key(absl::string_view key) const {
    Loc child = *this;
    absl::StrAppend(&child.field_, "[\"", key, "\"]");
    return child;
  }
  Loc Index(size_t i) const {
    Loc child = *this;
    absl::StrAppend(&child.field_, "[", i, "]");
    return child;
  }

  absl::Status Error(absl::string_view message) const {
    if (field_.empty()) return absl::InvalidArgumentError(absl::StrCat(object_, ": ", message));
    return absl::InvalidArgumentError(absl::StrCat(object_, ": ", field_, ": ", message));
  }

 private:
  std::string object_;
  std::string field_;
};

// A string from the file, quoted and escaped for a message, cut when long.
std::string Quote(absl::string_view s) {
  constexpr size_t kMaxShown = 64;
  if (s.size() > kMaxShown) {
    return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMaxShown)), "\"...");
  }
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

// What a value is, for "expected X, got Y" messages. Never calls dump(),
// which throws on invalid UTF-8.
std::string Describe(const json& v) {
  if (const auto* s = v.get_ptr<const json::string_t*>()) return "string " + Quote(*s);
  if (const auto* b = v.get_ptr<const json::boolean_t*>()) return *b ? "true" : "false";
  // Unsigned first: get_ptr<number_integer_t*> also answers for unsigned values.
  if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) return absl::StrCat(*u);
  if (const auto* i = v.get_ptr<const json::number_integer_t*>()) return absl::StrCat(*i);
  if (const auto* f = v.get_ptr<const json::number_float_t*>()) return absl::StrCat(*f);
  return v.type_name();  // object, array, null
}

absl::Status TypeError(const Loc& loc, absl::string_view expected, const json& got) {
  return loc.Error(absl::StrCat("expected ", expected, ", got ", Describe(got)));
}

// Parses JSON text without exceptions. On failure the message carries
// nlohmann's position and reason, e.g. "parse error at line 3, column 1:
// syntax error while parsing object - unexpected end of input; expected '}'".
class ParseErrorRecorder {
 public:
  // The SAX interface nlohmann::json::sax_parse expects; only errors matter.
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(json::string_t&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& ex) {
    message_ = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    if (const size_t end = message_.find("] ");
        !message_.empty() && message_[0] == '[' && end != std::string::npos) {
      message_.erase(0, end + 2);
    }
    return false;
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

absl::StatusOr<json> ParseJson(absl::string_view text, const Loc& loc) {
  json doc = json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) return doc;
  ParseErrorRecorder recorder;
  json::sax_parse(text.begin(), text.end(), &recorder);
  if (recorder.message().empty()) return loc.Error("not valid JSON");
  return loc.Error(absl::StrCat("not valid JSON: ", recorder.message()));
}

enum class Need { kOptional, kRequired };

// The member `key` of object `obj`; nullptr when absent or null (Kubernetes
// prints empty lists and unset pointers as null). `obj` must be an object.
const json* Member(const json& obj, absl::string_view key) {
  const auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// Finds `key` in `obj` (whose location is `loc`). *out is nullptr when the
// field is absent, which is an error when it is required.
absl::Status Find(const json& obj, const Loc& loc, absl::string_view key, Need need,
                  const json** out) {
  *out = Member(obj, key);
  if (*out == nullptr && need == Need::kRequired) return loc.Child(key).Error("missing");
  return absl::OkStatus();
}

absl::Status GetObject(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       const json** out) {
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, out));
  if (*out != nullptr && !(*out)->is_object()) return TypeError(loc.Child(key), "object", **out);
  return absl::OkStatus();
}

absl::Status GetArray(const json& obj, const Loc& loc, absl::string_view key, Need need,
                      const json** out) {
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, out));
  if (*out != nullptr && !(*out)->is_array()) return TypeError(loc.Child(key), "array", **out);
  return absl::OkStatus();
}

// Array elements are checked one by one with these.
absl::Status AsString(const json& v, const Loc& loc, std::string* out) {
  const auto* s = v.get_ptr<const json::string_t*>();
  if (s == nullptr) return TypeError(loc, "string", v);
  *out = *s;
  return absl::OkStatus();
}

absl::Status AsObject(const json& v, const Loc& loc) {
  if (!v.is_object()) return TypeError(loc, "object", v);
  return absl::OkStatus();
}

// Leaves *out untouched when the field is absent.
absl::Status GetString(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       std::string* out, bool* present = nullptr) {
  const json* v = nullptr;
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return absl::OkStatus();
  return AsString(*v, loc.Child(key), out);
}

// An integer in [min, max]. JSON numbers with a fraction or exponent are not
// integers here, as in the Kubernetes API.
absl::Status AsInt(const json& v, const Loc& loc, int64_t min, int64_t max, int64_t* out) {
  int64_t value = 0;
  // Unsigned first: get_ptr<number_integer_t*> also answers for unsigned
  // values, reading 2^64-1 as -1.
  if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) {
    if (*u > static_cast<uint64_t>(max)) {
      return loc.Error(absl::StrCat("must be ", min, "..", max, ", got ", *u));
    }
    value = static_cast<int64_t>(*u);
  } else if (const auto* i = v.get_ptr<const json::number_integer_t*>()) {
    value = *i;
  } else {
    return TypeError(loc, "integer", v);
  }
  if (value < min || value > max) {
    return loc.Error(absl::StrCat("must be ", min, "..", max, ", got ", value));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status GetInt(const json& obj, const Loc& loc, absl::string_view key, Need need, int64_t min,
                    int64_t max, int64_t* out, bool* present = nullptr) {
  const json* v = nullptr;
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return absl::OkStatus();
  return AsInt(*v, loc.Child(key), min, max, out);
}

absl::Status AsIpv4(const json& v, const Loc& loc, uint32_t* out) {
  std::string text;
  CF_RETURN_IF_ERROR(AsString(v, loc, &text));
  absl::StatusOr<uint32_t> ip = ParseIpv4(text);
  if (!ip.ok()) return loc.Error(ip.status().message());
  *out = *ip;
  return absl::OkStatus();
}

absl::Status GetIpv4(const json& obj, const Loc& loc, absl::string_view key, Need need,
                     uint32_t* out) {
  const json* v = nullptr;
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (v == nullptr) return absl::OkStatus();
  return AsIpv4(*v, loc.Child(key), out);
}

// A MAC a station may own or be reached at: not multicast, not all zeros.
absl::Status GetStationMac(const json& obj, const Loc& loc, absl::string_view key, Need need,
                           MacAddress* out) {
  const json* v = nullptr;
  CF_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (v == nullptr) return absl::OkStatus();
  const Loc field = loc.Child(key);
  std::string text;
  CF_RETURN_IF_ERROR(AsString(*v, field, &text));
  absl::StatusOr<MacAddress> mac = ParseMac(text);
  if (!mac.ok()) return field.Error(mac.status().message());
  const bool all_zero = *mac == MacAddress{};
  if (((*mac)[0] & 0x01) != 0 || all_zero) {
    return field.Error(absl::StrCat("must be a unicast MAC, got ", Quote(text)));
  }
  *out = *mac;
  return absl::OkStatus();
}

// ---- node ----------------------------------------------------------------

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
