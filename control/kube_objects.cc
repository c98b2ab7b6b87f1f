#include "control/kube_objects.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "control/cluster_file.h"  // ParseIpv4Prefix, FormatIpv4Prefix
#include "control/json_fields.h"

namespace sluice {
namespace {

using json_fields::AsInt;
using json_fields::AsIpv4;
using json_fields::AsObject;
using json_fields::AsString;
using json_fields::Find;
using json_fields::GetArray;
using json_fields::GetBool;
using json_fields::GetInt;
using json_fields::GetIpv4;
using json_fields::GetObject;
using json_fields::GetStationMac;
using json_fields::GetString;
using json_fields::json;
using json_fields::Loc;
using json_fields::Member;
using json_fields::Need;
using json_fields::ParseJson;
using json_fields::Quote;
using json_fields::TypeError;

constexpr int64_t kMaxVni = (1 << 24) - 1;

absl::Status GetProtocol(const json& obj, const Loc& loc, L4Protocol* out) {
  std::string name = "TCP";
  SLUICE_JSON_RETURN_IF_ERROR(GetString(obj, loc, "protocol", Need::kOptional, &name));
  if (name == "TCP") {
    *out = L4Protocol::kTcp;
  } else if (name == "UDP") {
    *out = L4Protocol::kUdp;
  } else if (name == "SCTP") {
    *out = L4Protocol::kSctp;
  } else {
    return loc.Child("protocol")
        .Error(absl::StrCat("expected TCP, UDP or SCTP, got ", Quote(name)));
  }
  return absl::OkStatus();
}

const char* ProtocolLabel(L4Protocol protocol) {
  switch (protocol) {
    case L4Protocol::kTcp:
      return "TCP";
    case L4Protocol::kUdp:
      return "UDP";
    case L4Protocol::kSctp:
      return "SCTP";
  }
  return "?";
}

absl::Status GetTrafficPolicy(const json& obj, const Loc& loc, absl::string_view key,
                              TrafficPolicy* out) {
  std::string name = "Cluster";
  SLUICE_JSON_RETURN_IF_ERROR(GetString(obj, loc, key, Need::kOptional, &name));
  // "Global" is the pre-1.22 spelling of Cluster for externalTrafficPolicy.
  if (name == "Cluster" || name == "Global") {
    *out = TrafficPolicy::kCluster;
  } else if (name == "Local") {
    *out = TrafficPolicy::kLocal;
  } else {
    return loc.Child(key).Error(absl::StrCat("expected Cluster or Local, got ", Quote(name)));
  }
  return absl::OkStatus();
}

// IPv4 only for now: IPv6 addresses (with a ':') are skipped.
bool IsIpv6(absl::string_view address) { return address.find(':') != absl::string_view::npos; }

// Appends the IPv4 addresses of a string array such as spec.externalIPs.
absl::Status GetIpv4List(const json& obj, const Loc& loc, absl::string_view key,
                         std::vector<uint32_t>* out) {
  const json* list = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(obj, loc, key, Need::kOptional, &list));
  for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
    const Loc item_loc = loc.Child(key).Index(i);
    std::string text;
    SLUICE_JSON_RETURN_IF_ERROR(AsString((*list)[i], item_loc, &text));
    if (IsIpv6(text)) continue;
    uint32_t ip = 0;
    SLUICE_JSON_RETURN_IF_ERROR(AsIpv4((*list)[i], item_loc, &ip));
    out->push_back(ip);
  }
  return absl::OkStatus();
}

// metadata.labels (an object or absent); checked to be an object.
absl::Status GetLabels(const json& item, const Loc& loc, const json** labels) {
  *labels = nullptr;
  const json* metadata = Member(item, "metadata");
  if (metadata == nullptr || !metadata->is_object()) return absl::OkStatus();
  return GetObject(*metadata, loc.Child("metadata"), "labels", Need::kOptional, labels);
}

