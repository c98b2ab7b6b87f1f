#include "dataplane/tables/neighbor_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include <algorithm>
#include <cassert>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

// rte_hash's own bound (RTE_HASH_ENTRIES_MAX).
constexpr uint64_t kMaxSlots = uint64_t{1} << 30;

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

// A host of the subnet: inside it, not its network or broadcast address
// (both are hosts on a /31, RFC 3021), and never for a subnet without a mask.
bool IsOnLinkHost(const Ipv4Subnet& s, uint32_t ip) {
  if (s.mask == 0 || !s.Contains(ip)) return false;
  const uint32_t host_bits = ~s.mask;
  const uint32_t host = ip & host_bits;
  return host_bits <= 1 || (host != 0 && host != host_bits);
}

}  // namespace

absl::StatusOr<std::unique_ptr<NeighborTable>> NeighborTable::Create(const Config& config) {
  if (config.qsbr == nullptr)
    return absl::InvalidArgumentError("neighbour table: a QSBR variable is required");
  if (config.ticks_per_second == 0)
    return absl::InvalidArgumentError("neighbour table: ticks_per_second must not be 0");
  uint64_t total = config.static_capacity;
  for (int p = 0; p < kPortRoleCount; ++p) total += config.learn_quota[p];
  if (total == 0 || total > kMaxSlots)
    return absl::InvalidArgumentError(
        absl::StrFormat("neighbour table: static capacity plus learned quotas is %u, must be 1..%u",
                        total, kMaxSlots));
  static std::atomic<uint64_t> instance{0};
  std::unique_ptr<NeighborTable> t(new NeighborTable());
  t->config_ = config;
  t->reachable_ticks_ = MillisecondsToTicks(config.reachable_ms, config.ticks_per_second);
  t->remove_ticks_ =
      t->reachable_ticks_ + MillisecondsToTicks(config.stale_ms, config.ticks_per_second);
  // rte_hash wants at least one bucket's worth of entries; the counts, not
  // the hash, bound what is stored.
  t->slots_total_ = static_cast<uint32_t>(total < 8 ? 8 : total);
  const std::string name = absl::StrFormat("nb%lu", instance.fetch_add(1));
  rte_hash_parameters p = {};
  p.name = name.c_str();
  p.entries = t->slots_total_;
  p.key_len = sizeof(NeighborKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  // Lock-free readers, writers serialised by write_lock_; extendable buckets
  // so that an add never fails while a key slot is free.
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("neighbour table: rte_hash_create: %s", rte_strerror(rte_errno)));
  t->slots_ = static_cast<Slot*>(
      rte_zmalloc_socket("neighbours", sizeof(Slot) * t->slots_total_, 64, SOCKET_ID_ANY));
  if (t->slots_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("neighbour table: cannot allocate %u slots", t->slots_total_));
  for (uint32_t i = 0; i < t->slots_total_; ++i) new (&t->slots_[i]) Slot();
  return t;
}

NeighborTable::~NeighborTable() {
  if (hash_ != nullptr) rte_hash_free(hash_);
  if (slots_ != nullptr) rte_free(slots_);
}

bool NeighborTable::AddLocked(const NeighborKey& key, uint64_t word, uint64_t now) {
  const int32_t pos = rte_hash_add_key(hash_, &key);
  if (pos < 0) return false;
  Slot& s = slots_[pos];
  s.key = key;
  s.confirmed.store(now, std::memory_order_relaxed);
  s.word.store(word, std::memory_order_release);  // publishes key and confirmed too
  BumpVersion();  // a cache that recorded "unresolved" must look again
  return true;
}

NeighborTable::LearnResult NeighborTable::Learn(PortRole port, const Ipv4Subnet& on_link,
                                                uint32_t ip, const MacAddress& mac, uint64_t now) {
  const int p = static_cast<int>(port);
  if (p >= kPortRoleCount || !IsOnLinkHost(on_link, ip)) return LearnResult::kOffSubnet;
  const NeighborKey key = MakeNeighborKey(port, ip);
  const uint64_t word = kValid | Pack(mac);
  LearnResult r;
  rte_spinlock_lock(&write_lock_);
  const int32_t pos = rte_hash_lookup(hash_, &key);
  if (pos >= 0) {
    Slot& s = slots_[pos];
    const uint64_t old = s.word.load(std::memory_order_relaxed);
    if (old & kStatic) {
      r = LearnResult::kStaticKept;
    } else {
      s.confirmed.store(now, std::memory_order_relaxed);
      if (old == word) {
        r = LearnResult::kRefreshed;
      } else {
        s.word.store(word, std::memory_order_release);
        BumpVersion();
        r = LearnResult::kChanged;
      }
    }
  } else if (learned_[p].load(std::memory_order_relaxed) >= config_.learn_quota[p] ||
             !AddLocked(key, word, now)) {
    r = LearnResult::kQuotaFull;
  } else {
    learned_[p].fetch_add(1, std::memory_order_relaxed);
    r = LearnResult::kLearned;
  }
  rte_spinlock_unlock(&write_lock_);
  return r;
}

