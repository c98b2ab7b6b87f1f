#include "dataplane/conntrack/conntrack_table.h"

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_prefetch.h>

#include <emmintrin.h>
#ifdef __SSE4_2__
#include <nmmintrin.h>
#else
#include <rte_hash_crc.h>
#endif

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

constexpr uint32_t kHashSeed = 0xffffffff;

// Bytes allocated on all DPDK heaps (to measure what an opaque DPDK object
// takes).
size_t HeapAllocatedBytes() {
  size_t total = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats st;
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
      total += st.heap_allocsz_bytes;
  }
  return total;
}

size_t AllocatedBytes(const void* p) {
  size_t size = 0;
  return p != nullptr && rte_malloc_validate(p, &size) == 0 ? size : 0;
}

// One CRC32 over the 16-byte key. Internal, so that it inlines into the
// lookups (the exported Hash() may be interposed in a shared build).
inline uint32_t HashKey(const FlowKey& key) {
  uint64_t w[2];
  std::memcpy(w, &key, sizeof(w));
#ifdef __SSE4_2__
  return static_cast<uint32_t>(_mm_crc32_u64(_mm_crc32_u64(kHashSeed, w[0]), w[1]));
#else
  return rte_hash_crc_8byte(w[1], rte_hash_crc_8byte(w[0], kHashSeed));
#endif
}

// Bit 2s+1 set when slot s of the 8-slot bucket at `slots` may hold
// signature `sig` (already shifted to bits 32-47); SlotOf(match) gives the
// slot of the lowest. A filter only: it reads the bucket with 16-byte vector
// loads, whose aligned 8-byte halves x86 reads whole, and its result is used
// only to choose which slots to re-read with atomic loads and check again.
// Each slot's high half is compared as a 32-bit lane (the low halves'
// lanes are ignored) and the four compares are packed into one byte mask:
// fewer instructions than a 64-bit compare and a movemask per vector.
inline uint32_t SignatureMatches(const std::atomic<uint64_t>* slots, uint64_t sig,
                                 uint64_t sig_mask) {
#ifdef __SSE2__
  const __m128i mask = _mm_set1_epi64x(static_cast<long long>(sig_mask));
  const __m128i want = _mm_set1_epi64x(static_cast<long long>(sig));
  const auto* v = reinterpret_cast<const __m128i*>(slots);
  auto eq = [&](int i) { return _mm_cmpeq_epi32(_mm_and_si128(_mm_load_si128(v + i), mask), want); };
  // Lanes of -1 / 0 pack to -1 / 0: bytes 2k and 2k+1 of the result are
  // slot k's low and high halves.
  const __m128i packed =
      _mm_packs_epi16(_mm_packs_epi32(eq(0), eq(1)), _mm_packs_epi32(eq(2), eq(3)));
  return static_cast<uint32_t>(_mm_movemask_epi8(packed)) & 0xaaaau;
#else
  uint32_t match = 0;
  for (uint32_t s = 0; s < 8; ++s)
    match |= uint32_t{(slots[s].load(std::memory_order_relaxed) & sig_mask) == sig} << (2 * s + 1);
  return match;
#endif
}
inline uint32_t SlotOf(uint32_t match) { return static_cast<uint32_t>(__builtin_ctz(match)) >> 1; }

// The power of two nearest to `ideal` on a log scale, at least `min`.
uint32_t NearestPowerOfTwo(uint64_t ideal, uint32_t min) {
  uint64_t p = 1;
  while (p * 2 <= ideal) p *= 2;
  // ideal in [p, 2p): round up when ideal > p * sqrt(2).
  if (ideal * ideal > 2 * p * p) p *= 2;
  return p < min ? min : static_cast<uint32_t>(p);
}

}  // namespace

uint32_t ConntrackTable::Hash(const FlowKey& key) { return HashKey(key); }

