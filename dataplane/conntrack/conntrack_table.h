// ConntrackTable: the connection tracking table behind DNAT, masquerade and
// reverse NAT. One table for the node, shared by all workers, with both
// directions of every flow indexed, so that a flow's two directions may be
// handled by different workers (no RSS or flow steering is assumed).
//
// Layout (as VPP's bihash and HDSLB's per-core connection hash):
//  - entries_: a preallocated array of 64-byte ConntrackEntry, one cache
//    line each, referenced by 32-bit index.
//  - buckets_: a power-of-two array of 64-byte buckets of 8 slots. A slot is
//    one 64-bit word: bits 0-31 the ref (entry index, | kReplyBit for the
//    reply tuple), bits 32-47 a signature (SigBits; 0 = empty slot), bit 63 of
//    slot 0 the bucket's overflow bit. Every flow takes two slots (original
//    and reply tuple). The bucket count is the power of two nearest to
//    capacity / 2, i.e. 35-71% (typically 50%) of the slots in use when the
//    entry pool is full.
//  - One CRC32 (SSE4.2) of the 16-byte FlowKey gives the bucket (low bits)
//    and the signature (high 16 bits; they share bits with the bucket index
//    once there are more than 2^16 buckets, so a bucket holds fewer distinct
//    signatures, which costs only an extra entry compare now and then).
//  - A key lives in its home bucket or, when that is full, in one of the next
//    kMaxProbe - 1 buckets (linear probing). Every bucket a key was placed
//    past has its overflow bit set; a lookup moves to the next bucket only
//    when the bit is set. The writer keeps per bucket the count of keys
//    placed past it (overflow_count_) and clears the bit when it drops to
//    zero, so deletes never leave long probe chains behind. Keys are never
//    moved once placed (unlike cuckoo hashing), so a reader never misses a
//    key that stays in the table.
//  - LookupBulk runs in stages across the burst: hash every key and prefetch
//    its bucket; match signatures and prefetch the candidate entry; compare
//    the full key with the entry's original or reply tuple. (Hashing and
//    prefetching in classify instead, a node ahead, was measured slower for
//    established flows: bench/results/2026-12-02-hash-ahead.) Keys that need
//    more (a second signature match, an overflowed bucket) finish on the
//    scalar path. Signatures are matched with SSE2 compares over the
//    bucket's four 16-byte quarters, packed into one byte mask (bench: ~52 ->
//    ~36 cycles per hit at 100k flows against the scalar loop, with 64-bit
//    compares then; the packed 32-bit compares take about 6 instructions
//    fewer a bucket, callgrind); the chosen slot is then re-read with an atomic load.
//
// Memory: BytesPerFlow() (entries + buckets + overflow counts + free lists
// + defer queues + removal rings, from what was allocated): 64 + 32 + 0.5 +
// 4 + ~1.5 = 103 bytes at capacity 2^20 (the rings add 32 KB per worker);
// 93 to 115 as the bucket count's power-of-two rounding falls (was 208 with
// rte_hash).
//
// Speed (bench/dataplane/stage_bench.cc BM_Conntrack*, burst 32, TSC cycles
// per packet, medians of 3, 2-core AMD EPYC KVM guest, --no-huge; rte_hash is
// the previous table, kept as bench/dataplane/conntrack/rte_hash_conntrack.h):
//                     1k flows         100k             1M
//   hit               33 vs 50 (0.66)  36 vs 54 (0.67)  57 vs 80 (0.71)
//   hit + Touch       38 vs 62 (0.61)  41 vs 79 (0.52)  62 vs 126 (0.49)
//   miss              14 vs 31 (0.46)  14 vs 30 (0.47)  30 vs 47 (0.63)
//   insert + SNAT     391 vs 632       576 vs 737       1214 vs 1188
//   port search       (0.62)           (0.78)           (1.02)
// (hit + Touch is what a worker does: the entry the lookup compared against
// is the one it translates with, where rte_hash costs another cache miss.)
//
// Concurrency contract:
//  - Lookups (LookupBulk, Lookup, ReplyTupleInUse, entry()) are lock-free
//    and may run on any worker at any time, between two of its QSBR
//    quiescent states. A ref stays valid (its entry is not reused) until the
//    worker that obtained it reports a quiescent state.
//  - Inserts and deletes are serialised by one spinlock (write_lock_). They
//    happen only on the slow path (a flow's first packet) and in aging, never
//    for packets of established flows. Under the lock Insert re-checks both
//    tuples, so two workers racing on the first packets of one flow end up
//    sharing the entry the first one created (kExists), and a reply tuple is
//    never claimed twice (kReplyClash).
//  - Entry indices are partitioned: worker w allocates only from its own
//    slice and is the only one that expires and frees entries of that slice,
//    so free lists need no synchronisation.
//  - Publication: an entry's fields are written before its slots; slots are
//    written with single 64-bit release stores and read with acquire loads,
//    so a reader that sees a slot sees the entry's keys, flags and rewrites.
//    The reply slot is published first: once the original tuple finds the
//    entry, replies find it too. Insert finds free slots for both tuples
//    before it publishes either, so it fails (kFull) with nothing written
//    and has no rollback to do.
//  - After insertion only last_seen, state and route change, all atomics.
//    Touch stores last_seen only when the coarse tick (~1 ms) moved forward
//    and sets state bits only when one is new, so two workers handling the
//    two directions of a flow do not write its cache line per packet.
//  - Deletion (owner only): under the lock both slots are cleared with
//    atomic stores and the overflow bits along their probe paths are
//    updated; then the entry index goes on the owner's rte_rcu_qsbr defer
//    queue and returns to the free list only after every worker reported a
//    quiescent state. Slots are reused at once; entries only after the grace
//    period.
//  - Removal on request: another thread (the dataplane's control thread,
//    after a Service change: kube-proxy's UDP conntrack cleanup) never
//    deletes. It reads entries (SnapshotRacy) and posts (index, check) to the
//    owner's bounded single-producer single-consumer ring (RequestRemoval);
//    the owner drains its ring in its loop (Worker: before each graph walk)
//    and deletes each entry that is still in use and still holds the flow
//    the check names (RemovalCheck: a digest of both tuples), so a request
//    for an entry that expired and was reused meanwhile is refused. A
//    request takes effect at the owner's next loop iteration; until then
//    the flow keeps translating as before.
//
// Accepted races, and why each is safe:
//  - A reader loads a slot while the writer clears it: the load returns the
//    old word (the reader finds the entry being deleted, which stays intact
//    and keeps translating until the reader's next quiescent state) or the
//    cleared one (a miss, as if the lookup ran just after the delete).
//  - A slot is cleared and reused for another key between a reader's load
//    and its entry compare: signature and ref come from one 64-bit load, so
//    they always belong together; the entry they name is not reused before
//    the reader's grace period ends, so the full-key compare against it is
//    exact. A reader never trusts a signature without that compare.
//  - The vector signature scan reads slots with plain 16-byte loads, racing
//    with the writer's 8-byte stores (each aligned 8-byte half is read whole
//    on x86, but the pair is not one snapshot). It only chooses candidates:
//    every slot used is re-read with an atomic load and its signature
//    checked again, and a slot changed in between counts as a changed slot
//    (the two races above and below).
//  - A reader scans a bucket while a key is inserted into it or past it: it
//    may miss the new key (the lookup is ordered before the insert) but never
//    sees a half-written slot. The overflow bit is set before the slot past
//    it is published, and cleared only after the last key placed past the
//    bucket is gone, so a lookup that starts after Insert returns always
//    follows the chain to the key.
//  - A reader finds an expired entry while a new flow with the same tuple is
//    created: it translates that packet with the old entry (and its Touch
//    goes to the old entry), once, at the timeout boundary.
//  - A packet handled by another worker at the very moment the owner expires
//    an idle flow is translated by the old entry; the next packet creates a
//    new flow. This happens only at the timeout boundary.
//  - Touch and Expire race on last_seen/state (relaxed atomics): the owner
//    may expire a flow whose packet another worker just saw; that is the
//    previous race again. Touches with slightly older clocks (other workers'
//    TSC reads) never move last_seen backwards.
//  - The control thread's scan (SnapshotRacy) reads entries while their
//    owners may be creating or deleting them: a snapshot may be torn. It
//    only chooses what to request: the owner checks every request against
//    its own, exact view of the entry. A torn read can thus post a request
//    the owner refuses, or miss an entry being created at that instant;
//    the caller scans only after a grace period that follows its table
//    change, so an entry being created then was created from the new
//    tables and is not one it looks for.
//  - A packet of a flow whose removal was requested is translated by the
//    entry until its owner takes the request (the owner's next loop).
//  - last_seen is a 32-bit tick compared by signed wrap-safe difference:
//    correct as long as the owner looks at an entry at least every 2^31
//    ticks (~25 days at 1 ms); aging scans every entry far more often.
#ifndef SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_
#define SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_

