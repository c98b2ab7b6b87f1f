// Builds the workers' tables from a ClusterModel: one complete TableSet
// generation (node addressing, Services with their endpoints, flannel's
// subnet map) and the static neighbour entries.
//
// Runs on the control side only. The result is published with
// TablePublisher::Publish; nothing is visible to workers until then, so a
// build that fails leaves the serving generation untouched.
#ifndef SLUICE_CONTROL_TABLE_BUILDER_H_
#define SLUICE_CONTROL_TABLE_BUILDER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control/cluster_model.h"
#include "dataplane/tables/neighbor_table.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// Errors: FailedPrecondition when the model lacks this node's lease;
// InvalidArgument when two Services claim the same address and port;
// ResourceExhausted when DPDK memory is short.
absl::StatusOr<std::unique_ptr<TableSet>> BuildTableSet(const ClusterModel& model,
                                                        uint64_t generation);

// The cluster file's node.neighbors as the neighbour table takes them.
std::vector<StaticNeighbor> StaticNeighborsOf(const ClusterModel& model);

// Makes the neighbour table's static set exactly the cluster file's
// (NeighborTable::ReplaceStatic: validated first, nothing changes on error).
// Errors: ReplaceStatic's, e.g. ResourceExhausted for more entries than the
// table's static capacity.
absl::Status ApplyStaticNeighbors(const ClusterModel& model, NeighborTable& neighbors);

}  // namespace sluice

#endif  // SLUICE_CONTROL_TABLE_BUILDER_H_