uint64_t NeighborTable::LookupBulk(const NeighborKey* const* keys, uint32_t n, uint64_t now,
                                   MacAddress* macs, uint64_t* stale_mask) const {
  assert(n <= kBurstSize);
  uint64_t hits = 0;
  uint64_t stale = 0;
  int32_t pos[kBurstSize];
  if (n > 0)
    rte_hash_lookup_bulk(
        hash_, reinterpret_cast<const void**>(const_cast<const NeighborKey**>(keys)), n, pos);
  for (uint32_t i = 0; i < n; ++i) {
    if (pos[i] < 0) continue;
    const Slot& s = slots_[pos[i]];
    const uint64_t w = s.word.load(std::memory_order_acquire);
    if ((w & kValid) == 0) continue;  // the accepted insertion race: a miss
    hits |= uint64_t{1} << i;
    macs[i] = Unpack(w & kMacBits);
    if ((w & kStatic) == 0) {
      const uint64_t c = s.confirmed.load(std::memory_order_relaxed);
      if (now > c && now - c > reachable_ticks_) stale |= uint64_t{1} << i;
    }
  }
  *stale_mask = stale;
  return hits;
}

bool NeighborTable::Lookup(PortRole port, uint32_t ip, MacAddress* mac, bool* is_static) const {
  const NeighborKey key = MakeNeighborKey(port, ip);
  const int32_t pos = rte_hash_lookup(hash_, &key);
  if (pos < 0) return false;
  const uint64_t w = slots_[pos].word.load(std::memory_order_acquire);
  if ((w & kValid) == 0) return false;
  *mac = Unpack(w & kMacBits);
  if (is_static != nullptr) *is_static = (w & kStatic) != 0;
  return true;
}

absl::Status NeighborTable::ValidateStatic(const std::vector<StaticNeighbor>& entries) const {
  if (entries.size() > config_.static_capacity)
    return absl::ResourceExhaustedError(
        absl::StrFormat("%u static neighbours, but the neighbour table reserves room for %u",
                        entries.size(), config_.static_capacity));
  std::map<std::pair<PortRole, uint32_t>, size_t> seen;
  for (size_t i = 0; i < entries.size(); ++i) {
    const StaticNeighbor& e = entries[i];
    if (static_cast<int>(e.port) >= kPortRoleCount)
      return absl::InvalidArgumentError(
          absl::StrFormat("static neighbour %u: unknown port %d", i, static_cast<int>(e.port)));
    const std::string what =
        absl::StrFormat("static neighbour %u (%s %s)", i, PortRoleName(e.port), FormatIpv4(e.ip));
    if (e.ip == 0 || e.ip >= 0xe0000000)
      return absl::InvalidArgumentError(absl::StrCat(what, ": not a unicast address"));
    if ((e.mac[0] & 0x01) != 0 || e.mac == MacAddress{})
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: MAC %s is not a unicast station address", what, FormatMac(e.mac)));
    const auto [it, fresh] = seen.emplace(std::make_pair(e.port, e.ip), i);
    if (!fresh)
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: listed twice (also static neighbour %u)", what, it->second));
  }
  return absl::OkStatus();
}

