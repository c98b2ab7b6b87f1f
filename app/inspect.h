// What sluicectl shows, as JSON documents made by the dataplane's control
// thread from its live tables (answers to api::Show):
//   peers      node addressing and flannel's subnet map (ip route, bridge fdb)
//   conntrack  tracked flows with filters (conntrack -L)
//   stages     the worker graph's per-node statistics
//   services   Service ports, their addresses and chosen endpoints
//   neighbors  the neighbour table (ip neigh)
// (the services document, counters and status come from their owners.)
//
// Concurrency: control thread only. Conntrack entries are read while
// workers may create, touch or expire them: each field is read once
// (relaxed for the atomics), so an entry changing under the read may show
// one of its two versions or be skipped as free; the listing is a snapshot
// for people, never an input to the dataplane.
#ifndef SLUICE_APP_INSPECT_H_
#define SLUICE_APP_INSPECT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/graph/nodes.h"
#include "dataplane/state/service_programmer.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

nlohmann::json PeersJson(const TableSet& tables);

struct ConntrackFilter {
  uint8_t protocol = 0;  // 0: any
  uint32_t address = 0;  // 0: any; matches any address of either tuple
  uint16_t port = 0;     // 0: any; matches any port of either tuple
  uint32_t limit = 1000;
};
// {"flows": [...], "matched": N, "shown": M, "in_use": K}: each flow with
// both tuples, its translation flags, TCP state bits, idle seconds and owner.
nlohmann::json ConntrackJson(const ConntrackTable& table, const ConntrackFilter& filter,
                             uint64_t now);

nlohmann::json StagesJson(const std::vector<NodeStats>& stats);

// {"neighbors": [...], "ports": [...], "static": {...}, "reachable_seconds",
// "stale_seconds"}: every entry (port, ip, mac, static, state PERMANENT /
// REACHABLE / STALE, and for learned ones confirmed_seconds_ago), each
// port's learned count and quota, the statics' count and capacity. `now`
// in the table's ticks (TSC in sluice-node). Counts include entries removed
// and waiting for their grace period, as the table's own counts do.
nlohmann::json NeighborsJson(const NeighborTable& table, uint64_t now);

// {"services": [...]}: each Service port with its addresses (ClusterIPs,
// NodePort, externalIPs, LoadBalancer IPs) and the endpoints new flows
// choose from (cluster-wide, and the node-local subset).
// With `address` or `port` (0: any), only the Service ports holding a key
// with them (ServiceProgrammer::View).
nlohmann::json ServicesJson(const ServiceProgrammer& programmer, uint32_t address = 0,
                            uint16_t port = 0);

}  // namespace sluice

#endif  // SLUICE_APP_INSPECT_H_
