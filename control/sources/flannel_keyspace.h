// flannel's keys under one etcd prefix, as the etcd source has seen them, and
// what each listing or change means for the dataplane: the events the source
// delivers (etcd_source.h). Keeps no connection; fed by the source's thread,
// tested on its own.
//
// Keys read: <prefix>/config (flannel's network config) and
// <prefix>/subnets/<a.b.c.d>-<len> (leases), parsed by flannel_values.h
// exactly as the cluster file parses them. Other keys under the prefix are
// ignored.
//
// What the events mean (the consumer keeps the leases it was given):
// - kSnapshot after every listing: the whole state; anything not in it is
//   gone (a relist after a compaction replaces all, so no stale lease stays).
// - kConfig when a valid config differs from the one in use: again the whole
//   state, every lease parsed anew (a lease's validity and default VNI depend
//   on the config).
// - kLeaseUpsert when a lease's value parses and differs from the one
//   delivered; kLeaseDelete when a delivered lease's key is deleted.
// Bad values, as flannel itself treats them when it watches: a lease value
// that does not parse is reported (the status names the key and the field)
// and skipped, so the consumer keeps what it had for that key, or nothing
// after a listing; it is never applied in part. A config that does not parse,
// and a deleted config, are reported and the last good config stays in use
// (flanneld reads its config once, at start). Until a first good config is
// seen no lease can be checked, so snapshots carry no network and no leases.
// Overlapping leases are not checked here: the dataplane refuses them.
//
// Errors: problems are InvalidArgument statuses appended to the caller's list
// (bad value, missing or deleted config); nothing here fails as a whole.
//
// Concurrency: a plain value; one thread at a time.
#ifndef SLUICE_CONTROL_SOURCES_FLANNEL_KEYSPACE_H_
#define SLUICE_CONTROL_SOURCES_FLANNEL_KEYSPACE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "api/cluster_model.h"
#include "control/sources/etcd_gateway.h"

namespace sluice {

struct FlannelSnapshot {
  int64_t revision = 0;                         // etcd revision the state is at
  std::optional<FlannelNetworkConfig> network;  // none before a first good config
  std::vector<FlannelLease> leases;             // in key order
  std::vector<std::string> lease_keys;          // parallel to leases
};

struct FlannelEvent {
  enum class Kind { kSnapshot, kConfig, kLeaseUpsert, kLeaseDelete };
  Kind kind = Kind::kSnapshot;
  int64_t revision = 0;      // of the listing, or the change's mod_revision
  FlannelSnapshot snapshot;  // kSnapshot, kConfig
  std::string key;           // kLeaseUpsert, kLeaseDelete
  FlannelLease lease;        // kLeaseUpsert: the new value; kLeaseDelete: the one removed
};

const char* FlannelEventKindName(FlannelEvent::Kind kind);

class FlannelKeyspace {
 public:
  // `prefix` as flannel's -etcd-prefix: "/coreos.com/network" (a trailing
  // '/' is dropped).
  explicit FlannelKeyspace(std::string_view prefix);

  // The key range to list and watch: every key under "<prefix>/".
  const std::string& range_key() const { return range_key_; }
  const std::string& config_key() const { return config_key_; }
  const std::string& subnets_prefix() const { return subnets_prefix_; }

  // A complete listing at `revision` replaces everything; appends one
  // kSnapshot event.
  void Relist(int64_t revision, const std::vector<EtcdKv>& kvs, std::vector<FlannelEvent>* events,
              std::vector<absl::Status>* problems);

  // One watched change, in stream order.
  void Apply(const EtcdWatchEvent& change, std::vector<FlannelEvent>* events,
             std::vector<absl::Status>* problems);

  // The state as delivered so far.
  FlannelSnapshot Snapshot(int64_t revision) const;

 private:
  bool IsLeaseKey(const std::string& key) const;
  // Parses every stored lease against config_; returns the good ones.
  std::map<std::string, FlannelLease> ParseAll(std::vector<absl::Status>* problems) const;
  void ParseConfig(const std::string& value, std::vector<absl::Status>* problems, bool* changed);

  std::string range_key_;                            // "<prefix>/"
  std::string config_key_;                           // "<prefix>/config"
  std::string subnets_prefix_;                       // "<prefix>/subnets/"
  std::optional<FlannelNetworkConfig> config_;       // the config in use
  std::map<std::string, std::string> lease_values_;  // every lease key in etcd -> value
  std::map<std::string, FlannelLease> delivered_;    // what the consumer holds, by key
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_FLANNEL_KEYSPACE_H_
