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

// Adds the cluster file's static ARP entries. Errors: ResourceExhausted when
// the neighbour table is full.
absl::Status ApplyStaticNeighbors(const ClusterModel& model, NeighborTable& neighbors);

}  // namespace sluice

#endif  // SLUICE_CONTROL_TABLE_BUILDER_H_
