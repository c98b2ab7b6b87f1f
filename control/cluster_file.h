// Reads a cluster file (control/CLUSTER_FILE.md) into a ClusterModel: this
// node's ports and neighbors, flannel's etcd keys (network config and subnet
// leases) and the Services and EndpointSlices of a `kubectl get -o json` List.
//
// Errors: every parse or validation failure is absl::InvalidArgumentError with
// one message naming the object and the field, e.g.
//   kubernetes.items[3] (Service default/web): spec.ports[0].port: must be 1..65535, got 70000
//   etcd key /coreos.com/network/subnets/10.244.1.0-24: BackendData.VtepMAC: malformed MAC "zz"
//   node: ports.uplink.mac: missing
// A file is accepted or rejected as a whole: on error no partial model is returned.
//
// Concurrency: all functions are pure (no shared state) and may be called from
// any thread. They never throw, although the project builds with exceptions on.
// Control side only; nothing here is used by workers.
#ifndef SLUICE_CONTROL_CLUSTER_FILE_H_
#define SLUICE_CONTROL_CLUSTER_FILE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "api/cluster_model.h"

namespace sluice {

// Parses a cluster file's text.
//
// Beyond the format checks of CLUSTER_FILE.md, it rejects what the real
// systems never produce and the tables cannot represent: a Service or
// EndpointSlice named twice, a Service port (protocol, port) listed twice, a
// nodePort or an IPv4 cluster IP used by two Services, a nodePort on a
// ClusterIP or ExternalName Service, overlapping flannel leases, flannel
// configs flannel itself refuses (SubnetLen above 30 or not at least Network
// length + 2, a Network longer than /28), a gateway equal to nodeIP, a
// neighbor listed twice, a neighbor on an absent host port, an unknown name
// under node.ports, uplinkMTU outside 576..9216, and a multicast or all-zero
// MAC where a station MAC is expected.
//
// Defaults worth knowing: metadata.namespace absent -> "default"; SubnetLen
// absent (or 0) -> 24, or Network length + 2 for a Network longer than /22
// (flannel's rule); Network host bits are dropped as flannel does; a lease
// without BackendData.VNI -> the config's Backend.VNI; JSON null is treated as
// an absent field (Kubernetes prints empty lists as null). IPv6 addresses in
// Services are skipped, as are IPv6 and FQDN EndpointSlices and endpoint
// ports without a port number. Leases keep their etcd.kvs order; Services and
// EndpointSlices keep their items order.
//
// Returns InvalidArgument on any problem.
absl::StatusOr<ClusterModel> ParseClusterFile(std::string_view json_text);

// Reads the file at `path` and parses it. Errors name the path: an unreadable
// file gives the errno's status (NotFound, PermissionDenied, ...), a bad file
// gives ParseClusterFile's InvalidArgument with the path in front.
absl::StatusOr<ClusterModel> LoadClusterFile(const std::string& path);

// Strict dotted quad ("10.244.1.0"): four decimal octets 0..255, no leading
// zeros, signs or spaces. Returns the address in host byte order, or
// InvalidArgument.
absl::StatusOr<uint32_t> ParseIpv4(std::string_view text);

// "10.244.0.0/16": a strict dotted quad, '/', a length 0..32 without leading
// zeros. Host bits are allowed here (callers decide); the address is returned
// as written. Returns InvalidArgument when malformed.
absl::StatusOr<Ipv4Prefix> ParseIpv4Prefix(std::string_view text);

// "aa:bb:cc:dd:ee:ff": six two-digit hex octets separated by ':', either case.
// Returns InvalidArgument when malformed.
absl::StatusOr<MacAddress> ParseMac(std::string_view text);

// "10.244.1.0/24". (FormatIpv4 and FormatMac live in dataplane/common/types.h.)
std::string FormatIpv4Prefix(const Ipv4Prefix& prefix);

}  // namespace sluice

#endif  // SLUICE_CONTROL_CLUSTER_FILE_H_