// kube-proxy's label selector: objects that belong to another proxy, or to
// a headless Service, are not kube-proxy's.
bool NotForKubeProxy(const json* labels) {
  if (labels == nullptr) return false;
  return labels->contains(kServiceProxyNameLabel) || labels->contains(kHeadlessLabel);
}

// State across items, for the uniqueness the API server guarantees.
struct KubernetesIndex {
  std::map<std::string, size_t> services;                             // "ns/name" -> item index
  std::map<std::string, size_t> endpoint_slices;                      // "ns/name" -> item index
  std::map<uint32_t, std::string> cluster_ips;                        // -> "ns/name"
  std::map<std::pair<L4Protocol, uint16_t>, std::string> node_ports;  // -> "ns/name"
};

absl::Status ParseServicePorts(const json& spec, const Loc& loc, const std::string& id,
                               KubernetesIndex* index, ServiceSpec* out) {
  const json* ports = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(spec, loc.Child("spec"), "ports", Need::kOptional, &ports));
  const bool node_ports_allowed = out->type == "NodePort" || out->type == "LoadBalancer";
  std::map<std::pair<L4Protocol, uint16_t>, size_t> seen;
  for (size_t i = 0; ports != nullptr && i < ports->size(); ++i) {
    const json& entry = (*ports)[i];
    const Loc port_loc = loc.Child("spec").Child("ports").Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject(entry, port_loc));
    ServicePortSpec port;
    SLUICE_JSON_RETURN_IF_ERROR(GetString(entry, port_loc, "name", Need::kOptional, &port.name));
    SLUICE_JSON_RETURN_IF_ERROR(GetProtocol(entry, port_loc, &port.protocol));
    int64_t value = 0;
    SLUICE_JSON_RETURN_IF_ERROR(GetInt(entry, port_loc, "port", Need::kRequired, 1, 65535, &value));
    port.port = static_cast<uint16_t>(value);
    value = 0;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetInt(entry, port_loc, "nodePort", Need::kOptional, 0, 65535, &value));
    port.node_port = static_cast<uint16_t>(value);

    const auto [it, inserted] = seen.emplace(std::make_pair(port.protocol, port.port), i);
    if (!inserted) {
      return port_loc.Error(absl::StrCat("duplicates spec.ports[", it->second, "] (", port.port,
                                         "/", ProtocolLabel(port.protocol), ")"));
    }
    if (port.node_port != 0) {
      if (!node_ports_allowed) {
        return port_loc.Child("nodePort")
            .Error(absl::StrCat("may not be used when type is ", out->type));
      }
      const auto [owner, fresh] =
          index->node_ports.emplace(std::make_pair(port.protocol, port.node_port), id);
      if (!fresh) {
        return port_loc.Child("nodePort")
            .Error(absl::StrCat(port.node_port, "/", ProtocolLabel(port.protocol),
                                " is already used by Service ", owner->second));
      }
    }
    out->ports.push_back(port);
  }
  return absl::OkStatus();
}

