// NeighborTable: (port, IPv4 address) -> MAC, Sluice's own ARP cache.
//
// Two kinds of entries, each with its own room, so that neither can crowd
// out the other:
//  - static entries, the cluster file's node.neighbors: their own reserved
//    capacity; the control thread makes the set exactly the file's with
//    ReplaceStatic. They never age and ARP never changes them.
//  - learned entries, from ARP senders on a port's own subnet: at most a
//    quota per port (PortRole), so a flood of ARP on one port can fill only
//    that port's share, never the statics or another port's. Each carries the
//    time it was last confirmed (learned or refreshed by ARP). LookupBulk
//    flags entries older than the reachable time (the kernel's
//    base_reachable_time, 30 s) so that the caller can send a refresh request
//    while it keeps using the MAC; Age removes entries not confirmed for the
//    stale time after that (the kernel's gc_stale_time, 60 s).
//
// Layout: an rte_hash (RW_CONCURRENCY_LF, extendable buckets, so any key
// fits while key slots are free) maps a NeighborKey to its key position; a
// side array indexed by that position holds the entry: the MAC packed with
// its flags into one 64-bit word (replaced with one atomic store, so a
// reader sees the old or the new MAC, never a torn one) and the
// last-confirmed time. The hash has exactly static_capacity + the sum of the
// quotas key slots; counts of slots in use (per port for learned entries,
// one for statics) include deleted keys still waiting for their grace
// period, so every add that the counts allow finds a free slot.
//
// Concurrency contract:
//  - Readers (workers: LookupBulk, Lookup, version) never block and take no
//    lock.
//  - Writers are serialised by a spinlock, held for one key at a time:
//    workers calling Learn (ARP, off the per-packet path) and the control
//    thread in ReplaceStatic and Age. ReplaceStatic and Age run on the
//    control thread only and never concurrently with each other.
//  - Reclamation: only the control thread deletes keys (Age, ReplaceStatic).
//    It deletes them under the lock, releases it, waits for a QSBR grace
//    period (rte_rcu_qsbr_synchronize on the configured variable; the lock is
//    not held, so a worker spinning in Learn still reports quiescence), and
//    only then clears the side-array slot and frees the key position. A
//    worker that found a key during its burst therefore reads that key's
//    entry until the burst ends, never a reused slot's.
//  - Accepted race: a key added for a new entry is visible in the hash a
//    moment before its side-array word is written (rte_hash_add_key returns
//    the position only after inserting). A reader in that moment reads the
//    cleared word and reports a miss, as it would have a moment earlier;
//    the next lookup finds the entry.
//  - Entries (sluicectl neighbors) runs on the control thread, the only
//    thread that deletes keys and frees slots, and never concurrently with
//    ReplaceStatic or Age, so no slot it reads can be freed or reused under
//    it. It walks the side array without the lock:
//    a slot whose word it loads (acquire) as valid had its key and
//    confirmation time written before that word was published, and its key
//    stays as it is until this same thread frees the slot. What workers do
//    meanwhile shows as one of two versions, never a torn one: a MAC
//    changed by Learn is either word (one atomic load), a refresh moves the
//    confirmation time (one relaxed load), an entry added during the walk
//    is listed or not. The walk never blocks Learn nor LookupBulk.
//  - version() is bumped (release) after an entry is added, its MAC
//    changes or it is removed, never on a same-MAC refresh: a worker that
//    caches a MAC or its absence (a prebuilt outer header per peer) reads
//    version() (acquire) before its lookup and rebuilds when the value moved.
#ifndef SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_
#define SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_

#include <rte_hash.h>
#include <rte_rcu_qsbr.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

struct NeighborKey {
  uint32_t ip = 0;
  uint8_t port = 0;  // PortRole
  uint8_t pad[3] = {0, 0, 0};
};
static_assert(sizeof(NeighborKey) == 8);

inline NeighborKey MakeNeighborKey(PortRole port, uint32_t ip) {
  NeighborKey k;
  k.ip = ip;
  k.port = static_cast<uint8_t>(port);
  return k;
}

// One static entry (a cluster file's node.neighbors[i]).
struct StaticNeighbor {
  PortRole port = PortRole::kUplink;
  uint32_t ip = 0;
  MacAddress mac{};
};

class NeighborTable {
 public:
  struct Config {
    // Learned entries each port may hold, by PortRole.
    uint32_t learn_quota[kPortRoleCount] = {4096, 4096, 16};
    uint32_t static_capacity = 1024;
    uint64_t ticks_per_second = 1;  // unit of `now` arguments (TSC Hz in workers)
    uint32_t reachable_ms = 30000;  // base_reachable_time
    uint32_t stale_ms = 60000;      // gc_stale_time: removal this long after reachable ends
    rte_rcu_qsbr* qsbr = nullptr;   // the workers' QSBR variable; required
  };
  // Errors: InvalidArgument for no qsbr, a zero ticks_per_second or
  // capacities whose sum does not fit; ResourceExhausted when DPDK memory is
  // short.
  static absl::StatusOr<std::unique_ptr<NeighborTable>> Create(const Config& config);
  ~NeighborTable();
  NeighborTable(const NeighborTable&) = delete;
  NeighborTable& operator=(const NeighborTable&) = delete;

  // ---- workers -----------------------------------------------------------

