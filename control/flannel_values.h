// flannel's values in etcd, parsed with flannel's own defaults and checks:
// the network config (<prefix>/config) and the subnet leases
// (<prefix>/subnets/<a.b.c.d>-<len>). Shared by the cluster file (which holds
// `etcdctl get -w json` output) and the live etcd source
// (sources/etcd_source.h), so that both read a value the same way and report
// the same message.
//
// A value is given as etcd hands it out: `value` is a kv's "value" member
// (nullptr when absent), a string holding the JSON text, base64-encoded when
// `base64` is set (etcd's JSON gateway and `etcdctl -w json` always encode),
// or, in the cluster file's plain form, the JSON object itself.
//
// Errors: absl::InvalidArgumentError with one message naming the key and the
// field, e.g.
//   etcd key /coreos.com/network/subnets/10.244.1.0-24: BackendData.VtepMAC: malformed MAC "zz"
//   etcd key /coreos.com/network/config: value: not valid JSON: parse error at line 1, ...
// On error nothing is returned: a value is taken whole or not at all.
//
// Concurrency: pure functions; any thread. They never throw.
#ifndef SLUICE_CONTROL_FLANNEL_VALUES_H_
#define SLUICE_CONTROL_FLANNEL_VALUES_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "api/cluster_model.h"

namespace sluice {

// flannel's network config (pkg/subnet/config.go): Network required, its host
// bits dropped; SubnetLen absent or 0 -> 24, or Network length + 2 for a
// Network longer than /22; SubnetLen above 30 or below Network length + 2,
// and a Network longer than /28 without SubnetLen, are refused as flannel
// refuses them. Backend.Type must be "vxlan" (its absence means udp to
// flannel); Backend.VNI defaults to 1, Backend.Port 0 or absent to 8472.
absl::StatusOr<FlannelNetworkConfig> ParseFlannelNetworkConfig(std::string_view key,
                                                               const nlohmann::json* value,
                                                               bool base64);

// The lease at `key`, which must start with `subnets_prefix`
// ("/coreos.com/network/subnets/"), followed by "<a.b.c.d>-<length>" with no
// host bits, inside `network`'s Network. The value needs PublicIP,
// BackendType "vxlan" and BackendData.VtepMAC (a unicast MAC);
// BackendData.VNI defaults to `network.vni`.
absl::StatusOr<FlannelLease> ParseFlannelLease(std::string_view key,
                                               std::string_view subnets_prefix,
                                               const nlohmann::json* value, bool base64,
                                               const FlannelNetworkConfig& network);

// How messages name a key: "etcd key <key, C-escaped>".
std::string EtcdKeyObject(std::string_view key);

}  // namespace sluice

#endif  // SLUICE_CONTROL_FLANNEL_VALUES_H_
