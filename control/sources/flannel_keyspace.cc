#include "control/sources/flannel_keyspace.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "control/flannel_values.h"

namespace sluice {
namespace {

bool SameConfig(const FlannelNetworkConfig& a, const FlannelNetworkConfig& b) {
  return a.network.address == b.network.address && a.network.length == b.network.length &&
         a.subnet_len == b.subnet_len && a.backend_type == b.backend_type && a.vni == b.vni &&
         a.port == b.port && a.direct_routing == b.direct_routing;
}

bool SameLease(const FlannelLease& a, const FlannelLease& b) {
  return a.subnet.address == b.subnet.address && a.subnet.length == b.subnet.length &&
         a.public_ip == b.public_ip && a.backend_type == b.backend_type && a.vni == b.vni &&
         a.vtep_mac == b.vtep_mac;
}

}  // namespace

const char* FlannelEventKindName(FlannelEvent::Kind kind) {
  switch (kind) {
    case FlannelEvent::Kind::kSnapshot:
      return "snapshot";
    case FlannelEvent::Kind::kConfig:
      return "config";
    case FlannelEvent::Kind::kLeaseUpsert:
      return "lease upsert";
    case FlannelEvent::Kind::kLeaseDelete:
      return "lease delete";
  }
  return "?";
}

FlannelKeyspace::FlannelKeyspace(std::string_view prefix) {
  std::string base(prefix);
  while (!base.empty() && base.back() == '/') base.pop_back();
  range_key_ = absl::StrCat(base, "/");
  config_key_ = absl::StrCat(base, "/config");
  subnets_prefix_ = absl::StrCat(base, "/subnets/");
}

bool FlannelKeyspace::IsLeaseKey(const std::string& key) const {
  return absl::StartsWith(key, subnets_prefix_) && key.size() > subnets_prefix_.size();
}

void FlannelKeyspace::ParseConfig(const std::string& value, std::vector<absl::Status>* problems,
                                  bool* changed) {
  *changed = false;
  const nlohmann::json text = value;  // the decoded value: JSON text
  absl::StatusOr<FlannelNetworkConfig> config =
      ParseFlannelNetworkConfig(config_key_, &text, /*base64=*/false);
  if (!config.ok()) {
    problems->push_back(config.status());
    return;
  }
  if (config_.has_value() && SameConfig(*config_, *config)) return;
  config_ = *std::move(config);
  *changed = true;
}

std::map<std::string, FlannelLease> FlannelKeyspace::ParseAll(
    std::vector<absl::Status>* problems) const {
  std::map<std::string, FlannelLease> good;
  if (!config_.has_value()) return good;
  for (const auto& [key, value] : lease_values_) {
    const nlohmann::json text = value;
    absl::StatusOr<FlannelLease> lease =
        ParseFlannelLease(key, subnets_prefix_, &text, /*base64=*/false, *config_);
    if (!lease.ok()) {
      problems->push_back(lease.status());
      continue;
    }
    good.emplace(key, *std::move(lease));
  }
  return good;
}

FlannelSnapshot FlannelKeyspace::Snapshot(int64_t revision) const {
  FlannelSnapshot snapshot;
  snapshot.revision = revision;
  if (!config_.has_value()) return snapshot;
  snapshot.network = config_;
  for (const auto& [key, lease] : delivered_) {
    snapshot.lease_keys.push_back(key);
    snapshot.leases.push_back(lease);
  }
  return snapshot;
}

void FlannelKeyspace::Relist(int64_t revision, const std::vector<EtcdKv>& kvs,
                             std::vector<FlannelEvent>* events,
                             std::vector<absl::Status>* problems) {
  lease_values_.clear();
  bool config_seen = false;
  for (const EtcdKv& kv : kvs) {
    if (kv.key == config_key_) {
      config_seen = true;
      bool changed = false;
      ParseConfig(kv.value, problems, &changed);
    } else if (IsLeaseKey(kv.key)) {
      lease_values_[kv.key] = kv.value;
    }
  }
  if (!config_seen) {
    problems->push_back(absl::InvalidArgumentError(
        absl::StrCat(EtcdKeyObject(config_key_), ": missing",
                     config_.has_value() ? "; the config in use is kept" : "")));
  }
  delivered_ = ParseAll(problems);
  FlannelEvent event;
  event.kind = FlannelEvent::Kind::kSnapshot;
  event.revision = revision;
  event.snapshot = Snapshot(revision);
  events->push_back(std::move(event));
}

void FlannelKeyspace::Apply(const EtcdWatchEvent& change, std::vector<FlannelEvent>* events,
                            std::vector<absl::Status>* problems) {
  const std::string& key = change.kv.key;
  const int64_t revision = change.kv.mod_revision;
  if (key == config_key_) {
    if (change.is_delete) {
      problems->push_back(absl::InvalidArgumentError(
          absl::StrCat(EtcdKeyObject(key), ": deleted; the config in use is kept")));
      return;
    }
    bool changed = false;
    ParseConfig(change.kv.value, problems, &changed);
    if (!changed) return;
    delivered_ = ParseAll(problems);
    FlannelEvent event;
    event.kind = FlannelEvent::Kind::kConfig;
    event.revision = revision;
    event.snapshot = Snapshot(revision);
    events->push_back(std::move(event));
    return;
  }
  if (!IsLeaseKey(key)) return;

  if (change.is_delete) {
    lease_values_.erase(key);
    const auto it = delivered_.find(key);
    if (it == delivered_.end()) return;
    FlannelEvent event;
    event.kind = FlannelEvent::Kind::kLeaseDelete;
    event.revision = revision;
    event.key = key;
    event.lease = it->second;
    delivered_.erase(it);
    events->push_back(std::move(event));
    return;
  }

  lease_values_[key] = change.kv.value;
  if (!config_.has_value()) return;  // checked once a config arrives
  const nlohmann::json text = change.kv.value;
  absl::StatusOr<FlannelLease> lease =
      ParseFlannelLease(key, subnets_prefix_, &text, /*base64=*/false, *config_);
  if (!lease.ok()) {
    problems->push_back(lease.status());
    return;
  }
  const auto [it, inserted] = delivered_.emplace(key, *lease);
  if (!inserted) {
    if (SameLease(it->second, *lease)) return;  // flanneld renewing its lease
    it->second = *lease;
  }
  FlannelEvent event;
  event.kind = FlannelEvent::Kind::kLeaseUpsert;
  event.revision = revision;
  event.key = key;
  event.lease = *std::move(lease);
  events->push_back(std::move(event));
}

}  // namespace sluice
