#include "dataplane/conntrack/conntrack_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice {

absl::StatusOr<std::unique_ptr<ConntrackTable>> ConntrackTable::Create(const Config& config) {
  if (config.capacity == 0 || config.workers == 0 || config.qsbr == nullptr)
    return absl::InvalidArgumentError("conntrack: capacity, workers and qsbr are required");
  // An entry's owner is 8 bits; its index must stay clear of kReplyBit, and
  // the hash (two keys per flow and slack) within rte_hash's 2^30 entries.
  if (config.workers > 256)
    return absl::InvalidArgumentError(absl::StrFormat(
        "conntrack: %u workers, but an entry's owner field holds at most 256", config.workers));
  if (config.capacity > kMaxCapacity)
    return absl::InvalidArgumentError(absl::StrFormat(
        "conntrack: capacity %u is above the %u flows the connection hash can index",
        config.capacity, kMaxCapacity));
  static std::atomic<uint64_t> instance{0};
  const uint64_t id = instance.fetch_add(1);
  std::unique_ptr<ConntrackTable> t(new ConntrackTable());
  t->config_ = config;
  t->capacity_ = config.capacity;
  t->entries_ = static_cast<ConntrackEntry*>(
      rte_zmalloc_socket("conntrack", sizeof(ConntrackEntry) * config.capacity, 64, SOCKET_ID_ANY));
  if (t->entries_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("conntrack: cannot allocate %u entries (%zu bytes)", config.capacity,
                        sizeof(ConntrackEntry) * config.capacity));
  for (uint32_t i = 0; i < config.capacity; ++i) new (&t->entries_[i]) ConntrackEntry();

  const std::string name = absl::StrFormat("ct%lu", id);
  rte_hash_parameters p = {};
  p.name = name.c_str();
  // Two keys per flow, plus slack so that cuckoo placement rarely fails
  // before the entry pool runs out.
  p.entries = config.capacity * 2 + config.capacity / 4 + 64;
  p.key_len = sizeof(FlowKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  // Lock-free readers; we serialise writers ourselves (write_lock_), so the
  // hash is single-writer from its point of view.
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
  t->hash_ = rte_hash_create(&p);
  if (t->hash_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("conntrack: rte_hash_create: %s", rte_strerror(rte_errno)));

  t->slices_.reset(new WorkerSlice[config.workers]);
  const uint32_t per = config.capacity / config.workers;
  for (uint16_t w = 0; w < config.workers; ++w) {
    WorkerSlice& s = t->slices_[w];
    s.begin = w * per;
    s.end = (w + 1 == config.workers) ? config.capacity : s.begin + per;
    s.cursor = s.begin;
    s.free_list.reserve(s.end - s.begin);
    for (uint32_t i = s.end; i > s.begin; --i) s.free_list.push_back(i - 1);
    const std::string dq_name = absl::StrFormat("ctdq%lu_%u", id, w);
    rte_rcu_qsbr_dq_parameters dp = {};
    dp.name = dq_name.c_str();
    dp.flags = RTE_RCU_QSBR_DQ_MT_UNSAFE;  // only the owner worker uses it
    // Every entry of the slice fits at once, so enqueue never fails.
    dp.size = s.end - s.begin + 1;
    dp.esize = sizeof(DeferredFree);
    dp.trigger_reclaim_limit = 0;
    dp.max_reclaim_size = 64;
    dp.free_fn = &ConntrackTable::FreeDeferred;
    dp.p = t.get();
    dp.v = config.qsbr;
    s.dq = rte_rcu_qsbr_dq_create(&dp);
    if (s.dq == nullptr)
      return absl::ResourceExhaustedError(
          absl::StrFormat("conntrack: rte_rcu_qsbr_dq_create: %s", rte_strerror(rte_errno)));
  }
  return t;
}

ConntrackTable::~ConntrackTable() {
  if (slices_ != nullptr) {
    for (uint16_t w = 0; w < config_.workers; ++w) {
      if (slices_[w].dq == nullptr) continue;
      // Pending frees need a grace period first (workers are stopped by now).
      if (rte_rcu_qsbr_dq_delete(slices_[w].dq) != 0) {
        rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
        rte_rcu_qsbr_dq_delete(slices_[w].dq);
      }
    }
  }
  if (hash_ != nullptr) rte_hash_free(hash_);
  if (entries_ != nullptr) rte_free(entries_);
}

void ConntrackTable::LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const {
  uint64_t hits = 0;
  void* data[kBurstSize];
  rte_hash_lookup_bulk_data(
      hash_, reinterpret_cast<const void**>(const_cast<const FlowKey**>(keys)), n, &hits, data);
  for (uint32_t i = 0; i < n; ++i)
    refs[i] = (hits >> i) & 1 ? static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data[i])) : kMiss;
}