#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

// One tracked flow, one cache line. The translation is derived from the keys:
// a packet of the original direction leaves as reply.Reversed(), a reply
// leaves as original.Reversed() (each only in the fields kDnat/kSnat say).
struct alignas(64) ConntrackEntry {
  enum Flags : uint8_t { kDnat = 2, kSnat = 4 };
  enum State : uint8_t { kSeenReply = 1, kFin = 2, kRst = 4 };
  // Per direction (0: original, 1: reply) incremental checksum deltas for the
  // rewrite that direction gets (one's-complement sums, precomputed by the
  // caller at creation; the table only stores them).
  struct Rewrite {
    uint16_t ip_csum_delta = 0;
    uint16_t l4_csum_delta = 0;
  };
  FlowKey original;  // as the first packet arrived
  FlowKey reply;     // the tuple replies arrive with
  Rewrite rewrite[2];
  // Per direction, an egress decision cached by the worker (opaque to the
  // table; 0 = none). Written rarely (once per table generation) by
  // whichever worker handles that direction.
  std::atomic<uint64_t> route[2]{};
  std::atomic<uint32_t> last_seen{0};  // coarse ticks (ConntrackTable::Tick)
  std::atomic<uint8_t> state{0};
  uint8_t flags = 0;  // written before the keys are visible, then constant
  uint8_t owner = 0;  // worker that created it and will expire it
  uint8_t in_use =
      0;  // owner-only aging mark (flags stay valid for readers until the grace period ends)
};
static_assert(sizeof(ConntrackEntry) == 64);

