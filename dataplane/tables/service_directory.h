// ServiceDirectory: (protocol, address, port) -> Service port -> endpoints,
// the table behind the workers' Service lookup. One long-lived table,
// changed in place one object at a time: an endpoint change publishes one
// pointer, a Service port added or removed adds or removes its keys.
//
// Shape:
//  - A lock-free rte_hash (RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
//    RTE_HASH_EXTRA_FLAGS_EXT_TABLE: every configured key fits, whatever the
//    cuckoo placement) from ServiceKey to a ServiceRef: the Service port's
//    slot index and the way the key reaches it (ServiceEntryKind). One key
//    per way a Service port is reached: each ClusterIP, externalIP and
//    LoadBalancer IP with the port, and the NodePort (address 0, matched when
//    the destination is one of the node's own addresses, as kube-proxy's
//    `-m addrtype --dst-type LOCAL`).
//  - Slots: a fixed-capacity rte_zmalloc'd array of ServicePortSlot, one per
//    Service port, referenced by 32-bit index. A slot holds an atomic
//    pointer to the port's current EndpointSet; it keeps its index for as
//    long as the Service port exists, whatever changes in it.
//  - EndpointSet: rte_malloc'd, immutable once published: the endpoints a
//    new flow may be sent to (kube-proxy's choice, made by the control side:
//    dataplane/state/endpoint_choice.h), the node-local subset and the
//    policy flags. A slot of a port without endpoints points at the
//    directory's shared empty set, never at null.
//
// Capacities (Config) are fixed at Create: Service ports (slots), keys, and
// endpoints per set (each of the two lists; 65535 by default, the 16-bit
// limit the previous table had, configurable up to kMaxEndpointsLimit).
// The writer checks them before it changes anything (CanAllocateSlot,
// key_capacity(), ...); the directory itself never truncates.
//
// Concurrency contract:
//  - One writer: the dataplane's control thread (ServiceProgrammer,
//    dataplane/state/service_programmer.h). Every non-const member except
//    the lookups is writer-only and not thread-safe.
//  - Readers: workers, lock-free, between two of their quiescent reports to
//    the QSBR variable given at Create (Worker::PollOnce reports after each
//    graph walk). A ServiceRef from LookupBulk and the EndpointSet loaded
//    through it stay valid until the reader's next quiescent report; a
//    reader must not keep either across it.
//  - Publication order (Cilium's: backends, then the slot, the frontend
//    last): a new Service port's slot gets its EndpointSet before any of its
//    keys is added; an EndpointSet is complete before the release store that
//    publishes it, and readers load it with acquire; keys are removed before
//    their slot is released.
//
// Memory reclamation: everything a reader may still hold waits one RCU
// grace period on the directory's own rte_rcu_qsbr defer queue and is freed
// by the writer afterwards, never under a reader:
//  - a replaced EndpointSet (freed with rte_free);
//  - a released slot (its last set freed, the index reused);
//  - a deleted key's slot in the hash. The hash runs in its
//    no-free-on-delete mode (what RW_CONCURRENCY_LF implies without the
//    hash's integrated RCU): rte_hash_del_key returns the key's position and
//    the writer frees it with rte_hash_free_key_with_position after the
//    grace period. Chosen over rte_hash_rcu_qsbr_add so that the three kinds
//    of memory share one queue, one reclamation point and one accounting of
//    what waits (the capacity checks count live objects; what waits is
//    reclaimed, after a wait for a grace period if need be, before a new
//    object would not fit).
//  The writer calls Reclaim() after each change it completes (the
//  ServiceProgrammer does, once its pointers are published): what finished
//  its grace period is freed, without blocking; typically the previous
//  change's leftovers. Only when the defer queue is full (more than
//  Config::defer_queue frees within one grace period, e.g. a full sync
//  removing many Service ports at once) does it wait for a grace period
//  (rte_rcu_qsbr_synchronize: microseconds while workers poll), and the
//  same when a slot or key is needed and only waiting ones are left.
//
// Accepted races, and why each is safe:
//  - A reader looks a key up while the writer adds or deletes it: rte_hash's
//    lock-free mode returns the old or the new state, never a torn entry.
//    A reader that found a key just deleted uses its slot and set until its
//    next quiescent report; both are freed only after that.
//  - A reader loads a slot's set while the writer publishes a new one: it
//    gets the old set (intact until the grace period ends) or the new one
//    (complete before the release store). A new flow's endpoint may thus
//    come from the set of an instant ago; the control side's conntrack
//    cleanup runs after a grace period so that it sees such flows too
//    (ServiceProgrammer).
//  - A key whose ref is rewritten in place (its kind changed, or one change
//    moved an address from one Service port to another) yields the old or
//    the new ref, never neither; both slots stay valid until the reader's
//    quiescent report (a released slot is reused only after a grace period).
#ifndef SLUICE_DATAPLANE_TABLES_SERVICE_DIRECTORY_H_
#define SLUICE_DATAPLANE_TABLES_SERVICE_DIRECTORY_H_

