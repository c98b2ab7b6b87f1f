#include "dataplane/tables/service_directory.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#include <new>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

// Bytes allocated on all DPDK heaps (what opaque DPDK objects take).
size_t HeapAllocatedBytes() {
  size_t total = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats st;
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
      total += st.heap_allocsz_bytes;
  }
  return total;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceDirectory>> ServiceDirectory::Create(const Config& config) {
  if (config.qsbr == nullptr)
    return absl::InvalidArgumentError("service directory: a QSBR variable is required");
  if (config.service_ports == 0 || config.service_ports > kMaxSlotsLimit)
    return absl::InvalidArgumentError(
        absl::StrFormat("service directory: Service port capacity must be 1..%u, got %u",
                        kMaxSlotsLimit, config.service_ports));
  if (config.keys == 0 || config.keys > kMaxSlotsLimit)
    return absl::InvalidArgumentError(absl::StrFormat(
        "service directory: key capacity must be 1..%u, got %u", kMaxSlotsLimit, config.keys));
  if (config.max_endpoints_per_set == 0 || config.max_endpoints_per_set > kMaxEndpointsLimit)
    return absl::InvalidArgumentError(
        absl::StrFormat("service directory: endpoints per set must be 1..%u, got %u",
                        kMaxEndpointsLimit, config.max_endpoints_per_set));
  if (config.defer_queue == 0)
    return absl::InvalidArgumentError("service directory: the defer queue needs room");
  static std::atomic<uint64_t> instance{0};
  const uint64_t id = instance.fetch_add(1);
  std::unique_ptr<ServiceDirectory> d(new ServiceDirectory());
  d->config_ = config;
  const size_t before = HeapAllocatedBytes();

  const std::string hash_name = absl::StrFormat("svcdir%lu", id);
  rte_hash_parameters p = {};
  p.name = hash_name.c_str();
  p.entries = config.keys < 8 ? 8 : config.keys;  // rte_hash's minimum
  p.key_len = sizeof(ServiceKey);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  d->hash_ = rte_hash_create(&p);
  if (d->hash_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("service directory: rte_hash_create for %u keys: %s", config.keys,
                        rte_strerror(rte_errno)));

  d->slots_ = static_cast<ServicePortSlot*>(rte_zmalloc_socket(
      "svcdir_slots", sizeof(ServicePortSlot) * size_t{config.service_ports}, 64, SOCKET_ID_ANY));
  d->empty_ = static_cast<EndpointSet*>(
      rte_zmalloc_socket("svcdir_empty", sizeof(EndpointSet), 64, SOCKET_ID_ANY));
  if (d->slots_ == nullptr || d->empty_ == nullptr)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "service directory: cannot allocate %u Service port slots", config.service_ports));
  for (uint32_t i = 0; i < config.service_ports; ++i) new (&d->slots_[i]) ServicePortSlot();
  new (d->empty_) EndpointSet();
  d->empty_->bytes = sizeof(EndpointSet);

  const std::string dq_name = absl::StrFormat("svcdq%lu", id);
  rte_rcu_qsbr_dq_parameters dp = {};
  dp.name = dq_name.c_str();
  dp.flags = RTE_RCU_QSBR_DQ_MT_UNSAFE;  // one writer
  dp.size = config.defer_queue;
  dp.esize = sizeof(Deferred);
  // No reclamation inside an enqueue (it would run before a change is
  // complete): the writer calls Reclaim() once it is.
  dp.trigger_reclaim_limit = UINT32_MAX;
  dp.max_reclaim_size = UINT32_MAX;
  dp.free_fn = &ServiceDirectory::FreeDeferred;
  dp.p = d.get();
  dp.v = config.qsbr;
  d->dq_ = rte_rcu_qsbr_dq_create(&dp);
  if (d->dq_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("service directory: rte_rcu_qsbr_dq_create: %s", rte_strerror(rte_errno)));
  d->fixed_bytes_ = HeapAllocatedBytes() - before;
  return d;
}

ServiceDirectory::~ServiceDirectory() {
  if (dq_ != nullptr && rte_rcu_qsbr_dq_delete(dq_) != 0) {
    rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
    rte_rcu_qsbr_dq_delete(dq_);
  }
  if (slots_ != nullptr) {
    // Live slots' sets (released ones were freed with the queue).
    std::vector<bool> released(next_unused_slot_, false);
    for (uint32_t s : free_slots_) released[s] = true;
    for (uint32_t s = 0; s < next_unused_slot_; ++s)
      if (!released[s]) FreeSet(slots_[s].endpoints.load(std::memory_order_relaxed));
  }
  if (hash_ != nullptr) rte_hash_free(hash_);
  rte_free(slots_);
  rte_free(empty_);
}

void ServiceDirectory::LookupBulk(const ServiceKey* const* keys, uint32_t n,
                                  ServiceRef* refs) const {
  uint64_t hits = 0;
  void* data[kBurstSize];
  rte_hash_lookup_bulk_data(
      hash_, reinterpret_cast<const void**>(const_cast<const ServiceKey**>(keys)), n, &hits, data);
  for (uint32_t i = 0; i < n; ++i)
    refs[i] = (hits >> i) & 1 ? static_cast<ServiceRef>(reinterpret_cast<uintptr_t>(data[i]))
                              : kNoService;
}

ServiceRef ServiceDirectory::Lookup(const ServiceKey& key) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(hash_, &key, &data) < 0) return kNoService;
  return static_cast<ServiceRef>(reinterpret_cast<uintptr_t>(data));
}