uint32_t ConntrackTable::Lookup(const FlowKey& key) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &key, &data) < 0) return kMiss;
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
}

ConntrackTable::InsertResult ConntrackTable::Insert(uint16_t worker, const ConntrackEntry& proto,
                                                    uint64_t now) {
  WorkerSlice& s = slices_[worker];
  if (s.free_list.empty()) {
    // Give finished grace periods a chance before declaring the table full.
    rte_rcu_qsbr_dq_reclaim(s.dq, 64, nullptr, nullptr, nullptr);
    if (s.free_list.empty()) return {InsertStatus::kFull, kMiss};
  }
  const FlowKey reply = proto.ReplyKey();
  const uint32_t index = s.free_list.back();
  ConntrackEntry& e = entries_[index];
  e.original = proto.original;
  e.dnat_ip = proto.dnat_ip;
  e.dnat_port = proto.dnat_port;
  e.snat_ip = proto.snat_ip;
  e.snat_port = proto.snat_port;
  e.flags = proto.flags;
  e.owner = static_cast<uint8_t>(worker);
  e.state.store(0, std::memory_order_relaxed);
  e.last_seen.store(now, std::memory_order_relaxed);

  rte_spinlock_lock(&write_lock_);
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &proto.original, &data) >= 0) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kExists, static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data))};
  }
  if (rte_hash_lookup(hash_, &reply) >= 0) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kReplyClash, kMiss};
  }
  // Reply key first: once the original key is visible, replies must already
  // find the entry.
  if (rte_hash_add_key_data(hash_, &reply, reinterpret_cast<void*>(uintptr_t{index | kReplyBit})) !=
      0) {
    rte_spinlock_unlock(&write_lock_);
    return {InsertStatus::kFull, kMiss};
  }
  if (rte_hash_add_key_data(hash_, &proto.original, reinterpret_cast<void*>(uintptr_t{index})) !=
      0) {
    // Roll back. No reader can hold the reply key's slot yet in a way that
    // matters: the entry was never reachable by its original tuple, and a
    // reply arriving now would be a reply to a flow that does not exist.
    // The slot is still freed through the defer queue, and the entry keeps
    // its fields until then for a reader that found the reply key.
    const int32_t pos = rte_hash_del_key(hash_, &reply);
    rte_spinlock_unlock(&write_lock_);
    s.free_list.pop_back();
    Defer(worker, DeferredFree{index, -1, pos, worker});
    return {InsertStatus::kFull, kMiss};
  }
  rte_spinlock_unlock(&write_lock_);
  s.free_list.pop_back();
  e.in_use = 1;
  s.in_use.fetch_add(1, std::memory_order_relaxed);
  return {InsertStatus::kCreated, index};
}

uint64_t ConntrackTable::TimeoutFor(const ConntrackEntry& e) const {
  const ConntrackTimeouts& t = config_.timeouts;
  const uint8_t st = e.state.load(std::memory_order_relaxed);
  uint32_t seconds;
  switch (e.original.proto) {
    case kProtoTcp:
      if (st & ConntrackEntry::kRst)
        seconds = t.tcp_rst_s;
      else if (st & ConntrackEntry::kFin)
        seconds = t.tcp_fin_s;
      else if (st & ConntrackEntry::kSeenReply)
        seconds = t.tcp_established_s;
      else
        seconds = t.tcp_unreplied_s;
      break;
    case kProtoUdp:
      seconds = (st & ConntrackEntry::kSeenReply) ? t.udp_replied_s : t.udp_s;
      break;
    default:
      seconds = t.icmp_s;
  }
  return uint64_t{seconds} * config_.ticks_per_second;
}