// Idle timeouts, as the kernel's nf_conntrack defaults.
struct ConntrackTimeouts {
  uint32_t tcp_established_s = 432000;  // nf_conntrack_tcp_timeout_established
  uint32_t tcp_unreplied_s = 120;       // syn_sent
  uint32_t tcp_fin_s = 120;             // fin_wait / time_wait
  uint32_t tcp_rst_s = 10;              // close
  uint32_t udp_s = 30;                  // nf_conntrack_udp_timeout
  uint32_t udp_replied_s = 120;         // nf_conntrack_udp_timeout_stream
  uint32_t icmp_s = 30;
};

class ConntrackTable {
 public:
  static constexpr uint32_t kMiss = UINT32_MAX;
  static constexpr uint32_t kReplyBit = 1u << 31;
  static constexpr uint32_t kSlotsPerBucket = 8;
  // Buckets a key may be placed in, its home bucket included.
  static constexpr uint32_t kMaxProbe = 8;

  struct Config {
    uint32_t capacity = 1 << 20;  // flows
    uint16_t workers = 1;
    rte_rcu_qsbr* qsbr = nullptr;   // workers' QSBR variable; required
    uint64_t ticks_per_second = 1;  // unit of `now` arguments (TSC Hz in workers)
    ConntrackTimeouts timeouts;
    // Per worker: removal requests that may wait for the owner (a power of
    // two; one less is usable).
    uint32_t removal_ring = 4096;
  };
  // Errors: InvalidArgument for a zero capacity/workers, no qsbr, a capacity
  // of 2^31 or more, more than 256 workers, a timeout of 2^31 ticks or
  // more, or a removal ring size that is not a power of two of at least 2;
  // ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<ConntrackTable>> Create(const Config& config);
  ~ConntrackTable();
  ConntrackTable(const ConntrackTable&) = delete;
  ConntrackTable& operator=(const ConntrackTable&) = delete;

  // refs[i] = entry index (| kReplyBit when keys[i] is a reply tuple) or kMiss.
  // n <= kBurstSize. Any worker, lock-free.
  void LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const;
  uint32_t Lookup(const FlowKey& key) const;
  ConntrackEntry& entry(uint32_t ref) { return entries_[ref & ~kReplyBit]; }
  const ConntrackEntry& entry(uint32_t ref) const { return entries_[ref & ~kReplyBit]; }
  // The entries' base, for a burst loop that keeps it in a register:
  // base[ref & ~kReplyBit] is entry(ref). Stable for the table's life.
  ConntrackEntry* entries() { return entries_; }

