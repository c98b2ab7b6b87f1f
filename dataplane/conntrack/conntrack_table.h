// ConntrackTable: the connection tracking table behind DNAT, masquerade and
// reverse NAT. One table for the node, shared by all workers, with both
// directions of every flow indexed, so that a flow's two directions may be
// handled by different workers (no RSS or flow steering is assumed).
//
// Layout: a preallocated array of ConntrackEntry, referenced by 32-bit
// index, and one rte_hash holding two keys per entry: the original tuple and
// the reply tuple (as it arrives, after the peer swapped addresses). The
// hash value is the entry index, with kReplyBit set for the reply key.
//
// Concurrency contract:
//  - Lookups (LookupBulk, Lookup, entry()) are lock-free (rte_hash
//    RW_CONCURRENCY_LF) and may run on any worker at any time.
//  - Inserts and deletes are serialised by one spinlock. They happen only on
//    the slow path (a flow's first packet) and in aging, never for packets of
//    established flows. Under the lock Insert re-checks both tuples, so two
//    workers racing on the first packets of one flow end up sharing the
//    entry the first one created (kExists), and a reply tuple is never
//    claimed twice (kReplyClash).
//  - Entry indices are partitioned: worker w allocates only from its own
//    slice and is the only one that expires and frees entries of that slice,
//    so free lists need no synchronisation.
//  - An entry's fields are written before its keys are inserted; rte_hash's
//    release-store on insert and acquire on lookup make them visible. After
//    insertion only last_seen and state change (relaxed atomics; a reader may
//    see a slightly old value, which only shifts an expiry by one packet).
//  - Deletion: the owner removes both keys, then puts the entry and the two
//    key slots on its RCU defer queue; they are reused only after every
//    worker has reported a quiescent state, so a reader that found the entry
//    during its burst keeps a valid entry until the burst ends.
//  - Accepted race: a packet handled by another worker at the very moment
//    the owner expires an idle flow is translated by the old entry; the next
//    packet creates a new flow. This happens only at the timeout boundary.
#ifndef SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_
#define SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_

#include <rte_hash.h>
#include <rte_rcu_qsbr.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

struct ConntrackEntry {
  enum Flags : uint8_t { kDnat = 2, kSnat = 4 };
  enum State : uint8_t { kSeenReply = 1, kFin = 2, kRst = 4 };

  FlowKey original;      // as the first packet arrived
  uint32_t dnat_ip = 0;  // the original direction's destination becomes this
  uint16_t dnat_port = 0;
  uint16_t snat_port = 0;  // the original direction's source becomes this
  uint32_t snat_ip = 0;
  uint8_t flags = 0;  // written before the keys are visible, then constant
  uint8_t owner = 0;  // worker that created it and will expire it
  // Owner-only: the entry is live (aging scans it). Separate from `flags`,
  // which other workers read while an expired entry waits for its grace
  // period and must keep translating until then.
  uint8_t in_use = 0;
  std::atomic<uint8_t> state{0};
  std::atomic<uint64_t> last_seen{0};  // in the table's clock units

  // The tuple replies arrive with.
  FlowKey ReplyKey() const {
    FlowKey k;
    k.src_ip = dnat_ip;
    k.dst_ip = snat_ip;
    k.src_port = dnat_port;
    k.dst_port = snat_port;
    k.proto = original.proto;
    return k;
  }
};

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
  // Two keys per flow plus a quarter of slack and 64 must fit rte_hash's
  // 2^30 entries.
  static constexpr uint32_t kMaxCapacity = ((uint32_t{1} << 30) - 64) / 9 * 4;

  struct Config {
    uint32_t capacity = 1 << 20;  // flows
    uint16_t workers = 1;
    rte_rcu_qsbr* qsbr = nullptr;   // workers' QSBR variable; required
    uint64_t ticks_per_second = 1;  // unit of `now` arguments (TSC Hz in workers)
    ConntrackTimeouts timeouts;
  };
  // Errors: InvalidArgument for a zero capacity/workers or no qsbr, more
  // than 256 workers or a capacity above kMaxCapacity,
  // ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<ConntrackTable>> Create(const Config& config);
  ~ConntrackTable();
  ConntrackTable(const ConntrackTable&) = delete;
  ConntrackTable& operator=(const ConntrackTable&) = delete;

  // refs[i] = entry index (| kReplyBit when keys[i] is a reply tuple) or kMiss.
  // n <= kBurstSize.
  void LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const;
  uint32_t Lookup(const FlowKey& key) const;
  ConntrackEntry& entry(uint32_t ref) { return entries_[ref & ~kReplyBit]; }
  const ConntrackEntry& entry(uint32_t ref) const { return entries_[ref & ~kReplyBit]; }

  // Records a packet of a tracked flow (any worker).
  void Touch(uint32_t ref, uint8_t tcp_flags, uint64_t now) {
    ConntrackEntry& e = entry(ref);
    uint8_t bits = 0;
    if (ref & kReplyBit) bits |= ConntrackEntry::kSeenReply;
    if (tcp_flags & 0x01) bits |= ConntrackEntry::kFin;
    if (tcp_flags & 0x04) bits |= ConntrackEntry::kRst;
    if (bits != 0 && (e.state.load(std::memory_order_relaxed) & bits) != bits)
      e.state.fetch_or(bits, std::memory_order_relaxed);
    e.last_seen.store(now, std::memory_order_relaxed);
  }

  enum class InsertStatus { kCreated, kExists, kFull, kReplyClash };
  struct InsertResult {
    InsertStatus status;
    uint32_t ref;  // kCreated: new entry; kExists: the entry another worker made
  };
  // Slow path, worker `worker` only. `proto` holds original and translations.
  InsertResult Insert(uint16_t worker, const ConntrackEntry& proto, uint64_t now);

  // Whether some flow already receives replies on this tuple.
  bool ReplyTupleInUse(const FlowKey& reply) const { return Lookup(reply) != kMiss; }

  // Owner worker only: expires up to `budget` of its idle entries (scanning
  // round-robin) and reclaims what finished its grace period. Returns the
  // number expired.
  uint32_t Expire(uint16_t worker, uint64_t now, uint32_t budget);

  // Entries in use (approximate while workers run).
  uint64_t InUse() const;
  uint32_t capacity() const { return capacity_; }
  // Bytes of memory per tracked flow, both directions indexed.
  size_t BytesPerFlow() const;

 private:
  struct DeferredFree {
    uint32_t index;
    int32_t pos_original;
    int32_t pos_reply;
    uint32_t worker;
  };
  struct alignas(64) WorkerSlice {
    std::vector<uint32_t> free_list;  // indices ready for reuse
    rte_rcu_qsbr_dq* dq = nullptr;
    uint32_t begin = 0, end = 0, cursor = 0;
    std::atomic<uint64_t> in_use{0};
  };
  ConntrackTable() = default;
  static void FreeDeferred(void* table, void* elements, unsigned n);
  void Defer(uint16_t worker, DeferredFree d);
  uint64_t TimeoutFor(const ConntrackEntry& e) const;
  void Remove(uint16_t worker, uint32_t index);

  Config config_;
  uint32_t capacity_ = 0;
  ConntrackEntry* entries_ = nullptr;
  rte_hash* hash_ = nullptr;
  rte_spinlock_t write_lock_ = RTE_SPINLOCK_INITIALIZER;
  std::unique_ptr<WorkerSlice[]> slices_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_CONNTRACK_CONNTRACK_TABLE_H_