// status.loadBalancer.ingress[].ip; an ingress may carry a hostname instead.
// kube-proxy DNATs an ingress IP only when its ipMode is VIP (or unset): with
// "Proxy" the load balancer delivers to the node itself.
absl::Status ParseLoadBalancerIngress(const json& item, const Loc& loc, KubeReading reading,
                                      ServiceSpec* out) {
  const json* status = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetObject(item, loc, "status", Need::kOptional, &status));
  if (status == nullptr) return absl::OkStatus();
  const Loc status_loc = loc.Child("status");
  const json* load_balancer = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(
      GetObject(*status, status_loc, "loadBalancer", Need::kOptional, &load_balancer));
  if (load_balancer == nullptr) return absl::OkStatus();
  const Loc lb_loc = status_loc.Child("loadBalancer");
  const json* ingress = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(
      GetArray(*load_balancer, lb_loc, "ingress", Need::kOptional, &ingress));
  for (size_t i = 0; ingress != nullptr && i < ingress->size(); ++i) {
    const Loc ingress_loc = lb_loc.Child("ingress").Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject((*ingress)[i], ingress_loc));
    if (reading == KubeReading::kKubeProxy) {
      std::string ip_mode = "VIP";
      SLUICE_JSON_RETURN_IF_ERROR(
          GetString((*ingress)[i], ingress_loc, "ipMode", Need::kOptional, &ip_mode));
      if (ip_mode == "Proxy") continue;
      if (ip_mode != "VIP") {
        return ingress_loc.Child("ipMode").Error(
            absl::StrCat("expected VIP or Proxy, got ", Quote(ip_mode)));
      }
    }
    std::string text;
    bool present = false;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString((*ingress)[i], ingress_loc, "ip", Need::kOptional, &text, &present));
    if (!present || IsIpv6(text)) continue;
    uint32_t ip = 0;
    SLUICE_JSON_RETURN_IF_ERROR(GetIpv4((*ingress)[i], ingress_loc, "ip", Need::kRequired, &ip));
    out->load_balancer_ips.push_back(ip);
  }
  return absl::OkStatus();
}

absl::Status ParseService(const json& item, const Loc& loc, const std::string& id,
                          KubeReading reading, KubernetesIndex* index, ServiceSpec* out) {
  const json* spec = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetObject(item, loc, "spec", Need::kRequired, &spec));
  const Loc spec_loc = loc.Child("spec");

  out->type = "ClusterIP";
  SLUICE_JSON_RETURN_IF_ERROR(GetString(*spec, spec_loc, "type", Need::kOptional, &out->type));
  if (out->type != "ClusterIP" && out->type != "NodePort" && out->type != "LoadBalancer" &&
      out->type != "ExternalName") {
    return spec_loc.Child("type").Error(absl::StrCat(
        "expected ClusterIP, NodePort, LoadBalancer or ExternalName, got ", Quote(out->type)));
  }

  // spec.clusterIPs (dual-stack era) wins over the older spec.clusterIP.
  // "None" marks a headless Service; "" an unallocated one.
  const json* cluster_ips = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(
      GetArray(*spec, spec_loc, "clusterIPs", Need::kOptional, &cluster_ips));
  json single = json::array();
  Loc ips_loc = spec_loc.Child("clusterIPs");
  if (cluster_ips == nullptr) {
    const json* cluster_ip = Member(*spec, "clusterIP");
    if (cluster_ip != nullptr) single.push_back(*cluster_ip);
    cluster_ips = &single;
    ips_loc = spec_loc.Child("clusterIP");
  }
  for (size_t i = 0; i < cluster_ips->size(); ++i) {
    const Loc ip_loc = cluster_ips == &single ? ips_loc : ips_loc.Index(i);
    std::string text;
    SLUICE_JSON_RETURN_IF_ERROR(AsString((*cluster_ips)[i], ip_loc, &text));
    if (text == "None" || text.empty() || IsIpv6(text)) continue;
    uint32_t ip = 0;
    SLUICE_JSON_RETURN_IF_ERROR(AsIpv4((*cluster_ips)[i], ip_loc, &ip));
    const auto [owner, fresh] = index->cluster_ips.emplace(ip, id);
    if (!fresh) {
      return ip_loc.Error(
          absl::StrCat(FormatIpv4(ip), " is already the cluster IP of Service ", owner->second));
    }
    out->cluster_ips.push_back(ip);
  }

  SLUICE_JSON_RETURN_IF_ERROR(GetIpv4List(*spec, spec_loc, "externalIPs", &out->external_ips));
  SLUICE_JSON_RETURN_IF_ERROR(
      GetTrafficPolicy(*spec, spec_loc, "externalTrafficPolicy", &out->external_traffic_policy));
  SLUICE_JSON_RETURN_IF_ERROR(
      GetTrafficPolicy(*spec, spec_loc, "internalTrafficPolicy", &out->internal_traffic_policy));
  int64_t health_port = 0;
  SLUICE_JSON_RETURN_IF_ERROR(
      GetInt(*spec, spec_loc, "healthCheckNodePort", Need::kOptional, 0, 65535, &health_port));
  out->health_check_node_port = static_cast<uint16_t>(health_port);
  SLUICE_JSON_RETURN_IF_ERROR(ParseServicePorts(*spec, loc, id, index, out));
  return ParseLoadBalancerIngress(item, loc, reading, out);
}

