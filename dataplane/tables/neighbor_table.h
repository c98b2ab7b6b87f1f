// NeighborTable: (port, IPv4 address) -> MAC, Sluice's own ARP cache.
//
// Static entries come from the cluster file; dynamic ones are learned by
// workers from ARP. Unlike the generation tables it outlives reloads.
//
// Concurrency: rte_hash with RW_CONCURRENCY_LF, so lookups never block.
// Writers (workers learning from ARP, the control side adding static
// entries) are serialised by a spinlock; ARP is rare, so that lock is off the
// per-packet path. An existing entry's MAC is replaced by rte_hash's atomic
// data-pointer store (the MAC is packed into the pointer-sized value), so a
// reader sees the old or the new MAC, never a torn one. Entries are never
// deleted (bounded by capacity; a full table counts arp_learned failures as
// neighbor_miss on use), so no reclamation is needed.
#ifndef SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_
#define SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_

#include <rte_hash.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

struct NeighborKey {
  uint32_t ip = 0;
  uint8_t port = 0;  // PortRole
  uint8_t pad[3] = {0, 0, 0};
};
static_assert(sizeof(NeighborKey) == 8);

class NeighborTable {
 public:
  ~NeighborTable();
  // Errors: ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<NeighborTable>> Create(uint32_t capacity);

  // Inserts or refreshes. A static entry is not overwritten by a learned
  // one. Returns false when the table is full.
  bool Set(PortRole port, uint32_t ip, const MacAddress& mac, bool is_static);
  // Bulk lookup of n <= kBurstSize keys; found[i] false on a miss.
  void LookupBulk(const NeighborKey* const* keys, uint32_t n, MacAddress* macs, bool* found) const;
  bool Lookup(PortRole port, uint32_t ip, MacAddress* mac) const;
  // Bumped (release) whenever an entry is added or its MAC changes, so that
  // caches holding a MAC (per-peer VXLAN headers) know to look again.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  NeighborTable() = default;
  static constexpr uint64_t kStaticBit = uint64_t{1} << 62;
  static constexpr uint64_t kValidBit = uint64_t{1} << 63;
  rte_hash* hash_ = nullptr;
  rte_spinlock_t write_lock_ = RTE_SPINLOCK_INITIALIZER;
  std::atomic<uint64_t> version_{1};
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_
