// Builds the workers' tables from a ClusterModel: a network spec (node
// addressing, flannel's leases) for the next TableSet generation, the static neighbour set, and a
// full sync of the Services (their ports and endpoint sets as the socket
// protocol carries them, control/model_messages.h, applied through the
// dataplane's ServiceProgrammer exactly as a sync from sluice-control would
// be), and applies a reload all or nothing.
//
// Runs on the control side only. A reload is prepared first (the
// network spec built and checked against the subnet map, the static neighbour set validated against the
// NeighborTable, the Service sync validated and its endpoint sets built; no
// worker can see any of it) and only then committed; a preparation that
// fails changes nothing, and a commit cannot fail. An unchanged Service port
// keeps its directory slot, its endpoint set and its flows across reloads.
//
// Counts and values that do not fit the tables' fields are rejected, never
// truncated: more endpoints for one Service port than the ServiceDirectory's
// sets hold (65535 by default), more Service ports or keys than it holds, a
// VNI beyond VXLAN's 24 bits, a prefix length above 32, more leases than the
// subnet map can index. Errors name the object and field: as the cluster
// file spells them for the node and the leases, as the protocol names them
// for Services ("Service default/web:http/TCP: endpoints[3].ip: ...").
#ifndef SLUICE_CONTROL_TABLE_BUILDER_H_
#define SLUICE_CONTROL_TABLE_BUILDER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"
#include "dataplane/state/service_programmer.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// The node view and the subnet map's leases only. Errors:
// FailedPrecondition when the model lacks this node's lease; InvalidArgument
// when a count or value does not fit (see above).
absl::StatusOr<NetworkSpec> BuildNetworkSpec(const ClusterModel& model);

// The cluster file's node.neighbors as the neighbour table takes them.
std::vector<StaticNeighbor> StaticNeighborsOf(const ClusterModel& model);

// A reload built and checked, not applied yet.
struct PreparedReload {
  NetworkSpec network;  // validated against the publisher's subnet map
  std::vector<StaticNeighbor> static_neighbors;  // validated against the table
  std::optional<ServiceProgrammer::PreparedSync> services;
};
// Errors: BuildNetworkSpec's and TablePublisher::Validate's; ValidateStatic's for node.neighbors (e.g.
// ResourceExhausted for more than the table's static capacity), prefixed
// with "node: neighbors: "; ServiceProgrammer::PrepareSync's for the
// Services (e.g. InvalidArgument when two Service ports claim the same
// address and port, naming both).
absl::StatusOr<PreparedReload> PrepareReload(const ClusterModel& model,
                                             const TablePublisher& publisher,
                                             const NeighborTable& neighbors,
                                             ServiceProgrammer& services);
// Makes the static neighbour set exactly the prepared one, publishes the
// network (the subnet map changed per lease, then one grace period), then commits the Service sync. Control thread only, with
// nothing else changing the static set or the Services in between, so the
// validation still holds and this does not fail; the errors, InternalError
// from ReplaceStatic (the generation is then not published) or from
// CommitSync, would mean broken capacity accounting.
absl::Status CommitReload(PreparedReload reload, NeighborTable& neighbors,
                          TablePublisher& publisher, ServiceProgrammer& services);

}  // namespace sluice

#endif  // SLUICE_CONTROL_TABLE_BUILDER_H_