// hints.forZones[].name or hints.forNodes[].name.
absl::Status GetHints(const json& hints, const Loc& loc, absl::string_view key,
                      std::vector<std::string>* out) {
  const json* list = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(hints, loc, key, Need::kOptional, &list));
  for (size_t i = 0; list != nullptr && i < list->size(); ++i) {
    const Loc hint_loc = loc.Child(key).Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject((*list)[i], hint_loc));
    std::string name;
    SLUICE_JSON_RETURN_IF_ERROR(GetString((*list)[i], hint_loc, "name", Need::kRequired, &name));
    out->push_back(std::move(name));
  }
  return absl::OkStatus();
}

absl::Status ParseEndpoints(const json& item, const Loc& loc, KubeReading reading,
                            EndpointSliceSpec* out) {
  const json* endpoints = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(item, loc, "endpoints", Need::kOptional, &endpoints));
  for (size_t i = 0; endpoints != nullptr && i < endpoints->size(); ++i) {
    const json& entry = (*endpoints)[i];
    const Loc entry_loc = loc.Child("endpoints").Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject(entry, entry_loc));
    EndpointSpec endpoint;
    const json* conditions = nullptr;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetObject(entry, entry_loc, "conditions", Need::kOptional, &conditions));
    if (conditions != nullptr) {
      const Loc conditions_loc = entry_loc.Child("conditions");
      SLUICE_JSON_RETURN_IF_ERROR(GetBool(*conditions, conditions_loc, "ready", &endpoint.ready));
      bool serving_present = false;
      SLUICE_JSON_RETURN_IF_ERROR(
          GetBool(*conditions, conditions_loc, "serving", &endpoint.serving, &serving_present));
      // discovery/v1 and kube-proxy: absent serving is true. The cluster file
      // has always read it as v1beta1 documented it: defer to ready.
      if (!serving_present) endpoint.serving = reading == KubeReading::kKubeProxy || endpoint.ready;
      SLUICE_JSON_RETURN_IF_ERROR(
          GetBool(*conditions, conditions_loc, "terminating", &endpoint.terminating));
    }
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(entry, entry_loc, "nodeName", Need::kOptional, &endpoint.node_name));
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(entry, entry_loc, "zone", Need::kOptional, &endpoint.zone));
    const json* hints = nullptr;
    SLUICE_JSON_RETURN_IF_ERROR(GetObject(entry, entry_loc, "hints", Need::kOptional, &hints));
    if (hints != nullptr) {
      const Loc hints_loc = entry_loc.Child("hints");
      SLUICE_JSON_RETURN_IF_ERROR(
          GetHints(*hints, hints_loc, "forZones", &endpoint.hints_for_zones));
      SLUICE_JSON_RETURN_IF_ERROR(
          GetHints(*hints, hints_loc, "forNodes", &endpoint.hints_for_nodes));
    }
    const json* addresses = nullptr;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetArray(entry, entry_loc, "addresses", Need::kRequired, &addresses));
    if (addresses->empty()) return entry_loc.Child("addresses").Error("must not be empty");
    // The addresses of one endpoint are fungible; kube-proxy uses the first.
    const size_t used = reading == KubeReading::kKubeProxy ? 1 : addresses->size();
    for (size_t j = 0; j < used; ++j) {
      SLUICE_JSON_RETURN_IF_ERROR(
          AsIpv4((*addresses)[j], entry_loc.Child("addresses").Index(j), &endpoint.ip));
      out->endpoints.push_back(endpoint);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseEndpointSlicePorts(const json& item, const Loc& loc, KubeReading reading,
                                     EndpointSliceSpec* out) {
  const json* ports = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(item, loc, "ports", Need::kOptional, &ports));
  for (size_t i = 0; ports != nullptr && i < ports->size(); ++i) {
    const json& entry = (*ports)[i];
    const Loc port_loc = loc.Child("ports").Index(i);
    SLUICE_JSON_RETURN_IF_ERROR(AsObject(entry, port_loc));
    EndpointSlicePortSpec port;
    bool named = false;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(entry, port_loc, "name", Need::kOptional, &port.name, &named));
    SLUICE_JSON_RETURN_IF_ERROR(GetProtocol(entry, port_loc, &port.protocol));
    int64_t value = 0;
    bool present = false;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetInt(entry, port_loc, "port", Need::kOptional, 1, 65535, &value, &present));
    // A port without a number means "all ports" (headless); nothing to translate.
    if (!present) continue;
    // kube-proxy matches slice ports to Service ports by name and ignores a
    // nil one (the API server never writes one; "" is the unnamed port).
    if (reading == KubeReading::kKubeProxy && !named) continue;
    port.port = static_cast<uint16_t>(value);
    out->ports.push_back(port);
  }
  return absl::OkStatus();
}