absl::Status NeighborTable::ReplaceStatic(const std::vector<StaticNeighbor>& entries) {
  if (absl::Status s = ValidateStatic(entries); !s.ok()) return s;
  std::map<std::pair<uint8_t, uint32_t>, uint64_t> wanted;  // (port, ip) -> word
  for (const StaticNeighbor& e : entries)
    wanted[{static_cast<uint8_t>(e.port), e.ip}] = kValid | kStatic | Pack(e.mac);

  // Statics that are no longer listed go first, so that their slots are free
  // again (after the grace period) before new statics need them. Only this
  // thread sets or clears kStatic and writes a static slot's key, so both
  // may be read here without the lock.
  std::vector<int32_t> removed;
  for (uint32_t pos = 0; pos < slots_total_; ++pos) {
    Slot& s = slots_[pos];
    if ((s.word.load(std::memory_order_relaxed) & kStatic) == 0) continue;
    if (wanted.count({s.key.port, s.key.ip}) != 0) continue;
    rte_spinlock_lock(&write_lock_);
    const int32_t deleted = rte_hash_del_key(hash_, &s.key);
    rte_spinlock_unlock(&write_lock_);
    assert(deleted == static_cast<int32_t>(pos));
    (void)deleted;
    removed.push_back(static_cast<int32_t>(pos));
  }
  if (!removed.empty()) {
    BumpVersion();
    FreeAfterGracePeriod(removed);
  }

  for (const auto& [k, word] : wanted) {
    NeighborKey key;
    key.port = k.first;
    key.ip = k.second;
    rte_spinlock_lock(&write_lock_);
    const int32_t pos = rte_hash_lookup(hash_, &key);
    bool added = true;
    if (pos >= 0) {
      Slot& s = slots_[pos];
      const uint64_t old = s.word.load(std::memory_order_relaxed);
      if ((old & kStatic) == 0) {  // a learned entry becomes static
        learned_[key.port].fetch_sub(1, std::memory_order_relaxed);
        statics_.fetch_add(1, std::memory_order_relaxed);
      }
      if (old != word) {
        s.word.store(word, std::memory_order_release);
        if ((old & kMacBits) != (word & kMacBits)) BumpVersion();
      }
    } else if ((added = AddLocked(key, word, 0))) {
      statics_.fetch_add(1, std::memory_order_relaxed);
    }
    rte_spinlock_unlock(&write_lock_);
    // Validation bounded the statics by static_capacity, learned entries are
    // bounded by their quotas, and the hash has exactly that many slots with
    // extendable buckets: an add cannot fail.
    if (!added)
      return absl::InternalError(
          absl::StrFormat("neighbour table: no slot for static %s %s despite the reserved capacity",
                          PortRoleName(static_cast<PortRole>(key.port)), FormatIpv4(key.ip)));
  }
  return absl::OkStatus();
}

uint32_t NeighborTable::Age(uint64_t now) {
  std::vector<int32_t> removed;
  for (uint32_t pos = 0; pos < slots_total_; ++pos) {
    Slot& s = slots_[pos];
    const auto expired = [&] {
      const uint64_t w = s.word.load(std::memory_order_acquire);
      const uint64_t c = s.confirmed.load(std::memory_order_relaxed);
      return (w & kValid) != 0 && (w & kStatic) == 0 && now > c && now - c > remove_ticks_;
    };
    if (!expired()) continue;
    rte_spinlock_lock(&write_lock_);
    // Again under the lock: a worker may have refreshed it meanwhile. A live
    // slot keeps its key until this thread frees it, so the key is the
    // entry's.
    if (expired()) {
      rte_hash_del_key(hash_, &s.key);
      removed.push_back(static_cast<int32_t>(pos));
    }
    rte_spinlock_unlock(&write_lock_);
  }
  if (!removed.empty()) {
    BumpVersion();
    FreeAfterGracePeriod(removed);
  }
  return static_cast<uint32_t>(removed.size());
}

void NeighborTable::FreeAfterGracePeriod(const std::vector<int32_t>& positions) {
  // Without the lock: a worker waiting for it could not report quiescence.
  rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
  for (const int32_t pos : positions) {
    Slot& s = slots_[pos];
    rte_spinlock_lock(&write_lock_);
    if (s.word.load(std::memory_order_relaxed) & kStatic)
      statics_.fetch_sub(1, std::memory_order_relaxed);
    else
      learned_[s.key.port].fetch_sub(1, std::memory_order_relaxed);
    s.word.store(0, std::memory_order_relaxed);
    s.confirmed.store(0, std::memory_order_relaxed);
    rte_hash_free_key_with_position(hash_, pos);
    rte_spinlock_unlock(&write_lock_);
  }
}

std::vector<NeighborTable::Entry> NeighborTable::Entries(uint64_t now) const {
  std::vector<Entry> out;
  for (uint32_t pos = 0; pos < slots_total_; ++pos) {
    const Slot& s = slots_[pos];
    const uint64_t w = s.word.load(std::memory_order_acquire);
    if ((w & kValid) == 0) continue;  // unused, or an add not yet published
    Entry e;
    e.port = static_cast<PortRole>(s.key.port);  // stable: only this thread frees slots
    e.ip = s.key.ip;
    e.mac = Unpack(w & kMacBits);
    if ((w & kStatic) == 0) {
      const uint64_t c = s.confirmed.load(std::memory_order_relaxed);
      e.confirmed_ago = now > c ? now - c : 0;
      e.state = e.confirmed_ago > reachable_ticks_ ? EntryState::kStale : EntryState::kReachable;
    }
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.port != b.port ? a.port < b.port : a.ip < b.ip;
  });
  return out;
}

uint32_t NeighborTable::learned_count(PortRole port) const {
  return learned_[static_cast<int>(port)].load(std::memory_order_relaxed);
}

uint32_t NeighborTable::static_count() const { return statics_.load(std::memory_order_relaxed); }

}  // namespace sluice
