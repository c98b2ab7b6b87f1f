#include "dataplane/tables/service_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>

#include <atomic>
#include <cstring>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice {

ServiceTable::~ServiceTable() {
  if (hash_ != nullptr) rte_hash_free(hash_);
}

absl::StatusOr<std::unique_ptr<ServiceTable>> ServiceTable::Build(Builder builder,
                                                                  uint64_t generation) {
  static std::atomic<uint64_t> instance{0};
  std::unique_ptr<ServiceTable> t(new ServiceTable());
  const std::string name = absl::StrFormat("svc%lu_%lu", generation, instance.fetch_add(1));
  rte_hash_parameters p = {};
  p.name = name.c_str();
  // rte_hash wants at least 8 entries and some slack for cuckoo placement.
  p.entries = static_cast<uint32_t>(builder.entries.size() * 2 + 64);
  p.key_len = sizeof(ServiceKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("service table: rte_hash_create: %s", rte_strerror(rte_errno)));
  t->entries_.reserve(builder.entries.size());
  std::map<uint64_t, uint32_t> seen;  // key bytes -> name index
  for (auto& [key, entry] : builder.entries) {
    uint64_t bytes;
    std::memcpy(&bytes, &key, sizeof(bytes));
    auto [it, fresh] = seen.emplace(bytes, entry.name_index);
    if (!fresh)
      return absl::InvalidArgumentError(
          absl::StrFormat("service table: %s and %s both claim protocol %d port %d on address %s",
                          builder.names[it->second], builder.names[entry.name_index], key.proto,
                          key.port, FormatIpv4(key.ip)));
    t->entries_.push_back(entry);
  }
  // Data pointers go in only after entries_ stops growing.
  for (size_t i = 0; i < builder.entries.size(); ++i) {
    if (rte_hash_add_key_data(t->hash_, &builder.entries[i].first, &t->entries_[i]) < 0)
      return absl::ResourceExhaustedError("service table: rte_hash full");
  }
  t->endpoints_ = std::move(builder.endpoints);
  t->names_ = std::move(builder.names);
  return t;
}

void ServiceTable::LookupBulk(const ServiceKey* const* keys, uint32_t n,
                              const ServiceEntry** entries) const {
  uint64_t hits = 0;
  void* data[kBurstSize];
  rte_hash_lookup_bulk_data(
      hash_, reinterpret_cast<const void**>(const_cast<const ServiceKey**>(keys)), n, &hits, data);
  for (uint32_t i = 0; i < n; ++i)
    entries[i] = (hits >> i) & 1 ? static_cast<const ServiceEntry*>(data[i]) : nullptr;
}

const ServiceEntry* ServiceTable::Lookup(const ServiceKey& key) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &key, &data) < 0) return nullptr;
  return static_cast<const ServiceEntry*>(data);
}

}  // namespace sluice