  // The table's coarse clock: `now` (in ticks_per_second units) shifted so
  // that one tick is about a millisecond (no shift below 2000 ticks/s).
  uint32_t Tick(uint64_t now) const { return static_cast<uint32_t>(now >> tick_shift_); }
  // One tick, in seconds (for inspection tools).
  double TickSeconds() const {
    return static_cast<double>(uint64_t{1} << tick_shift_) /
           static_cast<double>(config_.ticks_per_second);
  }

  // Records a packet of a tracked flow (any worker). Writes the entry only
  // when the coarse tick moved forward or a state bit is new.
  void Touch(uint32_t ref, uint8_t tcp_flags, uint64_t now) {
    TouchAt(entry(ref), ref, tcp_flags, Tick(now));
  }
  // The same with the entry and the tick (Tick(now)) already at hand.
  static void TouchAt(ConntrackEntry& e, uint32_t ref, uint8_t tcp_flags, uint32_t tick) {
    uint8_t bits = 0;
    if (ref & kReplyBit) bits |= ConntrackEntry::kSeenReply;
    if (tcp_flags & 0x01) bits |= ConntrackEntry::kFin;
    if (tcp_flags & 0x04) bits |= ConntrackEntry::kRst;
    if (bits != 0 && (e.state.load(std::memory_order_relaxed) & bits) != bits)
      e.state.fetch_or(bits, std::memory_order_relaxed);
    if (static_cast<int32_t>(tick - e.last_seen.load(std::memory_order_relaxed)) > 0)
      e.last_seen.store(tick, std::memory_order_relaxed);
  }

  enum class InsertStatus { kCreated, kExists, kFull, kReplyClash };
  struct InsertResult {
    InsertStatus status;
    uint32_t ref;  // kCreated: new entry; kExists: the entry another worker made
  };
  // Slow path, worker `worker` only. `proto` holds original, reply, flags and
  // rewrites. kExists: the original tuple is tracked already (ref is its
  // entry); kReplyClash: another flow receives replies on proto.reply; kFull:
  // the worker's slice has no free entry, or a tuple's probe window is full.
  InsertResult Insert(uint16_t worker, const ConntrackEntry& proto, uint64_t now);

  // Starts loading the bucket `key` would be looked up or inserted in (a
  // new flow's reply tuple, as soon as it is known: in a big table it is a
  // cache miss the insert would otherwise wait for).
  void PrefetchBucket(const FlowKey& key) const;
  // Starts loading, for writing, the entries the owner's next `count`
  // inserts will fill (at most kBurstSize).
  void PrefetchNextEntries(uint16_t worker, uint32_t count) const;

  // Whether some flow already receives replies on this tuple (any worker).
  bool ReplyTupleInUse(const FlowKey& reply) const { return Lookup(reply) != kMiss; }

  // Owner worker only: expires up to `budget` of its idle entries (scanning
  // round-robin) and reclaims what finished its grace period. Returns the
  // number expired. Stops early when the defer queue is full (entries wait
  // for their grace period faster than workers report quiescent states).
  uint32_t Expire(uint16_t worker, uint64_t now, uint32_t budget);

  // Removal on request (see the contract above).
  // What a scan by another thread reads of entry `index` (racy; may be torn).
  struct EntrySnapshot {
    bool in_use = false;
    uint8_t flags = 0;
    FlowKey original, reply;
  };
  EntrySnapshot SnapshotRacy(uint32_t index) const;
  // A digest of the flow an entry holds (both tuples).
  static uint32_t RemovalCheck(const FlowKey& original, const FlowKey& reply);
  // The worker whose slice holds entry `index`.
  uint16_t OwnerOf(uint32_t index) const;
  // One requesting thread at a time: asks the owner of entry `index` to
  // remove it if it still holds the flow `check` names. False when the
  // owner's ring is full (nothing posted; ask again later).
  bool RequestRemoval(uint32_t index, uint32_t check);
  // Owner worker: whether requests wait (cheap: two loads), and taking up
  // to `budget` of them; returns the number of entries removed. Stops early,
  // leaving the rest queued, when the defer queue is full.
  bool HasRemovalRequests(uint16_t worker) const {
    return !rte_ring_empty(slices_[worker].removals);
  }
  uint32_t TakeRemovalRequests(uint16_t worker, uint32_t budget);
  // The number of entries worker `worker`'s slice holds (what Expire scans).
  uint32_t SliceSize(uint16_t worker) const;

