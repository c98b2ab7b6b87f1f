// Builds the workers' tables from a ClusterModel: one complete TableSet
// generation (node addressing, Services with their endpoints, flannel's
// subnet map) and the static neighbour set, and applies a reload all or
// nothing.
//
// Runs on the control side only. A reload is prepared first (every table
// built, the static neighbour set validated against the NeighborTable; no
// worker can see any of it) and only then committed; a preparation that
// fails changes nothing, and a commit cannot fail.
//
// Counts and values that do not fit the tables' fields are rejected, never
// truncated: more endpoints for one Service port than ServiceEntry's 16-bit
// counts hold, a VNI beyond VXLAN's 24 bits, a prefix length above 32, more
// leases than the subnet map can index. Errors name the object and field as
// the cluster file spells them.
#ifndef SLUICE_CONTROL_TABLE_BUILDER_H_
#define SLUICE_CONTROL_TABLE_BUILDER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// Errors: FailedPrecondition when the model lacks this node's lease;
// InvalidArgument when two Services claim the same address and port, or a
// count or value does not fit (see above); ResourceExhausted when DPDK
// memory is short.
absl::StatusOr<std::unique_ptr<TableSet>> BuildTableSet(const ClusterModel& model,
                                                        uint64_t generation);

// The cluster file's node.neighbors as the neighbour table takes them.
std::vector<StaticNeighbor> StaticNeighborsOf(const ClusterModel& model);

// A reload built and checked, not applied yet.
struct PreparedReload {
  std::unique_ptr<TableSet> tables;
  std::vector<StaticNeighbor> static_neighbors;  // validated against the table
};
// Errors: BuildTableSet's; ValidateStatic's for node.neighbors (e.g.
// ResourceExhausted for more than the table's static capacity), prefixed
// with "node: neighbors: ".
absl::StatusOr<PreparedReload> PrepareReload(const ClusterModel& model, uint64_t generation,
                                             const NeighborTable& neighbors);
// Makes the static neighbour set exactly the prepared one, then publishes
// the generation (one grace period each when something was removed or
// replaced). Control thread only, with nothing else changing the static set
// in between, so the validation still holds and this does not fail; the one
// error, InternalError from ReplaceStatic, would mean the neighbour table's
// capacity accounting is broken (the generation is then not published).
absl::Status CommitReload(PreparedReload reload, NeighborTable& neighbors,
                          TablePublisher& publisher);

}  // namespace sluice

#endif  // SLUICE_CONTROL_TABLE_BUILDER_H_