void ConntrackTable::Remove(uint16_t worker, uint32_t index) {
  ConntrackEntry& e = entries_[index];
  const FlowKey reply = e.ReplyKey();
  rte_spinlock_lock(&write_lock_);
  const int32_t pos_original = rte_hash_del_key(hash_, &e.original);
  const int32_t pos_reply = rte_hash_del_key(hash_, &reply);
  rte_spinlock_unlock(&write_lock_);
  // Readers may still use the entry until the grace period ends, so its
  // translation stays as it is; only the owner's aging mark goes.
  e.in_use = 0;
  Defer(worker, DeferredFree{index, pos_original, pos_reply, worker});
  slices_[worker].in_use.fetch_sub(1, std::memory_order_relaxed);
}

void ConntrackTable::Defer(uint16_t worker, DeferredFree d) {
  // The queue holds the whole slice, so this cannot fail; if it ever did,
  // waiting for the grace period here and freeing at once is still safe.
  if (rte_rcu_qsbr_dq_enqueue(slices_[worker].dq, &d) != 0) {
    rte_rcu_qsbr_synchronize(config_.qsbr, worker);
    FreeDeferred(this, &d, 1);
  }
}

void ConntrackTable::FreeDeferred(void* table, void* elements, unsigned n) {
  auto* self = static_cast<ConntrackTable*>(table);
  auto* d = static_cast<DeferredFree*>(elements);
  for (unsigned i = 0; i < n; ++i) {
    rte_spinlock_lock(&self->write_lock_);
    if (d[i].pos_original >= 0) rte_hash_free_key_with_position(self->hash_, d[i].pos_original);
    if (d[i].pos_reply >= 0) rte_hash_free_key_with_position(self->hash_, d[i].pos_reply);
    rte_spinlock_unlock(&self->write_lock_);
    self->slices_[d[i].worker].free_list.push_back(d[i].index);
  }
}

uint32_t ConntrackTable::Expire(uint16_t worker, uint64_t now, uint32_t budget) {
  WorkerSlice& s = slices_[worker];
  rte_rcu_qsbr_dq_reclaim(s.dq, 64, nullptr, nullptr, nullptr);
  uint32_t expired = 0;
  const uint32_t span = s.end - s.begin;
  for (uint32_t n = 0; n < budget && n < span; ++n) {
    const uint32_t i = s.cursor;
    s.cursor = (s.cursor + 1 == s.end) ? s.begin : s.cursor + 1;
    ConntrackEntry& e = entries_[i];
    if (!e.in_use) continue;
    const uint64_t last = e.last_seen.load(std::memory_order_relaxed);
    if (now > last && now - last > TimeoutFor(e)) {
      Remove(worker, i);
      ++expired;
    }
  }
  return expired;
}

uint64_t ConntrackTable::InUse() const {
  uint64_t n = 0;
  for (uint16_t w = 0; w < config_.workers; ++w)
    n += slices_[w].in_use.load(std::memory_order_relaxed);
  return n;
}

size_t ConntrackTable::BytesPerFlow() const {
  // Entry + two rte_hash keys (key store slot: key + data pointer, rounded
  // to 16 bytes) + two bucket slots (signature + key index, ~6 bytes, at the
  // table's provisioned load) + the free-list and defer-queue slots.
  const size_t key_slot = ((sizeof(FlowKey) + sizeof(void*) + 15) / 16) * 16;
  const double hash_slots_per_flow =
      static_cast<double>(config_.capacity * 2 + config_.capacity / 4 + 64) / config_.capacity;
  return sizeof(ConntrackEntry) + static_cast<size_t>(hash_slots_per_flow * (key_slot + 8)) +
         sizeof(uint32_t) + sizeof(DeferredFree);
}

}  // namespace sluice