  // Entries in use (approximate while workers run).
  uint64_t InUse() const;
  uint32_t capacity() const { return capacity_; }
  uint32_t bucket_count() const { return bucket_mask_ + 1; }
  // Bytes of memory per tracked flow, both directions indexed: everything the
  // table allocated (rte_malloc sizes, defer queues as measured at Create)
  // divided by capacity, rounded up.
  size_t BytesPerFlow() const;

  // The CRC32 both the bucket and the signature come from (for tests that
  // need keys to collide).
  static uint32_t Hash(const FlowKey& key);
  // Buckets whose overflow bit is set (for tests; a snapshot while writers
  // run).
  uint32_t OverflowedBuckets() const;

 private:
  struct alignas(64) Bucket {
    std::atomic<uint64_t> slot[kSlotsPerBucket];
  };
  static_assert(sizeof(Bucket) == 64);
  static_assert((kMaxProbe - 1) * kSlotsPerBucket <= UINT8_MAX, "overflow_count_ is 8 bits");
  struct alignas(64) WorkerSlice {
    uint32_t begin = 0, end = 0, cursor = 0;
    uint32_t free_count = 0;  // free_ids_[begin, begin + free_count) are free
    uint32_t dq_size = 0;     // defer queue capacity
    uint32_t deferred = 0;    // indices on the defer queue
    rte_rcu_qsbr_dq* dq = nullptr;
    rte_ring* removals = nullptr;  // (index << 32 | check) requests to this owner
    std::atomic<uint64_t> in_use{0};
  };
  // Where a key sits, or a free slot for it.
  struct SlotPos {
    uint32_t bucket;
    uint32_t slot;
    uint32_t distance;  // buckets past the home bucket
  };
  static constexpr uint64_t kOverflowBit = uint64_t{1} << 63;
  static constexpr uint64_t kSigMask = uint64_t{0xffff} << 32;
  // The hash's high 16 bits with the lowest set, so never 0 (a free
  // slot's). That bit is also a bucket-index bit once there are more than
  // 2^16 buckets; below, 15 bits are left: a false candidate (one extra
  // entry compare) in about 1 of 32768 slots a lookup meets.
  static uint64_t SigBits(uint32_t hash) { return uint64_t{(hash >> 16) | 1u} << 32; }

  ConntrackTable() = default;
  uint32_t Find(const FlowKey& key, uint32_t hash) const;
  // Writer side, under write_lock_.
  bool FindFree(uint32_t hash, const SlotPos* taken, SlotPos* pos) const;
  // Find, then FindFree, sharing the look at the home bucket: the key's ref,
  // or kMiss and then *free (whether *pos holds a free slot other than
  // `taken`).
  uint32_t FindForInsert(const FlowKey& key, uint32_t hash, const SlotPos* taken, SlotPos* pos,
                         bool* free) const;
  void Publish(uint32_t hash, const SlotPos& pos, uint32_t ref);
  void Unpublish(const FlowKey& key, uint32_t ref);
  // Owner-only deletion of one entry: clears both slots and defers the index.
  // False (nothing done) when the defer queue is full. Also the hook for
  // deleting a chosen flow before it times out.
  bool Remove(uint16_t worker, uint32_t index);
  void Reclaim(uint16_t worker);
  static void FreeDeferred(void* table, void* elements, unsigned n);
  uint32_t TimeoutFor(const ConntrackEntry& e) const;

  Config config_;
  uint32_t capacity_ = 0;
  uint32_t bucket_mask_ = 0;
  uint32_t tick_shift_ = 0;
  // Idle timeouts in ticks, by ConntrackTimeouts field.
  struct {
    uint32_t tcp_established, tcp_unreplied, tcp_fin, tcp_rst, udp, udp_replied, icmp;
  } timeout_ticks_{};
  ConntrackEntry* entries_ = nullptr;
  Bucket* buckets_ = nullptr;
  // Per bucket, the keys placed past it (at most (kMaxProbe - 1) * 8 = 56);
  // writer only.
  uint8_t* overflow_count_ = nullptr;
  uint32_t* free_ids_ = nullptr;  // per slice free stacks, capacity entries
  size_t dq_bytes_ = 0;           // heap taken by the defer queues
  size_t ring_bytes_ = 0;         // heap taken by the removal rings
  rte_spinlock_t write_lock_ = RTE_SPINLOCK_INITIALIZER;
  std::unique_ptr<WorkerSlice[]> slices_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_