  enum class LearnResult : uint8_t {
    kLearned,     // new entry
    kChanged,     // a learned entry's MAC changed (version bumped)
    kRefreshed,   // same MAC; its confirmation time moved to `now`
    kStaticKept,  // a static entry holds the key; ARP does not change it
    kQuotaFull,   // new sender, but the port's learned quota is used up
    kOffSubnet,   // not a host of `on_link` (see Learn)
  };
  // Records that `ip` on `port` is at `mac`, as an ARP sender told us.
  // `on_link` is the port's own subnet (OnLinkSubnet in route.h): senders
  // outside it, its network and broadcast addresses (below /31), and every
  // sender when its mask is 0, are refused with kOffSubnet, so a caller
  // cannot learn without stating the subnet. Any thread; takes the writer
  // lock.
  LearnResult Learn(PortRole port, const Ipv4Subnet& on_link, uint32_t ip, const MacAddress& mac,
                    uint64_t now);

  // Bulk lookup of n <= kBurstSize keys (pad bytes zero). Returns the hit
  // mask: bit i set when keys[i] resolved, its MAC in macs[i]. Bit i of
  // *stale_mask is set when that entry is a learned one last confirmed more
  // than the reachable time before `now`: still usable, due for a refresh
  // request.
  uint64_t LookupBulk(const NeighborKey* const* keys, uint32_t n, uint64_t now, MacAddress* macs,
                      uint64_t* stale_mask) const;
  // One key, for the control side and tests.
  bool Lookup(PortRole port, uint32_t ip, MacAddress* mac, bool* is_static = nullptr) const;

  // Bumped after any MAC change or removal (see the contract above).
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  // ---- control thread ----------------------------------------------------

  // Checks that `entries` can become the static set, changing nothing.
  // Errors: InvalidArgument for an entry listed twice, an unknown port, an
  // address 0, multicast or broadcast, a multicast or all-zero MAC;
  // ResourceExhausted for more entries than static_capacity.
  absl::Status ValidateStatic(const std::vector<StaticNeighbor>& entries) const;
  // Makes the static set exactly `entries`: adds new ones, changes MACs,
  // removes statics not listed (they go away; they do not become learned),
  // and turns a learned entry with a listed key into a static one. Validates
  // first: on error (ValidateStatic's) nothing changes, and once validation
  // passed it cannot fail. Blocks for one grace period when it removes
  // entries.
  absl::Status ReplaceStatic(const std::vector<StaticNeighbor>& entries);
  // Removes learned entries not confirmed for reachable + stale time before
  // `now`; returns how many. Blocks for one grace period when it removes
  // any.
  uint32_t Age(uint64_t now);

  // One entry as Entries() reports it, in the kernel's `ip neigh` terms.
  enum class EntryState : uint8_t {
    kPermanent,  // static
    kReachable,  // learned, confirmed within the reachable time
    kStale,      // learned, past the reachable time: still used, refreshed by
                 // a request, removed by Age after the stale time
  };
  struct Entry {
    PortRole port = PortRole::kUplink;
    uint32_t ip = 0;
    MacAddress mac{};
    EntryState state = EntryState::kPermanent;
    uint64_t confirmed_ago = 0;  // learned: `now` minus its last confirmation (0 if
                                 // confirmed at or after `now`); statics 0
  };
  // Every entry, sorted by port then address; `now` in the table's ticks.
  // Control thread only (see the contract above); allocates the vector.
  std::vector<Entry> Entries(uint64_t now) const;

  // Slots in use, including deleted keys waiting for their grace period
  // (exact between control-thread calls; racy while workers learn).
  uint32_t learned_count(PortRole port) const;
  uint32_t static_count() const;
  const Config& config() const { return config_; }

 private:
  // One side-array slot, indexed by the key's rte_hash position.
  struct Slot {
    std::atomic<uint64_t> word{0};       // kValid | kStatic | MAC; 0 while unused
    std::atomic<uint64_t> confirmed{0};  // learned: last confirmation
    NeighborKey key;                     // written under the lock while the slot is unused
  };
  static constexpr uint64_t kValid = uint64_t{1} << 63;
  static constexpr uint64_t kStatic = uint64_t{1} << 62;
  static constexpr uint64_t kMacBits = (uint64_t{1} << 48) - 1;

  NeighborTable() = default;
  // Adds `key` (not present) with `word`; the lock is held. Returns false
  // only if the hash has no free slot, which the counts rule out.
  bool AddLocked(const NeighborKey& key, uint64_t word, uint64_t now);
  // Waits for a grace period, then frees the deleted keys' slots.
  void FreeAfterGracePeriod(const std::vector<int32_t>& positions);
  void BumpVersion() { version_.fetch_add(1, std::memory_order_release); }

  Config config_;
  uint64_t reachable_ticks_ = 0;
  uint64_t remove_ticks_ = 0;  // reachable + stale
  uint32_t slots_total_ = 0;
  rte_hash* hash_ = nullptr;
  Slot* slots_ = nullptr;
  rte_spinlock_t write_lock_ = RTE_SPINLOCK_INITIALIZER;
  // Guarded by write_lock_ (atomic so that the accessors may read them).
  std::atomic<uint32_t> learned_[kPortRoleCount] = {};
  std::atomic<uint32_t> statics_{0};
  std::atomic<uint64_t> version_{0};
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_NEIGHBOR_TABLE_H_