absl::StatusOr<std::unique_ptr<ConntrackTable>> ConntrackTable::Create(const Config& config) {
  if (config.capacity == 0 || config.workers == 0 || config.qsbr == nullptr)
    return absl::InvalidArgumentError("conntrack: capacity, workers and qsbr are required");
  if (config.capacity >= kReplyBit)
    return absl::InvalidArgumentError("conntrack: capacity must be below 2^31");
  if (config.workers > 256)
    return absl::InvalidArgumentError("conntrack: at most 256 workers (ConntrackEntry::owner)");
  if (config.removal_ring < 2 || (config.removal_ring & (config.removal_ring - 1)) != 0)
    return absl::InvalidArgumentError(
        absl::StrFormat("conntrack: removal ring size must be a power of two of at least 2, got %u",
                        config.removal_ring));
  static std::atomic<uint64_t> instance{0};
  const uint64_t id = instance.fetch_add(1);
  std::unique_ptr<ConntrackTable> t(new ConntrackTable());
  t->config_ = config;
  t->capacity_ = config.capacity;

  // Coarse clock: the largest power-of-two divisor that keeps a tick at or
  // below a millisecond.
  const uint64_t per_ms = config.ticks_per_second / 1000;
  t->tick_shift_ = per_ms >= 2 ? 63 - __builtin_clzll(per_ms) : 0;
  bool timeout_too_long = false;
  auto ticks = [&](uint32_t seconds) {
    const unsigned __int128 raw =
        static_cast<unsigned __int128>(seconds) * config.ticks_per_second >> t->tick_shift_;
    if (raw >= (unsigned __int128){1} << 31) timeout_too_long = true;
    return static_cast<uint32_t>(raw);
  };
  const ConntrackTimeouts& to = config.timeouts;
  t->timeout_ticks_ = {ticks(to.tcp_established_s),
                       ticks(to.tcp_unreplied_s),
                       ticks(to.tcp_fin_s),
                       ticks(to.tcp_rst_s),
                       ticks(to.udp_s),
                       ticks(to.udp_replied_s),
                       ticks(to.icmp_s)};
  if (timeout_too_long)
    return absl::InvalidArgumentError("conntrack: a timeout is 2^31 coarse ticks or longer");

  const size_t entry_bytes = sizeof(ConntrackEntry) * size_t{config.capacity};
  t->entries_ =
      static_cast<ConntrackEntry*>(rte_zmalloc_socket("conntrack", entry_bytes, 64, SOCKET_ID_ANY));
  if (t->entries_ == nullptr)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "conntrack: cannot allocate %u entries (%zu bytes)", config.capacity, entry_bytes));
  for (uint32_t i = 0; i < config.capacity; ++i) new (&t->entries_[i]) ConntrackEntry();

  // Two slots per flow at half load: capacity * 2 / (8 * 0.5) buckets.
  const uint32_t buckets = NearestPowerOfTwo(config.capacity / 2, kMaxProbe);
  t->bucket_mask_ = buckets - 1;
  t->buckets_ = static_cast<Bucket*>(
      rte_zmalloc_socket("conntrack_buckets", sizeof(Bucket) * size_t{buckets}, 64, SOCKET_ID_ANY));
  t->overflow_count_ =
      static_cast<uint8_t*>(rte_zmalloc_socket("conntrack_overflow", buckets, 64, SOCKET_ID_ANY));
  t->free_ids_ = static_cast<uint32_t*>(rte_malloc_socket(
      "conntrack_free", sizeof(uint32_t) * size_t{config.capacity}, 64, SOCKET_ID_ANY));
  if (t->buckets_ == nullptr || t->overflow_count_ == nullptr || t->free_ids_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("conntrack: cannot allocate %u buckets", buckets));

  t->slices_.reset(new WorkerSlice[config.workers]);
  const uint32_t per = config.capacity / config.workers;
  for (uint16_t w = 0; w < config.workers; ++w) {
    WorkerSlice& s = t->slices_[w];
    s.begin = w * per;
    s.end = (w + 1 == config.workers) ? config.capacity : s.begin + per;
    s.cursor = s.begin;
    // A stack; the lowest index is handed out first.
    for (uint32_t i = s.begin; i < s.end; ++i) t->free_ids_[s.begin + (s.end - 1 - i)] = i;
    s.free_count = s.end - s.begin;
    // Entries wait on the queue for one grace period, a few worker loops;
    // aging removes at most a few hundred per loop. A sixteenth of the slice
    // (at least 1024, or the whole of a small slice) is ample; when it is
    // full, aging pauses until the queue drains.
    const uint32_t span = s.end - s.begin;
    s.dq_size = std::max(std::min(span, 1024u), span / 16);
    if (s.dq_size == 0) s.dq_size = 1;
    const std::string dq_name = absl::StrFormat("ctdq%lu_%u", id, w);
    rte_rcu_qsbr_dq_parameters dp = {};
    dp.name = dq_name.c_str();
    dp.flags = RTE_RCU_QSBR_DQ_MT_UNSAFE;  // only the owner worker uses it
    dp.size = s.dq_size;
    dp.esize = sizeof(uint32_t);  // the entry index
    // No reclaim inside enqueue: Expire and Insert reclaim explicitly.
    dp.trigger_reclaim_limit = s.dq_size + 1;
    dp.max_reclaim_size = s.dq_size;
    dp.free_fn = &ConntrackTable::FreeDeferred;
    dp.p = t.get();
    dp.v = config.qsbr;
    const size_t before = HeapAllocatedBytes();
    s.dq = rte_rcu_qsbr_dq_create(&dp);
    t->dq_bytes_ += HeapAllocatedBytes() - before;
    if (s.dq == nullptr)
      return absl::ResourceExhaustedError(
          absl::StrFormat("conntrack: rte_rcu_qsbr_dq_create: %s", rte_strerror(rte_errno)));
    const std::string ring_name = absl::StrFormat("ctrm%lu_%u", id, w);
    s.removals = rte_ring_create(ring_name.c_str(), config.removal_ring, SOCKET_ID_ANY,
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (s.removals == nullptr)
      return absl::ResourceExhaustedError(
          absl::StrFormat("conntrack: removal ring: %s", rte_strerror(rte_errno)));
    t->ring_bytes_ += rte_ring_get_memsize(config.removal_ring);
  }
  return t;
}