absl::StatusOr<EndpointSet*> ServiceDirectory::NewEndpointSet(uint32_t all, uint32_t local,
                                                              uint8_t flags) {
  if (all > config_.max_endpoints_per_set || local > config_.max_endpoints_per_set)
    return absl::InvalidArgumentError(
        absl::StrFormat("%u endpoints, more than the %u a Service port holds",
                        all > local ? all : local, config_.max_endpoints_per_set));
  const size_t bytes = sizeof(EndpointSet) + sizeof(Endpoint) * (size_t{all} + local);
  // Cache-line aligned: the header and the first four endpoints share a line.
  void* p = rte_malloc_socket("svc_endpoints", bytes, 64, SOCKET_ID_ANY);
  if (p == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("no DPDK memory for an endpoint set of %u endpoints", all + local));
  auto* set = new (p) EndpointSet();
  set->all_count = all;
  set->local_count = local;
  set->flags = flags;
  set->bytes = static_cast<uint32_t>(bytes);
  return set;
}

void ServiceDirectory::FreeUnpublished(EndpointSet* set) {
  if (set != nullptr && set != empty_) rte_free(set);
}

void ServiceDirectory::FreeSet(const EndpointSet* set) {
  if (set == nullptr || set == empty_) return;
  set_bytes_ -= set->bytes;
  rte_free(const_cast<EndpointSet*>(set));
}

uint32_t ServiceDirectory::AllocateSlot(const EndpointSet* set, const std::string& name) {
  if (free_slots_.empty() && next_unused_slot_ == config_.service_ports) {
    Reclaim();
    if (free_slots_.empty()) WaitAndReclaim();
  }
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = next_unused_slot_++;
    names_.emplace_back();
  }
  names_[slot] = name;
  if (set != empty_) set_bytes_ += set->bytes;
  // Published before any key names the slot (the caller adds keys after).
  slots_[slot].endpoints.store(set, std::memory_order_release);
  ++live_slots_;
  return slot;
}

void ServiceDirectory::ReleaseSlot(uint32_t slot) {
  --live_slots_;
  Defer({kFreeSlot, slot, slots_[slot].endpoints.load(std::memory_order_relaxed)});
}

void ServiceDirectory::Publish(uint32_t slot, const EndpointSet* set) {
  const EndpointSet* old = slots_[slot].endpoints.exchange(set, std::memory_order_acq_rel);
  if (old == set) return;
  if (set != empty_) set_bytes_ += set->bytes;
  if (old != empty_) Defer({kFreeSet, 0, old});
}

absl::Status ServiceDirectory::AddKey(const ServiceKey& key, ServiceRef ref) {
  const bool exists = rte_hash_lookup(hash_, &key) >= 0;
  void* data = reinterpret_cast<void*>(static_cast<uintptr_t>(ref));
  int rc = rte_hash_add_key_data(hash_, &key, data);
  if (rc == -ENOSPC && !exists && deferred_ > 0) {
    // Every position is taken by live keys or by deleted ones still in
    // their grace period: the latter are freed after one.
    WaitAndReclaim();
    rc = rte_hash_add_key_data(hash_, &key, data);
  }
  if (rc != 0)
    return absl::InternalError(
        absl::StrFormat("service directory: rte_hash_add_key_data with %u of %u keys: %s",
                        live_keys_, config_.keys, rte_strerror(-rc)));
  if (!exists) ++live_keys_;
  return absl::OkStatus();
}

void ServiceDirectory::RemoveKey(const ServiceKey& key) {
  const int32_t pos = rte_hash_del_key(hash_, &key);
  if (pos < 0) return;
  --live_keys_;
  Defer({kFreeKey, static_cast<uint32_t>(pos), nullptr});
}

void ServiceDirectory::Defer(const Deferred& d) {
  Deferred e = d;
  if (rte_rcu_qsbr_dq_enqueue(dq_, &e) == 0) {
    ++deferred_;
    return;
  }
  // Full: free what finished its grace period; failing that (more frees
  // within one grace period than the queue holds), wait for one.
  Reclaim();
  if (rte_rcu_qsbr_dq_enqueue(dq_, &e) == 0) {
    ++deferred_;
    return;
  }
  WaitAndReclaim();
  if (rte_rcu_qsbr_dq_enqueue(dq_, &e) == 0) {
    ++deferred_;
    return;
  }
  // Cannot happen (the queue was emptied); waiting and freeing at once is
  // still safe.
  rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
  ++deferred_;
  FreeDeferred(this, &e, 1);
}

// (The queue's ring is the next power of two above defer_queue: reclaim
// without a count limit.)
void ServiceDirectory::Reclaim() {
  if (deferred_ > 0) rte_rcu_qsbr_dq_reclaim(dq_, UINT32_MAX, nullptr, nullptr, nullptr);
}

void ServiceDirectory::WaitAndReclaim() {
  ++grace_waits_;
  rte_rcu_qsbr_synchronize(config_.qsbr, RTE_QSBR_THRID_INVALID);
  rte_rcu_qsbr_dq_reclaim(dq_, UINT32_MAX, nullptr, nullptr, nullptr);
}

void ServiceDirectory::ReclaimAll() {
  if (deferred_ > 0) WaitAndReclaim();
}

void ServiceDirectory::FreeDeferred(void* self, void* elements, unsigned n) {
  auto* d = static_cast<ServiceDirectory*>(self);
  const auto* e = static_cast<const Deferred*>(elements);
  for (unsigned i = 0; i < n; ++i) {
    switch (e[i].what) {
      case kFreeSet:
        d->FreeSet(e[i].set);
        break;
      case kFreeSlot:
        d->FreeSet(e[i].set);
        d->slots_[e[i].index].endpoints.store(nullptr, std::memory_order_relaxed);
        d->free_slots_.push_back(e[i].index);
        break;
      case kFreeKey:
        rte_hash_free_key_with_position(d->hash_, static_cast<int32_t>(e[i].index));
        break;
    }
    --d->deferred_;
  }
}

}  // namespace sluice