#include <rte_hash.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

struct ServiceKey {
  uint32_t ip = 0;    // host order; 0 for a NodePort
  uint16_t port = 0;  // host order
  uint8_t proto = 0;
  uint8_t pad = 0;
};
static_assert(sizeof(ServiceKey) == 8);

// One endpoint a flow may be translated to.
struct Endpoint {
  uint32_t ip = 0;
  uint16_t port = 0;
  uint16_t pad = 0;
  bool operator==(const Endpoint& o) const { return ip == o.ip && port == o.port; }
};
static_assert(sizeof(Endpoint) == 8);

// How a key reaches its Service port (kube-proxy's chain for it).
enum class ServiceEntryKind : uint8_t { kClusterIp, kNodePort, kExternalIp, kLoadBalancerIp };

// What a lookup returns: slot index << 2 | kind; kNoService for a miss.
using ServiceRef = uint32_t;
inline constexpr ServiceRef kNoService = UINT32_MAX;
inline constexpr uint32_t ServiceSlotOf(ServiceRef r) { return r >> 2; }
inline constexpr ServiceEntryKind ServiceKindOf(ServiceRef r) {
  return static_cast<ServiceEntryKind>(r & 3);
}
inline constexpr ServiceRef MakeServiceRef(uint32_t slot, ServiceEntryKind kind) {
  return slot << 2 | static_cast<uint32_t>(kind);
}

// A Service port's endpoints and policy, immutable once published: a 32-byte
// header followed by all_count + local_count Endpoints.
struct EndpointSet {
  enum Flags : uint8_t {
    // External traffic (NodePort, externalIP, LB IP) under
    // externalTrafficPolicy Cluster is masqueraded.
    kMasqueradeExternal = 1,
    // externalTrafficPolicy Local: sources outside the cluster network get
    // local endpoints only and keep their address.
    kExternalLocalOnly = 2,
    // internalTrafficPolicy Local: ClusterIP traffic goes to local endpoints.
    kInternalLocalOnly = 4,
  };
  // endpoints()[0, all_count): what traffic that may go anywhere in the
  // cluster chooses from (ready endpoints; serving-terminating ones when
  // none is ready).
  uint32_t all_count = 0;
  // endpoints()[all_count, all_count + local_count): the node-local subset,
  // chosen on its own (kube-proxy decides the fallback separately for it).
  uint32_t local_count = 0;
  uint8_t flags = 0;
  uint8_t reserved8[3] = {};
  // Room for the next issue, zero today. Both are per endpoint set, since
  // both follow the endpoints: sessionAffinity ClientIP's timeout (the
  // per-port table of client -> endpoint it needs is written by workers, so
  // it would hang off the slot, ServicePortSlot::affinity), and a Maglev
  // lookup table (e.g. 16381 endpoint indices) placed after the endpoints
  // in the same allocation, at byte offset maglev_offset from the header.
  uint32_t affinity_timeout_s = 0;
  uint32_t maglev_offset = 0;
  uint32_t maglev_size = 0;
  uint32_t bytes = 0;  // bytes of this allocation (header, endpoints, tables)
  uint32_t reserved32 = 0;