ConntrackTable::~ConntrackTable() {
  if (slices_ != nullptr) {
    for (uint16_t w = 0; w < config_.workers; ++w) {
      rte_ring_free(slices_[w].removals);
      if (slices_[w].dq == nullptr) continue;
      // Pending frees need a grace period first (workers are stopped by now).
      if (rte_rcu_qsbr_dq_delete(slices_[w].dq) != 0) {
        rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
        rte_rcu_qsbr_dq_delete(slices_[w].dq);
      }
    }
  }
  rte_free(free_ids_);
  rte_free(overflow_count_);
  rte_free(buckets_);
  rte_free(entries_);
}

uint32_t ConntrackTable::Find(const FlowKey& key, uint32_t hash) const {
  const Bucket* const buckets = buckets_;
  const ConntrackEntry* const entries = entries_;
  const uint32_t mask = bucket_mask_;
  const uint64_t sig = SigBits(hash);
  uint32_t b = hash & mask;
  for (uint32_t probe = 0; probe < kMaxProbe; ++probe) {
    const Bucket& bucket = buckets[b];
    const bool overflowed = bucket.slot[0].load(std::memory_order_acquire) & kOverflowBit;
    for (uint32_t match = SignatureMatches(bucket.slot, sig, kSigMask); match != 0;
         match &= match - 1) {
      const uint64_t w = bucket.slot[SlotOf(match)].load(std::memory_order_acquire);
      if ((w & kSigMask) != sig) continue;
      const uint32_t ref = static_cast<uint32_t>(w);
      const ConntrackEntry& e = entries[ref & ~kReplyBit];
      if ((ref & kReplyBit ? e.reply : e.original) == key) return ref;
    }
    if (!overflowed) break;
    b = (b + 1) & mask;
  }
  return kMiss;
}