// Sets *use to kSkipped for slices kube-proxy does not read and for slices
// of another address family.
absl::Status ParseEndpointSlice(const json& item, const Loc& loc, KubeReading reading,
                                EndpointSliceSpec* out, ObjectUse* use) {
  *use = ObjectUse::kSkipped;
  const json* labels = nullptr;
  const Loc metadata_loc = loc.Child("metadata");
  SLUICE_JSON_RETURN_IF_ERROR(GetLabels(item, loc, &labels));
  const bool kube_proxy = reading == KubeReading::kKubeProxy;
  if (kube_proxy && NotForKubeProxy(labels)) return absl::OkStatus();
  const Loc label_loc = metadata_loc.Child("labels").Key(kServiceNameLabel);
  const json* service_name = labels == nullptr ? nullptr : Member(*labels, kServiceNameLabel);
  if (service_name == nullptr) {
    // kube-proxy: "no kubernetes.io/service-name label set on endpoint slice"
    // and the slice is ignored, as are the custom slices of other owners
    // (in a cluster file too: it is not an error).
    return absl::OkStatus();
  }
  SLUICE_JSON_RETURN_IF_ERROR(AsString(*service_name, label_loc, &out->service_name));
  if (out->service_name.empty()) {
    if (kube_proxy) return absl::OkStatus();
    return label_loc.Error("must not be empty");
  }

  std::string address_type;
  SLUICE_JSON_RETURN_IF_ERROR(GetString(item, loc, "addressType", Need::kRequired, &address_type));
  if (address_type == "IPv6" || address_type == "FQDN") return absl::OkStatus();
  if (address_type != "IPv4") {
    return loc.Child("addressType")
        .Error(absl::StrCat("expected IPv4, IPv6 or FQDN, got ", Quote(address_type)));
  }
  SLUICE_JSON_RETURN_IF_ERROR(ParseEndpoints(item, loc, reading, out));
  SLUICE_JSON_RETURN_IF_ERROR(ParseEndpointSlicePorts(item, loc, reading, out));
  *use = ObjectUse::kUsed;
  return absl::OkStatus();
}

// metadata.namespace and metadata.name; namespace absent -> "default", as
// kubectl applies it.
absl::Status ParseMetadata(const json& item, const Loc& loc, bool namespaced,
                           std::string* namespace_name, std::string* name) {
  const json* metadata = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetObject(item, loc, "metadata", Need::kRequired, &metadata));
  const Loc metadata_loc = loc.Child("metadata");
  SLUICE_JSON_RETURN_IF_ERROR(GetString(*metadata, metadata_loc, "name", Need::kRequired, name));
  if (name->empty()) return metadata_loc.Child("name").Error("must not be empty");
  if (!namespaced) return absl::OkStatus();
  *namespace_name = "default";
  SLUICE_JSON_RETURN_IF_ERROR(
      GetString(*metadata, metadata_loc, "namespace", Need::kOptional, namespace_name));
  if (namespace_name->empty()) return metadata_loc.Child("namespace").Error("must not be empty");
  return absl::OkStatus();
}

