#include "dataplane/tables/neighbor_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

uint64_t Pack(const MacAddress& mac) {
  uint64_t v = 0;
  for (int i = 0; i < 6; ++i) v = (v << 8) | mac[i];
  return v;
}

MacAddress Unpack(uint64_t v) {
  MacAddress mac;
  for (int i = 5; i >= 0; --i) {
    mac[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return mac;
}

}  // namespace

NeighborTable::~NeighborTable() {
  if (hash_ != nullptr) rte_hash_free(hash_);
}

absl::StatusOr<std::unique_ptr<NeighborTable>> NeighborTable::Create(uint32_t capacity) {
  static std::atomic<uint64_t> instance{0};
  std::unique_ptr<NeighborTable> t(new NeighborTable());
  const std::string name = absl::StrFormat("neigh%lu", instance.fetch_add(1));
  rte_hash_parameters p = {};
  p.name = name.c_str();
  p.entries = capacity < 64 ? 64 : capacity;
  p.key_len = sizeof(NeighborKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("neighbour table: rte_hash_create: %s", rte_strerror(rte_errno)));
  return t;
}

bool NeighborTable::Set(PortRole port, uint32_t ip, const MacAddress& mac, bool is_static) {
  NeighborKey key;
  key.ip = ip;
  key.port = static_cast<uint8_t>(port);
  const uint64_t value = Pack(mac) | kValidBit | (is_static ? kStaticBit : 0);
  rte_spinlock_lock(&write_lock_);
  void* old = nullptr;
  bool ok = true;
  const bool exists = rte_hash_lookup_data(hash_, &key, &old) >= 0;
  if (exists && (reinterpret_cast<uintptr_t>(old) & kStaticBit) != 0 && !is_static) {
    ok = true;  // a static entry wins over what ARP says
  } else if (!exists || reinterpret_cast<uintptr_t>(old) != value) {
    ok = rte_hash_add_key_data(hash_, &key, reinterpret_cast<void*>(uintptr_t{value})) == 0;
    if (ok) version_.fetch_add(1, std::memory_order_release);
  }
  rte_spinlock_unlock(&write_lock_);
  return ok;
}

void NeighborTable::LookupBulk(const NeighborKey* const* keys, uint32_t n, MacAddress* macs,
                               bool* found) const {
  uint64_t hits = 0;
  void* data[kBurstSize];
  rte_hash_lookup_bulk_data(
      hash_, reinterpret_cast<const void**>(const_cast<const NeighborKey**>(keys)), n, &hits, data);
  for (uint32_t i = 0; i < n; ++i) {
    found[i] = (hits >> i) & 1;
    if (found[i]) macs[i] = Unpack(reinterpret_cast<uintptr_t>(data[i]));
  }
}

bool NeighborTable::Lookup(PortRole port, uint32_t ip, MacAddress* mac) const {
  NeighborKey key;
  key.ip = ip;
  key.port = static_cast<uint8_t>(port);
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &key, &data) < 0) return false;
  *mac = Unpack(reinterpret_cast<uintptr_t>(data));
  return true;
}

}  // namespace sluice
