// ServiceTable: (protocol, address, port) -> Service port and its endpoints.
//
// One entry per way a Service port is reached: its ClusterIP, each
// externalIP and LoadBalancer IP, and its NodePort (stored with address 0 and
// matched when the destination is one of the node's own addresses, as
// kube-proxy's `-m addrtype --dst-type LOCAL` does).
//
// Concurrency: immutable once built. The control side builds a new table
// for every generation (TableSet) and workers read it lock-free; lookups are
// rte_hash reads with no writer, so no RW concurrency flag is needed.
// Memory: freed with its TableSet after an RCU grace period.
#ifndef SLUICE_DATAPLANE_TABLES_SERVICE_TABLE_H_
#define SLUICE_DATAPLANE_TABLES_SERVICE_TABLE_H_

#include <rte_hash.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

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

struct Endpoint {
  uint32_t ip = 0;
  uint16_t port = 0;
  uint16_t pad = 0;
};

enum class ServiceEntryKind : uint8_t { kClusterIp, kNodePort, kExternalIp, kLoadBalancerIp };

// What a packet that matched a ServiceKey must get.
struct ServiceEntry {
  // The most endpoints (and local endpoints) one entry can refer to: the
  // counts below are 16 bits. The table builder refuses more.
  static constexpr uint32_t kMaxEndpoints = 0xffff;
  // Endpoints to choose from for traffic that may go anywhere in the cluster
  // (ready ones; serving-terminating ones when none is ready).
  uint32_t endpoints_begin = 0;
  uint16_t endpoints_count = 0;
  // Node-local subset, used for external traffic under
  // externalTrafficPolicy Local and for internalTrafficPolicy Local.
  uint16_t local_count = 0;
  uint32_t local_begin = 0;
  ServiceEntryKind kind = ServiceEntryKind::kClusterIp;
  // External traffic (NodePort/externalIP/LB, externalTrafficPolicy Cluster)
  // is masqueraded.
  bool masquerade_external = false;
  // externalTrafficPolicy Local: sources outside the cluster network get
  // local endpoints only and keep their address.
  bool external_local_only = false;
  // internalTrafficPolicy Local: ClusterIP traffic goes to local endpoints only.
  bool internal_local_only = false;
  uint32_t name_index = 0;  // into ServiceTable::names(), for traces
};
static_assert(ServiceEntry::kMaxEndpoints ==
                  std::numeric_limits<decltype(ServiceEntry::endpoints_count)>::max() &&
              ServiceEntry::kMaxEndpoints ==
                  std::numeric_limits<decltype(ServiceEntry::local_count)>::max());

class ServiceTable {
 public:
  ~ServiceTable();
  ServiceTable(const ServiceTable&) = delete;
  ServiceTable& operator=(const ServiceTable&) = delete;

  struct Builder {
    std::vector<std::pair<ServiceKey, ServiceEntry>> entries;
    std::vector<Endpoint> endpoints;
    std::vector<std::string> names;  // "ns/name:port"
  };
  // Builds the hash. Errors: InvalidArgument on duplicate keys,
  // ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<ServiceTable>> Build(Builder builder, uint64_t generation);

  // Bulk lookup of n <= kBurstSize keys: entries[i] is the match or nullptr.
  void LookupBulk(const ServiceKey* const* keys, uint32_t n, const ServiceEntry** entries) const;
  const ServiceEntry* Lookup(const ServiceKey& key) const;

  const Endpoint& endpoint(uint32_t i) const { return endpoints_[i]; }
  const std::string& name(uint32_t i) const { return names_[i]; }
  size_t names_size() const { return names_.size(); }
  size_t size() const { return entries_.size(); }

 private:
  ServiceTable() = default;
  rte_hash* hash_ = nullptr;
  std::vector<ServiceEntry> entries_;
  std::vector<Endpoint> endpoints_;
  std::vector<std::string> names_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_SERVICE_TABLE_H_
