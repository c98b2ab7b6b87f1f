#include "bench/dataplane/conntrack/rte_hash_conntrack.h"

#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include <string>

#include "absl/strings/str_format.h"

namespace sluice::bench {

std::unique_ptr<RteHashConntrack> RteHashConntrack::Create(uint32_t capacity) {
  static std::atomic<uint64_t> instance{0};
  std::unique_ptr<RteHashConntrack> t(new RteHashConntrack());
  t->capacity_ = capacity;
  t->entries_ = static_cast<Entry*>(
      rte_zmalloc_socket("ct_rte_hash", sizeof(Entry) * size_t{capacity}, 64, SOCKET_ID_ANY));
  if (t->entries_ == nullptr) return nullptr;
  for (uint32_t i = 0; i < capacity; ++i) new (&t->entries_[i]) Entry();
  const std::string name = absl::StrFormat("ctrh%lu", instance.fetch_add(1));
  rte_hash_parameters p = {};
  p.name = name.c_str();
  // Two keys per flow, plus slack so that cuckoo placement rarely fails
  // before the entry pool runs out.
  p.entries = capacity * 2 + capacity / 4 + 64;
  p.key_len = sizeof(FlowKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr) return nullptr;
  t->free_list_.reserve(capacity);
  for (uint32_t i = capacity; i > 0; --i) t->free_list_.push_back(i - 1);
  return t;
}

RteHashConntrack::~RteHashConntrack() {
  if (hash_ != nullptr) rte_hash_free(hash_);
  rte_free(entries_);
}

void RteHashConntrack::LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const {
  uint64_t hits = 0;
  void* data[kBurstSize];
  rte_hash_lookup_bulk_data(
      hash_, reinterpret_cast<const void**>(const_cast<const FlowKey**>(keys)), n, &hits, data);
  for (uint32_t i = 0; i < n; ++i)
    refs[i] = (hits >> i) & 1 ? static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data[i])) : kMiss;
}

uint32_t RteHashConntrack::Lookup(const FlowKey& key) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &key, &data) < 0) return kMiss;
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
}

uint32_t RteHashConntrack::Insert(const FlowKey& original, const FlowKey& reply, uint64_t now) {
  if (free_list_.empty()) return kMiss;
  const uint32_t index = free_list_.back();
  Entry& e = entries_[index];
  e.original = original;
  e.dnat_ip = reply.src_ip;
  e.dnat_port = reply.src_port;
  e.snat_ip = reply.dst_ip;
  e.snat_port = reply.dst_port;
  e.state.store(0, std::memory_order_relaxed);
  e.last_seen.store(now, std::memory_order_relaxed);
  rte_spinlock_lock(&write_lock_);
  if (rte_hash_lookup(hash_, &original) >= 0 || rte_hash_lookup(hash_, &reply) >= 0 ||
      rte_hash_add_key_data(hash_, &reply, reinterpret_cast<void*>(uintptr_t{index | kReplyBit})) !=
          0) {
    rte_spinlock_unlock(&write_lock_);
    return kMiss;
  }
  if (rte_hash_add_key_data(hash_, &original, reinterpret_cast<void*>(uintptr_t{index})) != 0) {
    const int32_t pos = rte_hash_del_key(hash_, &reply);
    if (pos >= 0) rte_hash_free_key_with_position(hash_, pos);
    rte_spinlock_unlock(&write_lock_);
    return kMiss;
  }
  rte_spinlock_unlock(&write_lock_);
  free_list_.pop_back();
  e.in_use = 1;
  return index;
}

void RteHashConntrack::Remove(uint32_t index) {
  Entry& e = entries_[index];
  FlowKey reply;
  reply.src_ip = e.dnat_ip;
  reply.dst_ip = e.snat_ip;
  reply.src_port = e.dnat_port;
  reply.dst_port = e.snat_port;
  reply.proto = e.original.proto;
  rte_spinlock_lock(&write_lock_);
  const int32_t a = rte_hash_del_key(hash_, &e.original);
  const int32_t b = rte_hash_del_key(hash_, &reply);
  // With RW_CONCURRENCY_LF, deleted key slots return only when freed.
  if (a >= 0) rte_hash_free_key_with_position(hash_, a);
  if (b >= 0) rte_hash_free_key_with_position(hash_, b);
  rte_spinlock_unlock(&write_lock_);
  e.in_use = 0;
  free_list_.push_back(index);
}

}  // namespace sluice::bench