void ConntrackTable::LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const {
  // Locals: the acquire loads below would otherwise make the compiler reload
  // members after each one.
  const Bucket* const buckets = buckets_;
  const ConntrackEntry* const entries = entries_;
  const uint32_t mask = bucket_mask_;
  uint32_t hash[kBurstSize];
  uint32_t candidate[kBurstSize];
  uint32_t needs_more = 0;  // bit i: keys[i] may be elsewhere than candidate[i]

  // Stage 1: hash, prefetch the home bucket.
  for (uint32_t i = 0; i < n; ++i) {
    hash[i] = HashKey(*keys[i]);
    rte_prefetch0(&buckets[hash[i] & mask]);
  }
  // Stage 2: match signatures in the home bucket, prefetch the first
  // candidate's entry.
  for (uint32_t i = 0; i < n; ++i) {
    const Bucket& bucket = buckets[hash[i] & mask];
    const uint64_t sig = SigBits(hash[i]);
    const uint32_t match = SignatureMatches(bucket.slot, sig, kSigMask);
    // More than one candidate, or an overflowed bucket: the scalar path
    // finishes the key if the first candidate is not it.
    bool more = (match & (match - 1)) != 0 ||
                (bucket.slot[0].load(std::memory_order_acquire) & kOverflowBit) != 0;
    candidate[i] = kMiss;
    if (match != 0) {
      // The filter's slot, re-read whole; one rewritten since is left to the
      // scalar path.
      const uint64_t w = bucket.slot[SlotOf(match)].load(std::memory_order_acquire);
      if ((w & kSigMask) == sig) {
        candidate[i] = static_cast<uint32_t>(w);
        rte_prefetch0(&entries[candidate[i] & ~kReplyBit]);
      } else {
        more = true;
      }
    }
    needs_more |= uint32_t{more} << i;
  }
  // Stage 3: full key compare; the rare rest on the scalar path.
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t c = candidate[i];
    if (c != kMiss &&
        (c & kReplyBit ? entries[c & ~kReplyBit].reply : entries[c].original) == *keys[i])
      refs[i] = c;
    else
      refs[i] = (needs_more >> i) & 1 ? Find(*keys[i], hash[i]) : kMiss;
  }
}

uint32_t ConntrackTable::Lookup(const FlowKey& key) const { return Find(key, HashKey(key)); }

void ConntrackTable::PrefetchBucket(const FlowKey& key) const {
  rte_prefetch0(&buckets_[HashKey(key) & bucket_mask_]);
}

void ConntrackTable::PrefetchNextEntries(uint16_t worker, uint32_t count) const {
  const WorkerSlice& s = slices_[worker];
  const uint32_t n = std::min({count, s.free_count, uint32_t{kBurstSize}});
  for (uint32_t k = 1; k <= n; ++k) rte_prefetch0_write(&entries_[free_ids_[s.begin + s.free_count - k]]);
}

bool ConntrackTable::FindFree(uint32_t hash, const SlotPos* taken, SlotPos* pos) const {
  uint32_t b = hash & bucket_mask_;
  for (uint32_t d = 0; d < kMaxProbe; ++d) {
    for (uint32_t s = 0; s < kSlotsPerBucket; ++s) {
      if ((buckets_[b].slot[s].load(std::memory_order_relaxed) & kSigMask) != 0) continue;
      if (taken != nullptr && taken->bucket == b && taken->slot == s) continue;
      *pos = SlotPos{b, s, d};
      return true;
    }
    b = (b + 1) & bucket_mask_;
  }
  return false;
}

uint32_t ConntrackTable::FindForInsert(const FlowKey& key, uint32_t hash, const SlotPos* taken,
                                       SlotPos* pos, bool* free) const {
  // The common case, a home bucket that did not overflow and has a free
  // slot, is one look at it: the writer holds write_lock_, slot words only
  // change under it, so the vector reads of SignatureMatches are exact here.
  const uint32_t b = hash & bucket_mask_;
  const Bucket& bucket = buckets_[b];
  for (uint32_t match = SignatureMatches(bucket.slot, SigBits(hash), kSigMask); match != 0;
       match &= match - 1) {
    const uint32_t ref =
        static_cast<uint32_t>(bucket.slot[SlotOf(match)].load(std::memory_order_relaxed));
    const ConntrackEntry& e = entries_[ref & ~kReplyBit];
    if ((ref & kReplyBit ? e.reply : e.original) == key) return ref;
  }
  if ((bucket.slot[0].load(std::memory_order_relaxed) & kOverflowBit) == 0) {
    uint32_t empty = SignatureMatches(bucket.slot, 0, kSigMask);  // no signature: free
    if (taken != nullptr && taken->bucket == b) empty &= ~(uint32_t{2} << (2 * taken->slot));
    if (empty != 0) {
      *pos = SlotPos{b, SlotOf(empty), 0};
      *free = true;
      return kMiss;
    }
  }
  // The key may be past its home bucket, or the slot must be.
  const uint32_t ref = Find(key, hash);
  if (ref != kMiss) return ref;
  *free = FindFree(hash, taken, pos);
  return kMiss;
}