// The name of a single object in messages: "Service default/web".
absl::StatusOr<Loc> ObjectLoc(const json& object, std::string_view kind, bool namespaced,
                              std::string* namespace_name, std::string* name) {
  const Loc kind_loc{std::string(kind)};
  if (!object.is_object()) return TypeError(kind_loc, "object", object);
  SLUICE_JSON_RETURN_IF_ERROR(ParseMetadata(object, kind_loc, namespaced, namespace_name, name));
  const absl::string_view k = json_fields::FromStd(kind);
  return Loc(namespaced ? absl::StrCat(k, " ", *namespace_name, "/", *name)
                        : absl::StrCat(k, " ", *name));
}

// "10.244.1.0/24" with host bits refused (a podCIDR never has them).
absl::Status ParseNodeSubnet(const json& v, const Loc& loc, Ipv4Prefix* out) {
  std::string text;
  SLUICE_JSON_RETURN_IF_ERROR(AsString(v, loc, &text));
  absl::StatusOr<Ipv4Prefix> prefix = ParseIpv4Prefix(text);
  if (!prefix.ok()) return loc.Error(prefix.status().message());
  if ((prefix->address & ~PrefixMask(prefix->length)) != 0) {
    return loc.Error(absl::StrCat(FormatIpv4Prefix(*prefix), " has host bits set"));
  }
  *out = *prefix;
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseKubernetesList(const json& list, std::string_view where, KubeReading reading,
                                 std::vector<ServiceSpec>* services,
                                 std::vector<EndpointSliceSpec>* endpoint_slices) {
  const absl::string_view list_name = json_fields::FromStd(where);
  const Loc loc{std::string(where)};
  SLUICE_JSON_RETURN_IF_ERROR(AsObject(list, loc));
  std::string kind;
  SLUICE_JSON_RETURN_IF_ERROR(GetString(list, loc, "kind", Need::kRequired, &kind));
  if (kind != "List") {
    return loc.Child("kind").Error(absl::StrCat("expected \"List\", got ", Quote(kind)));
  }
  const json* items = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(list, loc, "items", Need::kRequired, &items));

  KubernetesIndex index;
  for (size_t i = 0; i < items->size(); ++i) {
    const json& item = (*items)[i];
    const std::string item_path = absl::StrCat(list_name, ".items[", i, "]");
    SLUICE_JSON_RETURN_IF_ERROR(AsObject(item, Loc(item_path)));
    std::string item_kind;
    SLUICE_JSON_RETURN_IF_ERROR(
        GetString(item, Loc(item_path), "kind", Need::kRequired, &item_kind));
    if (item_kind != "Service" && item_kind != "EndpointSlice") continue;

    std::string namespace_name;
    std::string name;
    SLUICE_JSON_RETURN_IF_ERROR(ParseMetadata(item,
                                              Loc(absl::StrCat(item_path, " (", item_kind, ")")),
                                              /*namespaced=*/true, &namespace_name, &name));
    const std::string id = absl::StrCat(namespace_name, "/", name);
    const Loc item_loc(absl::StrCat(item_path, " (", item_kind, " ", id, ")"));
    auto& seen = item_kind == "Service" ? index.services : index.endpoint_slices;
    const auto [previous, fresh] = seen.emplace(id, i);
    if (!fresh) {
      return item_loc.Error(
          absl::StrCat("duplicates ", list_name, ".items[", previous->second, "]"));
    }

    if (item_kind == "Service") {
      if (reading == KubeReading::kKubeProxy) {
        const json* labels = nullptr;
        SLUICE_JSON_RETURN_IF_ERROR(GetLabels(item, item_loc, &labels));
        if (NotForKubeProxy(labels)) continue;
      }
      ServiceSpec service;
      service.namespace_name = namespace_name;
      service.name = name;
      SLUICE_JSON_RETURN_IF_ERROR(ParseService(item, item_loc, id, reading, &index, &service));
      services->push_back(std::move(service));
    } else {
      EndpointSliceSpec slice;
      slice.namespace_name = namespace_name;
      slice.name = name;
      ObjectUse use = ObjectUse::kSkipped;
      SLUICE_JSON_RETURN_IF_ERROR(ParseEndpointSlice(item, item_loc, reading, &slice, &use));
      if (use == ObjectUse::kUsed) endpoint_slices->push_back(std::move(slice));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadObjectName(const json& object, std::string_view kind, bool namespaced,
                            std::string* namespace_name, std::string* name) {
  return ObjectLoc(object, kind, namespaced, namespace_name, name).status();
}

absl::StatusOr<ObjectUse> ReadService(const json& object, KubeReading reading, ServiceSpec* out) {
  *out = ServiceSpec();
  absl::StatusOr<Loc> loc =
      ObjectLoc(object, "Service", /*namespaced=*/true, &out->namespace_name, &out->name);
  if (!loc.ok()) return loc.status();
  if (reading == KubeReading::kKubeProxy) {
    const json* labels = nullptr;
    SLUICE_JSON_RETURN_IF_ERROR(GetLabels(object, *loc, &labels));
    if (NotForKubeProxy(labels)) return ObjectUse::kSkipped;
  }
  // The API server keeps cluster IPs and nodePorts unique across Services;
  // within one object the same checks as a List's apply.
  KubernetesIndex index;
  SLUICE_JSON_RETURN_IF_ERROR(ParseService(
      object, *loc, absl::StrCat(out->namespace_name, "/", out->name), reading, &index, out));
  return ObjectUse::kUsed;
}

absl::StatusOr<ObjectUse> ReadEndpointSlice(const json& object, KubeReading reading,
                                            EndpointSliceSpec* out) {
  *out = EndpointSliceSpec();
  absl::StatusOr<Loc> loc =
      ObjectLoc(object, "EndpointSlice", /*namespaced=*/true, &out->namespace_name, &out->name);
  if (!loc.ok()) return loc.status();
  ObjectUse use = ObjectUse::kSkipped;
  SLUICE_JSON_RETURN_IF_ERROR(ParseEndpointSlice(object, *loc, reading, out, &use));
  return use;
}

absl::StatusOr<ObjectUse> ReadNodeLease(const json& node, const NodeLeaseReading& reading,
                                        FlannelLease* out, std::string* node_name) {
  *out = FlannelLease();
  std::string unused_namespace;
  absl::StatusOr<Loc> loc =
      ObjectLoc(node, "Node", /*namespaced=*/false, &unused_namespace, node_name);
  if (!loc.ok()) return loc.status();
  const Loc metadata_loc = loc->Child("metadata");
  const json* annotations = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetObject(*Member(node, "metadata"), metadata_loc, "annotations",
                                        Need::kOptional, &annotations));
  const json empty = json::object();
  if (annotations == nullptr) annotations = &empty;
  const Loc annotations_loc = metadata_loc.Child("annotations");
  const std::string prefix = reading.annotation_prefix + "/";
  const auto key = [&](absl::string_view name) { return absl::StrCat(prefix, name); };

  // flannel: `if s, ok := n.Annotations[SubnetKubeManaged]; !ok || s != "true" { return }`.
  std::string managed;
  const std::string managed_key = key("kube-subnet-manager");
  if (const json* v = Member(*annotations, managed_key); v != nullptr) {
    SLUICE_JSON_RETURN_IF_ERROR(AsString(*v, annotations_loc.Key(managed_key), &managed));
  }
  if (managed != "true") return ObjectUse::kSkipped;

  // The subnet: the IPv4 entry of spec.podCIDRs, else spec.podCIDR.
  const json* spec = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetObject(node, *loc, "spec", Need::kRequired, &spec));
  const Loc spec_loc = loc->Child("spec");
  const json* pod_cidrs = nullptr;
  SLUICE_JSON_RETURN_IF_ERROR(GetArray(*spec, spec_loc, "podCIDRs", Need::kOptional, &pod_cidrs));
  bool found = false;
  for (size_t i = 0; pod_cidrs != nullptr && i < pod_cidrs->size(); ++i) {
    const Loc cidr_loc = spec_loc.Child("podCIDRs").Index(i);
    std::string text;
    SLUICE_JSON_RETURN_IF_ERROR(AsString((*pod_cidrs)[i], cidr_loc, &text));
    if (IsIpv6(text)) continue;
    SLUICE_JSON_RETURN_IF_ERROR(ParseNodeSubnet((*pod_cidrs)[i], cidr_loc, &out->subnet));
    found = true;
  }
  if (!found) {
    const json* pod_cidr = nullptr;
    SLUICE_JSON_RETURN_IF_ERROR(Find(*spec, spec_loc, "podCIDR", Need::kRequired, &pod_cidr));
    std::string text;
    SLUICE_JSON_RETURN_IF_ERROR(AsString(*pod_cidr, spec_loc.Child("podCIDR"), &text));
    if (IsIpv6(text)) return spec_loc.Child("podCIDR").Error("no IPv4 pod CIDR (IPv6 only)");
    SLUICE_JSON_RETURN_IF_ERROR(
        ParseNodeSubnet(*pod_cidr, spec_loc.Child("podCIDR"), &out->subnet));
  }
  const Ipv4Prefix& network = reading.network.network;
  if (out->subnet.length < network.length || !network.Contains(out->subnet.address)) {
    return spec_loc.Child("podCIDR").Error(absl::StrCat(
        FormatIpv4Prefix(out->subnet), " is outside Network ", FormatIpv4Prefix(network)));
  }

  const std::string public_ip_key = key("public-ip");
  const json* public_ip = Member(*annotations, public_ip_key);
  if (public_ip == nullptr) return annotations_loc.Key(public_ip_key).Error("missing");
  SLUICE_JSON_RETURN_IF_ERROR(
      AsIpv4(*public_ip, annotations_loc.Key(public_ip_key), &out->public_ip));

  const std::string type_key = key("backend-type");
  const json* type = Member(*annotations, type_key);
  if (type == nullptr) return annotations_loc.Key(type_key).Error("missing");
  SLUICE_JSON_RETURN_IF_ERROR(AsString(*type, annotations_loc.Key(type_key), &out->backend_type));
  if (out->backend_type != "vxlan") {
    return annotations_loc.Key(type_key).Error(
        absl::StrCat("only vxlan is supported, got ", Quote(out->backend_type)));
  }

  // backend-data is JSON text in an annotation string.
  const std::string data_key = key("backend-data");
  const Loc data_loc = annotations_loc.Key(data_key);
  const json* data_text = Member(*annotations, data_key);
  if (data_text == nullptr) return data_loc.Error("missing");
  std::string text;
  SLUICE_JSON_RETURN_IF_ERROR(AsString(*data_text, data_loc, &text));
  absl::StatusOr<json> data = ParseJson(text, data_loc);
  if (!data.ok()) return data.status();
  if (!data->is_object()) return TypeError(data_loc, "a JSON object", *data);
  int64_t vni = reading.network.vni;
  SLUICE_JSON_RETURN_IF_ERROR(GetInt(*data, data_loc, "VNI", Need::kOptional, 0, kMaxVni, &vni));
  out->vni = static_cast<uint32_t>(vni);
  SLUICE_JSON_RETURN_IF_ERROR(
      GetStationMac(*data, data_loc, "VtepMAC", Need::kRequired, &out->vtep_mac));
  return ObjectUse::kUsed;
}

}  // namespace sluice
