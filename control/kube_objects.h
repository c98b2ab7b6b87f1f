// Reads Kubernetes objects (JSON, as the API server and `kubectl get -o
// json` print them) into the cluster model: Services and EndpointSlices as
// kube-proxy reads them, and Nodes as flannel's kube subnet manager turns
// them into leases. Used by the cluster-file parser (a v1 List) and by the
// live Kubernetes source (control/sources/kube_source.h), one object at a
// time.
//
// Two readings. kClusterFile is the cluster file's, unchanged since that
// format was written (CLUSTER_FILE.md): an EndpointSlice without the
// kubernetes.io/service-name label is an error, an endpoint gives one
// endpoint per address, conditions.serving absent means = ready, and the
// service-proxy-name label and ingress ipMode are not looked at. kKubeProxy
// is kube-proxy's (pkg/proxy/endpointslicecache.go, servicechangetracker.go,
// cmd/kube-proxy's informer label selector):
//   - a Service or EndpointSlice labelled service.kubernetes.io/service-proxy-name
//     (another proxy's) or service.kubernetes.io/headless is skipped;
//   - an EndpointSlice without the kubernetes.io/service-name label (or with
//     it empty) is skipped;
//   - a LoadBalancer ingress with ipMode "Proxy" is not DNATed: its IP is not
//     used (ipMode absent or "VIP" is);
//   - an endpoint's conditions: ready absent = true, serving absent = true,
//     terminating absent = false; only its first address is used;
//   - an EndpointSlice port without a name is ignored (kube-proxy logs
//     "Ignoring port with nil name").
// Both read nodeName, zone and hints (forZones, forNodes), skip IPv6
// addresses in Services and IPv6 or FQDN EndpointSlices (IPv4 only), and
// reject what is malformed.
//
// Errors: InvalidArgument with one message naming the object and the field,
// e.g. "Service default/web: spec.ports[0].port: must be 1..65535, got
// 70000" (single objects) or "kubernetes.items[3] (Service default/web): ..."
// (a List). A skipped object is not an error (ObjectUse::kSkipped). Nothing
// is returned half-read: on error *out is unspecified and must not be used;
// on kSkipped only its names (namespace_name, name; *node_name) are set.
//
// Concurrency: pure functions; any thread. Control side only; no DPDK.
#ifndef SLUICE_CONTROL_KUBE_OBJECTS_H_
#define SLUICE_CONTROL_KUBE_OBJECTS_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"

namespace sluice {

enum class KubeReading { kClusterFile, kKubeProxy };

enum class ObjectUse { kUsed, kSkipped };

inline constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";
inline constexpr const char* kServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name";
inline constexpr const char* kHeadlessLabel = "service.kubernetes.io/headless";
// kube-proxy's informers list and watch with this selector: what it leaves
// out never reaches it. The readers check the labels as well, so an object
// that gains one is dropped even from a server that ignores the selector.
inline constexpr const char* kKubeProxyLabelSelector =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

// The Services and EndpointSlices of a v1 List (other kinds are ignored;
// each item needs its "kind", as kubectl prints it). `where` names the List
// in messages ("kubernetes"). Beyond the single-object checks it rejects a
// Service or EndpointSlice named twice, and a nodePort or cluster IP used by
// two Services. Appends in items order; InvalidArgument on any problem.
absl::Status ParseKubernetesList(const nlohmann::json& list, std::string_view where,
                                 KubeReading reading, std::vector<ServiceSpec>* services,
                                 std::vector<EndpointSliceSpec>* endpoint_slices);

// One Service or EndpointSlice object (kind is not required: the API
// server's list items carry none). metadata.namespace absent -> "default".
absl::StatusOr<ObjectUse> ReadService(const nlohmann::json& object, KubeReading reading,
                                      ServiceSpec* out);
absl::StatusOr<ObjectUse> ReadEndpointSlice(const nlohmann::json& object, KubeReading reading,
                                            EndpointSliceSpec* out);

// metadata.namespace (when `namespaced`; absent -> "default") and
// metadata.name of an object of `kind`, e.g. from a DELETED watch event,
// whose object is the last state and is not read further.
absl::Status ReadObjectName(const nlohmann::json& object, std::string_view kind, bool namespaced,
                            std::string* namespace_name, std::string* name);

// How flannel's kube subnet manager reads a Node (pkg/subnet/kube/kube.go).
struct NodeLeaseReading {
  std::string annotation_prefix = "flannel.alpha.coreos.com";  // --kube-annotation-prefix
  // Backend.VNI gives the VNI of a lease whose backend-data has none; a
  // podCIDR outside network.network is rejected (0.0.0.0/0: anything goes).
  FlannelNetworkConfig network;
};

// A Node -> its flannel lease, as the etcd source gives leases: subnet from
// spec.podCIDRs' IPv4 entry (or spec.podCIDR), PublicIP from the
// <prefix>/public-ip annotation, BackendType from <prefix>/backend-type (only
// "vxlan"), VNI and VtepMAC from <prefix>/backend-data ({"VNI":1,
// "VtepMAC":"..."} JSON text). A Node without <prefix>/kube-subnet-manager
// "true" is skipped, as flannel skips it (its flanneld has not registered).
// *node_name is set whenever metadata.name could be read.
absl::StatusOr<ObjectUse> ReadNodeLease(const nlohmann::json& node, const NodeLeaseReading& reading,
                                        FlannelLease* out, std::string* node_name);

}  // namespace sluice

#endif  // SLUICE_CONTROL_KUBE_OBJECTS_H_
