// RteHashConntrack: the conntrack table as it was before ConntrackTable got
// its own buckets, kept only as the baseline its benchmarks compare against
// (bench/dataplane/stage_bench.cc, BM_Conntrack*<RteHashConntrack>).
//
// A preallocated array of 40-byte entries referenced by 32-bit index, and
// one rte_hash (CRC hash, RW_CONCURRENCY_LF) holding two keys per flow: the
// original tuple (data = index) and the reply tuple (data = index |
// kReplyBit). Inserts re-check both tuples under a spinlock, then add the
// reply key before the original, as the production table did.
//
// Concurrency: lookups are lock-free; Insert and Remove are for one thread
// (benchmarks only): Remove frees entries and key slots at once, with no
// grace period.
#ifndef SLUICE_BENCH_DATAPLANE_CONNTRACK_RTE_HASH_CONNTRACK_H_
#define SLUICE_BENCH_DATAPLANE_CONNTRACK_RTE_HASH_CONNTRACK_H_

#include <rte_hash.h>
#include <rte_spinlock.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/common/types.h"

namespace sluice::bench {

class RteHashConntrack {
 public:
  static constexpr uint32_t kMiss = UINT32_MAX;
  static constexpr uint32_t kReplyBit = 1u << 31;

  // The previous ConntrackEntry, field for field.
  struct Entry {
    FlowKey original;
    uint32_t dnat_ip = 0;
    uint16_t dnat_port = 0;
    uint16_t snat_port = 0;
    uint32_t snat_ip = 0;
    uint8_t flags = 0;
    uint8_t owner = 0;
    uint8_t in_use = 0;
    std::atomic<uint8_t> state{0};
    std::atomic<uint64_t> last_seen{0};
  };

  // nullptr when DPDK memory is short.
  static std::unique_ptr<RteHashConntrack> Create(uint32_t capacity);
  ~RteHashConntrack();
  RteHashConntrack(const RteHashConntrack&) = delete;
  RteHashConntrack& operator=(const RteHashConntrack&) = delete;

  // refs[i] = entry index (| kReplyBit for a reply tuple) or kMiss; n <= kBurstSize.
  void LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const;
  uint32_t Lookup(const FlowKey& key) const;
  Entry& entry(uint32_t ref) { return entries_[ref & ~kReplyBit]; }

  // Tracks original/reply (reply = the tuple replies arrive with, which must
  // be `original` reversed with the translated fields). The entry index, or
  // kMiss when the flow exists, the reply tuple is taken or the table is full.
  uint32_t Insert(const FlowKey& original, const FlowKey& reply, uint64_t now);
  // Forgets an entry at once (no reader may hold it).
  void Remove(uint32_t index);

 private:
  RteHashConntrack() = default;
  uint32_t capacity_ = 0;
  Entry* entries_ = nullptr;
  rte_hash* hash_ = nullptr;
  std::vector<uint32_t> free_list_;
  rte_spinlock_t write_lock_ = RTE_SPINLOCK_INITIALIZER;
};

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_DATAPLANE_CONNTRACK_RTE_HASH_CONNTRACK_H_