  const Endpoint* endpoints() const { return reinterpret_cast<const Endpoint*>(this + 1); }
  Endpoint* endpoints() { return reinterpret_cast<Endpoint*>(this + 1); }
};
static_assert(sizeof(EndpointSet) == 32 && alignof(EndpointSet) >= alignof(Endpoint));

// A Service port's stable object.
struct alignas(16) ServicePortSlot {
  std::atomic<const EndpointSet*> endpoints{nullptr};
  // Reserved for the next issue (the per-port session-affinity table that
  // workers write); null today.
  void* affinity = nullptr;
};
static_assert(sizeof(ServicePortSlot) == 16);

class ServiceDirectory {
 public:
  // The largest per-set endpoint count Config may ask for: what keeps an
  // EndpointSet's byte size in 32 bits with room to spare.
  static constexpr uint32_t kMaxEndpointsLimit = 1u << 24;
  // The most slots a ServiceRef can name.
  static constexpr uint32_t kMaxSlotsLimit = 1u << 29;

  struct Config {
    uint32_t service_ports = 65536;  // slots
    uint32_t keys = 131072;          // hash keys (addresses x port, NodePorts)
    // Endpoints per set, for each of the two lists (all, node-local).
    uint32_t max_endpoints_per_set = 65535;
    // Objects that may wait for their grace period before the writer waits.
    uint32_t defer_queue = 8192;
    rte_rcu_qsbr* qsbr = nullptr;  // the workers' QSBR variable; required
  };
  // Errors: InvalidArgument for a capacity of 0 or beyond the limits above,
  // or no qsbr; ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<ServiceDirectory>> Create(const Config& config);
  // Frees everything. Workers must be stopped (or offline).
  ~ServiceDirectory();
  ServiceDirectory(const ServiceDirectory&) = delete;
  ServiceDirectory& operator=(const ServiceDirectory&) = delete;

  // --- Readers (workers), lock-free ---------------------------------------
  // refs[i] = the ref keys[i] finds, or kNoService. n <= kBurstSize.
  void LookupBulk(const ServiceKey* const* keys, uint32_t n, ServiceRef* refs) const;
  ServiceRef Lookup(const ServiceKey& key) const;
  // The current endpoint set of the Service port `ref` names (acquire).
  const EndpointSet& Endpoints(ServiceRef ref) const {
    return *slots_[ServiceSlotOf(ref)].endpoints.load(std::memory_order_acquire);
  }

  // --- Writer (control thread) ---------------------------------------------
  // A new, unpublished set with room for `all` + `local` endpoints, header
  // filled in; the caller writes the endpoints, then publishes it
  // (AllocateSlot, Publish) or frees it (FreeUnpublished). Errors:
  // InvalidArgument when a count exceeds max_endpoints_per_set,
  // ResourceExhausted when DPDK memory is short.
  absl::StatusOr<EndpointSet*> NewEndpointSet(uint32_t all, uint32_t local, uint8_t flags);
  void FreeUnpublished(EndpointSet* set);
  // The shared set of a port without endpoints and flags 0 (never freed).
  const EndpointSet* empty_set() const { return empty_; }