void ConntrackTable::Publish(uint32_t hash, const SlotPos& pos, uint32_t ref) {
  // Overflow bits first, so that a lookup starting after the slot store
  // follows the chain to it.
  uint32_t b = hash & bucket_mask_;
  for (uint32_t d = 0; d < pos.distance; ++d) {
    if (overflow_count_[b]++ == 0) {
      std::atomic<uint64_t>& first = buckets_[b].slot[0];
      first.store(first.load(std::memory_order_relaxed) | kOverflowBit, std::memory_order_release);
    }
    b = (b + 1) & bucket_mask_;
  }
  std::atomic<uint64_t>& slot = buckets_[pos.bucket].slot[pos.slot];
  // Only slot 0 carries the bucket's overflow bit; keep it.
  const uint64_t keep = slot.load(std::memory_order_relaxed) & kOverflowBit;
  slot.store(keep | SigBits(hash) | ref, std::memory_order_release);
}

void ConntrackTable::Unpublish(const FlowKey& key, uint32_t ref) {
  const uint32_t hash = HashKey(key);
  const uint64_t word = SigBits(hash) | ref;
  uint32_t b = hash & bucket_mask_;
  for (uint32_t d = 0; d < kMaxProbe; ++d) {
    for (uint32_t s = 0; s < kSlotsPerBucket; ++s) {
      std::atomic<uint64_t>& slot = buckets_[b].slot[s];
      const uint64_t w = slot.load(std::memory_order_relaxed);
      if ((w & ~kOverflowBit) != word) continue;
      slot.store(w & kOverflowBit, std::memory_order_release);
      // Then the overflow bits the key had set, now that it is gone.
      uint32_t p = hash & bucket_mask_;
      for (uint32_t k = 0; k < d; ++k) {
        if (--overflow_count_[p] == 0) {
          std::atomic<uint64_t>& first = buckets_[p].slot[0];
          first.store(first.load(std::memory_order_relaxed) & ~kOverflowBit,
                      std::memory_order_release);
        }
        p = (p + 1) & bucket_mask_;
      }
      return;
    }
    b = (b + 1) & bucket_mask_;
  }
}

ConntrackTable::InsertResult ConntrackTable::Insert(uint16_t worker, const ConntrackEntry& proto,
                                                    uint64_t now) {
  WorkerSlice& s = slices_[worker];
  if (s.free_count == 0) {
    // Give finished grace periods a chance before declaring the table full.
    Reclaim(worker);
    if (s.free_count == 0) return {InsertStatus::kFull, kMiss};
  }
  // The entry on top of the free stack is unreachable (its grace period is
  // over); it is filled in under the lock, after the finds, and if the
  // insert does not happen it simply stays free.
  const uint32_t index = free_ids_[s.begin + s.free_count - 1];
  ConntrackEntry& e = entries_[index];
  // A flow whose reply tuple is its own original (no NAT, same address and
  // port on both ends) is indexed once; its replies look like originals.
  const bool two_keys = !(proto.reply == proto.original);
  const uint32_t hash_original = HashKey(proto.original);
  const uint32_t hash_reply = HashKey(proto.reply);
  // In a big table the reply tuple's bucket and the entry are cache misses
  // (the original's bucket came in with the lookup): start both now, so
  // they overlap.
  rte_prefetch0(&buckets_[hash_reply & bucket_mask_]);
  rte_prefetch0_write(&e);

  rte_spinlock_lock(&write_lock_);
  SlotPos at_original{}, at_reply{};
  bool free_original = false, free_reply = true;
  const uint32_t existing =
      FindForInsert(proto.original, hash_original, nullptr, &at_original, &free_original);
  if (existing != kMiss) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kExists, existing};
  }
  if (two_keys && FindForInsert(proto.reply, hash_reply, free_original ? &at_original : nullptr,
                                &at_reply, &free_reply) != kMiss) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kReplyClash, kMiss};
  }
  if (!free_original || !free_reply) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kFull, kMiss};
  }
  // Filled here rather than before the lock: the lock's atomic instruction
  // would wait for stores into an entry line still on its way.
  e.original = proto.original;
  e.reply = proto.reply;
  e.rewrite[0] = proto.rewrite[0];
  e.rewrite[1] = proto.rewrite[1];
  // The creator's cached egress (the original direction's, usually) comes
  // with the entry: the flow's first packets need no route lookup.
  e.route[0].store(proto.route[0].load(std::memory_order_relaxed), std::memory_order_relaxed);
  e.route[1].store(proto.route[1].load(std::memory_order_relaxed), std::memory_order_relaxed);
  e.last_seen.store(Tick(now), std::memory_order_relaxed);
  e.state.store(0, std::memory_order_relaxed);
  e.flags = proto.flags;
  e.owner = static_cast<uint8_t>(worker);
  // Reply slot first: once the original tuple is visible, replies must
  // already find the entry (the slot stores are releases: they follow the
  // entry's stores).
  if (two_keys) Publish(hash_reply, at_reply, index | kReplyBit);
  Publish(hash_original, at_original, index);
  rte_spinlock_unlock(&write_lock_);
  --s.free_count;
  e.in_use = 1;
  // Only the owner writes its slice's count: a plain add, no atomic
  // read-modify-write (which, like the lock, would wait for the stores).
  s.in_use.store(s.in_use.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return {InsertStatus::kCreated, index};
}

