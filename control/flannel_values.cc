#include "control/flannel_values.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "control/cluster_file.h"  // ParseIpv4Prefix, FormatIpv4Prefix
#include "control/json_fields.h"

namespace sluice {
namespace {

using json_fields::FromStd;
using json_fields::GetBool;
using json_fields::GetInt;
using json_fields::GetIpv4;
using json_fields::GetObject;
using json_fields::GetStationMac;
using json_fields::GetString;
using json_fields::json;
using json_fields::Loc;
using json_fields::Need;
using json_fields::ParseJson;
using json_fields::Quote;
using json_fields::TypeError;

#define FV_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status fv_status_ = (expr);        \
    if (!fv_status_.ok()) return fv_status_; \
  } while (0)

constexpr uint16_t kDefaultVxlanPort = 8472;  // flannel: Port 0 = the kernel's default
constexpr int64_t kMaxVni = (1 << 24) - 1;

// One kv's value and how it is encoded.
struct EtcdEntry {
  absl::string_view key;
  bool base64 = false;
  const json* value = nullptr;  // nullptr when absent
};

// The JSON object an entry's value holds: base64 or plain JSON text in a
// string, or (plain-form convenience) the object itself.
absl::StatusOr<json> DecodeEtcdValue(const EtcdEntry& entry, const Loc& key_loc) {
  const Loc loc = key_loc.Child("value");
  if (entry.value == nullptr) return loc.Error("missing");
  if (entry.value->is_object()) return *entry.value;
  const auto* text = entry.value->get_ptr<const json::string_t*>();
  if (text == nullptr) return TypeError(loc, "string or object", *entry.value);
  std::string decoded;
  if (entry.base64 && !absl::Base64Unescape(*text, &decoded)) {
    return loc.Error("malformed base64 (the key is base64, so the value must be too)");
  }
  absl::StatusOr<json> value = ParseJson(entry.base64 ? decoded : *text, loc);
  if (!value.ok()) return value.status();
  if (!value->is_object()) return TypeError(loc, "a JSON object", *value);
  return value;
}

absl::Status ParseNetworkConfig(const json& config, const Loc& loc, FlannelNetworkConfig* out) {
  std::string text;
  FV_RETURN_IF_ERROR(GetString(config, loc, "Network", Need::kRequired, &text));
  absl::StatusOr<Ipv4Prefix> network = ParseIpv4Prefix(text);
  if (!network.ok()) return loc.Child("Network").Error(network.status().message());
  // flannel (Go's net.ParseCIDR) drops host bits: 10.244.1.5/16 is 10.244.0.0/16.
  network->address &= PrefixMask(network->length);
  out->network = *network;

  // flannel's checks and defaults (pkg/subnet/config.go); 0 means absent.
  int64_t value = 0;
  FV_RETURN_IF_ERROR(GetInt(config, loc, "SubnetLen", Need::kOptional, 0, 30, &value));
  if (value != 0) {
    if (value < network->length + 2) {
      return loc.Child("SubnetLen")
          .Error(absl::StrCat("must be at least Network's length + 2 (", network->length + 2,
                              "), got ", value));
    }
    out->subnet_len = static_cast<uint8_t>(value);
  } else if (network->length > 28) {
    return loc.Child("Network").Error(
        absl::StrCat("too small (", text, "): the minimum useful prefix is /28"));
  } else {
    out->subnet_len = network->length <= 22 ? 24 : static_cast<uint8_t>(network->length + 2);
  }

  const json* backend = nullptr;
  FV_RETURN_IF_ERROR(GetObject(config, loc, "Backend", Need::kOptional, &backend));
  if (backend == nullptr) {
    return loc.Child("Backend").Error(
        "missing; flannel then uses the udp backend, only vxlan is supported");
  }
  const Loc backend_loc = loc.Child("Backend");
  bool present = false;
  FV_RETURN_IF_ERROR(
      GetString(*backend, backend_loc, "Type", Need::kOptional, &out->backend_type, &present));
  if (!present) {
    return backend_loc.Child("Type").Error(
        "missing; flannel's default is udp, only vxlan is supported");
  }
  if (out->backend_type != "vxlan") {
    return backend_loc.Child("Type").Error(
        absl::StrCat("only vxlan is supported, got ", Quote(out->backend_type)));
  }
  value = 1;
  FV_RETURN_IF_ERROR(GetInt(*backend, backend_loc, "VNI", Need::kOptional, 0, kMaxVni, &value));
  out->vni = static_cast<uint32_t>(value);
  value = 0;
  FV_RETURN_IF_ERROR(GetInt(*backend, backend_loc, "Port", Need::kOptional, 0, 65535, &value));
  out->port = value == 0 ? kDefaultVxlanPort : static_cast<uint16_t>(value);
  return GetBool(*backend, backend_loc, "DirectRouting", &out->direct_routing);
}

// "10.244.1.0-24" (the key after <prefix>/subnets/).
absl::StatusOr<Ipv4Prefix> ParseLeaseSubnet(absl::string_view text) {
  const size_t dash = text.find('-');
  if (dash == absl::string_view::npos) return absl::InvalidArgumentError("");
  std::string prefix(text);
  prefix[dash] = '/';
  return ParseIpv4Prefix(prefix);
}

absl::Status ParseLease(const EtcdEntry& entry, absl::string_view subnets_prefix, const Loc& loc,
                        const FlannelNetworkConfig& network, FlannelLease* out) {
  absl::StatusOr<Ipv4Prefix> subnet = absl::InvalidArgumentError("");
  if (absl::StartsWith(entry.key, subnets_prefix)) {
    subnet = ParseLeaseSubnet(entry.key.substr(subnets_prefix.size()));
  }
  if (!subnet.ok()) {
    return loc.Error(absl::StrCat("malformed lease key, expected ", subnets_prefix,
                                  "<a.b.c.d>-<prefix length>"));
  }
  if ((subnet->address & ~PrefixMask(subnet->length)) != 0) {
    return loc.Error(
        absl::StrCat("lease subnet ", FormatIpv4Prefix(*subnet), " has host bits set"));
  }
  if (subnet->length < network.network.length || !network.network.Contains(subnet->address)) {
    return loc.Error(absl::StrCat("lease subnet ", FormatIpv4Prefix(*subnet),
                                  " is outside Network ", FormatIpv4Prefix(network.network)));
  }
  out->subnet = *subnet;

  absl::StatusOr<json> value = DecodeEtcdValue(entry, loc);
  if (!value.ok()) return value.status();
  FV_RETURN_IF_ERROR(GetIpv4(*value, loc, "PublicIP", Need::kRequired, &out->public_ip));
  FV_RETURN_IF_ERROR(GetString(*value, loc, "BackendType", Need::kRequired, &out->backend_type));
  if (out->backend_type != "vxlan") {
    return loc.Child("BackendType")
        .Error(absl::StrCat("only vxlan is supported, got ", Quote(out->backend_type)));
  }
  const json* data = nullptr;
  FV_RETURN_IF_ERROR(GetObject(*value, loc, "BackendData", Need::kRequired, &data));
  const Loc data_loc = loc.Child("BackendData");
  int64_t vni = network.vni;
  FV_RETURN_IF_ERROR(GetInt(*data, data_loc, "VNI", Need::kOptional, 0, kMaxVni, &vni));
  out->vni = static_cast<uint32_t>(vni);
  return GetStationMac(*data, data_loc, "VtepMAC", Need::kRequired, &out->vtep_mac);
}

}  // namespace

std::string EtcdKeyObject(std::string_view key) {
  return absl::StrCat("etcd key ", absl::CHexEscape(FromStd(key)));
}

absl::StatusOr<FlannelNetworkConfig> ParseFlannelNetworkConfig(std::string_view key,
                                                               const json* value, bool base64) {
  const Loc loc(EtcdKeyObject(key));
  const EtcdEntry entry{FromStd(key), base64, value};
  absl::StatusOr<json> config = DecodeEtcdValue(entry, loc);
  if (!config.ok()) return config.status();
  FlannelNetworkConfig network;
  FV_RETURN_IF_ERROR(ParseNetworkConfig(*config, loc, &network));
  return network;
}

absl::StatusOr<FlannelLease> ParseFlannelLease(std::string_view key,
                                               std::string_view subnets_prefix, const json* value,
                                               bool base64, const FlannelNetworkConfig& network) {
  const Loc loc(EtcdKeyObject(key));
  const EtcdEntry entry{FromStd(key), base64, value};
  FlannelLease lease;
  FV_RETURN_IF_ERROR(ParseLease(entry, FromStd(subnets_prefix), loc, network, &lease));
  return lease;
}

#undef FV_RETURN_IF_ERROR

}  // namespace sluice