  // Whether a slot is free or will be once what waits was reclaimed.
  bool CanAllocateSlot() const { return live_slots_ < config_.service_ports; }
  // A slot for a new Service port, pointing at `set` (published, owned by
  // the directory from now on); `name` ("ns/name:port") is kept for traces.
  // Reclaims (waiting for a grace period if need be) when only released
  // slots are left. Precondition: CanAllocateSlot().
  uint32_t AllocateSlot(const EndpointSet* set, const std::string& name);
  // Releases a slot whose keys are all gone: its index and its last set are
  // freed after a grace period.
  void ReleaseSlot(uint32_t slot);
  // Publishes `set` as slot's endpoint set (one release store); the old set
  // is freed after a grace period.
  void Publish(uint32_t slot, const EndpointSet* set);
  const EndpointSet* current(uint32_t slot) const {
    return slots_[slot].endpoints.load(std::memory_order_relaxed);
  }

  // Adds `key` -> ref, or rewrites the ref of a key already there. Reclaims
  // deleted keys' positions (waiting for a grace period if need be) when the
  // hash has no free one. Precondition: key_count() < key_capacity() for a
  // new key. Returns InternalError only if rte_hash refuses anyway.
  absl::Status AddKey(const ServiceKey& key, ServiceRef ref);
  // Deletes `key` (which must be present); its position is freed after a
  // grace period.
  void RemoveKey(const ServiceKey& key);

  // Frees what finished its grace period (never blocks); call after each
  // completed change.
  void Reclaim();
  // Waits for a grace period, then frees everything waiting (tests and
  // shutdown).
  void ReclaimAll();

  // The slot's name (control thread; traces are formatted there).
  const std::string& name(uint32_t slot) const { return names_[slot]; }
  size_t names_size() const { return names_.size(); }
  uint32_t key_count() const { return live_keys_; }
  uint32_t key_capacity() const { return config_.keys; }
  uint32_t slot_count() const { return live_slots_; }
  uint32_t slot_capacity() const { return config_.service_ports; }
  uint32_t max_endpoints_per_set() const { return config_.max_endpoints_per_set; }
  // Objects waiting for their grace period.
  uint32_t deferred() const { return deferred_; }
  // How often the writer had to wait for a grace period (queue full, or no
  // free slot or key position without waiting ones).
  uint64_t grace_waits() const { return grace_waits_; }
  rte_rcu_qsbr* qsbr() const { return config_.qsbr; }
  // DPDK heap bytes allocated at Create (hash, slots, defer queue, empty
  // set), independent of what the directory holds.
  size_t fixed_bytes() const { return fixed_bytes_; }
  // Bytes of the endpoint sets allocated (published, or replaced and
  // waiting for their grace period), as requested from rte_malloc (its
  // per-allocation header not included; bench/ measures the heap).
  size_t endpoint_set_bytes() const { return set_bytes_; }

 private:
  // What waits on the defer queue.
  struct Deferred {
    uint32_t what;   // kFreeSet, kFreeSlot, kFreeKey
    uint32_t index;  // slot index, or hash key position
    const EndpointSet* set;
  };
  static_assert(sizeof(Deferred) == 16);
  enum : uint32_t { kFreeSet, kFreeSlot, kFreeKey };

  ServiceDirectory() = default;
  void Defer(const Deferred& d);
  void WaitAndReclaim();
  void FreeSet(const EndpointSet* set);
  static void FreeDeferred(void* self, void* elements, unsigned n);

  Config config_;
  rte_hash* hash_ = nullptr;
  ServicePortSlot* slots_ = nullptr;
  EndpointSet* empty_ = nullptr;
  rte_rcu_qsbr_dq* dq_ = nullptr;
  // Writer-only bookkeeping.
  std::vector<uint32_t> free_slots_;  // reusable now (stack)
  std::vector<std::string> names_;
  uint32_t next_unused_slot_ = 0;  // slots [next_unused_slot_, capacity) never used yet
  uint32_t live_slots_ = 0, live_keys_ = 0;
  uint32_t deferred_ = 0;
  uint64_t grace_waits_ = 0;
  size_t fixed_bytes_ = 0, set_bytes_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_SERVICE_DIRECTORY_H_