uint32_t ConntrackTable::TimeoutFor(const ConntrackEntry& e) const {
  const uint8_t st = e.state.load(std::memory_order_relaxed);
  switch (e.original.proto) {
    case kProtoTcp:
      if (st & ConntrackEntry::kRst) return timeout_ticks_.tcp_rst;
      if (st & ConntrackEntry::kFin) return timeout_ticks_.tcp_fin;
      if (st & ConntrackEntry::kSeenReply) return timeout_ticks_.tcp_established;
      return timeout_ticks_.tcp_unreplied;
    case kProtoUdp:
      return (st & ConntrackEntry::kSeenReply) ? timeout_ticks_.udp_replied : timeout_ticks_.udp;
    default:
      return timeout_ticks_.icmp;
  }
}

bool ConntrackTable::Remove(uint16_t worker, uint32_t index) {
  WorkerSlice& s = slices_[worker];
  if (s.deferred == s.dq_size) {
    Reclaim(worker);
    if (s.deferred == s.dq_size) return false;
  }
  ConntrackEntry& e = entries_[index];
  rte_spinlock_lock(&write_lock_);
  Unpublish(e.original, index);
  if (!(e.reply == e.original)) Unpublish(e.reply, index | kReplyBit);
  rte_spinlock_unlock(&write_lock_);
  // Readers may still use the entry until the grace period ends, so its
  // keys and flags stay as they are; only the owner's aging mark goes.
  e.in_use = 0;
  s.in_use.store(s.in_use.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  uint32_t deferred = index;
  if (rte_rcu_qsbr_dq_enqueue(s.dq, &deferred) == 0) {
    ++s.deferred;
  } else {
    // Cannot happen (deferred < dq_size); if it did, waiting for the grace
    // period here and freeing at once would still be safe.
    rte_rcu_qsbr_synchronize(config_.qsbr, worker);
    ++s.deferred;
    FreeDeferred(this, &deferred, 1);
  }
  return true;
}

void ConntrackTable::Reclaim(uint16_t worker) {
  WorkerSlice& s = slices_[worker];
  if (s.deferred > 0) rte_rcu_qsbr_dq_reclaim(s.dq, s.dq_size, nullptr, nullptr, nullptr);
}

void ConntrackTable::FreeDeferred(void* table, void* elements, unsigned n) {
  auto* self = static_cast<ConntrackTable*>(table);
  const auto* index = static_cast<const uint32_t*>(elements);
  for (unsigned i = 0; i < n; ++i) {
    WorkerSlice& s = self->slices_[self->entries_[index[i]].owner];
    self->free_ids_[s.begin + s.free_count++] = index[i];
    --s.deferred;
  }
}

uint32_t ConntrackTable::Expire(uint16_t worker, uint64_t now, uint32_t budget) {
  WorkerSlice& s = slices_[worker];
  Reclaim(worker);
  const uint32_t tick = Tick(now);
  uint32_t expired = 0;
  const uint32_t span = s.end - s.begin;
  for (uint32_t n = 0; n < budget && n < span; ++n) {
    const uint32_t i = s.cursor;
    ConntrackEntry& e = entries_[i];
    if (e.in_use) {
      // Signed: a Touch from another worker's slightly later clock is not
      // an idle time.
      const int32_t idle = static_cast<int32_t>(tick - e.last_seen.load(std::memory_order_relaxed));
      if (idle > static_cast<int32_t>(TimeoutFor(e))) {
        if (!Remove(worker, i)) break;  // defer queue full: resume here next time
        ++expired;
      }
    }
    s.cursor = (s.cursor + 1 == s.end) ? s.begin : s.cursor + 1;
  }
  return expired;
}

ConntrackTable::EntrySnapshot ConntrackTable::SnapshotRacy(uint32_t index) const {
  // Plain reads of fields an owner may be writing (see the contract): the
  // snapshot only chooses requests, which the owner checks.
  const ConntrackEntry& e = entries_[index];
  EntrySnapshot s;
  s.in_use = __atomic_load_n(&e.in_use, __ATOMIC_RELAXED) != 0;
  s.flags = __atomic_load_n(&e.flags, __ATOMIC_RELAXED);
  std::memcpy(&s.original, &e.original, sizeof(FlowKey));
  std::memcpy(&s.reply, &e.reply, sizeof(FlowKey));
  return s;
}

uint32_t ConntrackTable::RemovalCheck(const FlowKey& original, const FlowKey& reply) {
  return HashKey(reply) * 0x9e3779b1u ^ HashKey(original);
}

uint16_t ConntrackTable::OwnerOf(uint32_t index) const {
  const uint32_t per = capacity_ / config_.workers;
  const uint32_t w = per == 0 ? config_.workers - 1u : index / per;
  return static_cast<uint16_t>(w < config_.workers ? w : config_.workers - 1u);
}

bool ConntrackTable::RequestRemoval(uint32_t index, uint32_t check) {
  if (index >= capacity_) return true;  // nothing to remove
  void* request = reinterpret_cast<void*>(uint64_t{index} << 32 | check);
  return rte_ring_sp_enqueue(slices_[OwnerOf(index)].removals, request) == 0;
}

uint32_t ConntrackTable::TakeRemovalRequests(uint16_t worker, uint32_t budget) {
  WorkerSlice& s = slices_[worker];
  uint32_t removed = 0;
  for (uint32_t n = 0; n < budget; ++n) {
    if (s.deferred == s.dq_size) {
      Reclaim(worker);
      if (s.deferred == s.dq_size) break;  // the rest waits in the ring
    }
    void* request;
    if (rte_ring_sc_dequeue(s.removals, &request) != 0) break;
    const uint64_t v = reinterpret_cast<uint64_t>(request);
    const uint32_t index = static_cast<uint32_t>(v >> 32);
    if (index < s.begin || index >= s.end) continue;
    const ConntrackEntry& e = entries_[index];
    // Gone already, or reused for another flow: nothing to do.
    if (!e.in_use || RemovalCheck(e.original, e.reply) != static_cast<uint32_t>(v)) continue;
    if (Remove(worker, index)) ++removed;
  }
  return removed;
}

uint32_t ConntrackTable::SliceSize(uint16_t worker) const {
  return slices_[worker].end - slices_[worker].begin;
}

uint64_t ConntrackTable::InUse() const {
  uint64_t n = 0;
  for (uint16_t w = 0; w < config_.workers; ++w)
    n += slices_[w].in_use.load(std::memory_order_relaxed);
  return n;
}

uint32_t ConntrackTable::OverflowedBuckets() const {
  uint32_t n = 0;
  for (uint32_t b = 0; b <= bucket_mask_; ++b)
    n += (buckets_[b].slot[0].load(std::memory_order_relaxed) & kOverflowBit) != 0;
  return n;
}

size_t ConntrackTable::BytesPerFlow() const {
  const size_t total = AllocatedBytes(entries_) + AllocatedBytes(buckets_) +
                       AllocatedBytes(overflow_count_) + AllocatedBytes(free_ids_) + dq_bytes_ +
                       ring_bytes_ + sizeof(WorkerSlice) * config_.workers;
  return (total + capacity_ - 1) / capacity_;
}

}  // namespace sluice
