// DesiredState: what sluice-control wants the dataplane to hold, keyed the
// way the protocol names objects, and the messages that bring a dataplane
// there: a full sync (after a connect) or the deltas between two states
// (after a source changed).
//
// Sources (a cluster file, etcd, the Kubernetes API) each own some of the
// fields; the control loop merges them into one DesiredState and diffs it
// against the last state the dataplane acknowledged. Deltas are ordered so
// that every intermediate state is valid: node settings; lease deletions,
// then lease upserts; Service port deletions, then upserts; endpoint sets
// (after the ports they belong to); neighbours.
//
// Concurrency: plain values; no shared state. Control side only (no DPDK).
#ifndef SLUICE_CONTROL_DESIRED_STATE_H_
#define SLUICE_CONTROL_DESIRED_STATE_H_

#include <cstdint>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/cluster_model.h"
#include "api/messages.h"

namespace sluice {

struct DesiredState {
  std::optional<api::NodeSettings> node;
  // By (subnet address, length).
  std::map<std::pair<uint32_t, uint8_t>, FlannelLease> leases;
  // By api::FormatServicePortKey.
  std::map<std::string, api::ServicePort> ports;
  std::map<std::string, api::EndpointSetReplace> endpoints;
  std::optional<std::vector<NeighborEntry>> neighbors;
};

// Every object of `s`, framed by SyncBegin{epoch} and SyncEnd{epoch}.
std::vector<api::Message> FullSyncMessages(const DesiredState& s, uint64_t epoch);

// The upserts, replaces and deletes that turn `from` into `to` (nothing when
// they are equal). An absent node or neighbour set in `to` sends nothing for
// it (a source that has not spoken yet is not a deletion).
//
// With `service_keys`, only those Service port keys (a port and its endpoint
// set share one) are compared: `to` needs to hold just them (and from them
// both the port and its set), so a change costs what it touches, not the
// number of Services.
//
// A renamed node (its name decides which endpoints are local) re-sends
// every endpoint set after the node settings, so that the dataplane chooses
// each local subset again with the new name: `to` must then be whole and
// `service_keys` null (Agent does so).
std::vector<api::Message> DeltaMessages(const DesiredState& from, const DesiredState& to,
                                        const std::set<std::string>* service_keys = nullptr);
// Makes `state` what `to` says: node, leases and neighbours whole; with
// `service_keys`, only those Service port keys (as DeltaMessages reads them).
void ApplyDelta(DesiredState* state, const DesiredState& to,
                const std::set<std::string>* service_keys = nullptr);

// Field-by-field equality of the protocol's objects.
bool SameLease(const FlannelLease& a, const FlannelLease& b);
bool SameServicePort(const api::ServicePort& a, const api::ServicePort& b);
bool SameEndpoints(const api::EndpointSetReplace& a, const api::EndpointSetReplace& b);
bool SameNodeSettings(const api::NodeSettings& a, const api::NodeSettings& b);
bool SameNeighbors(const std::vector<NeighborEntry>& a, const std::vector<NeighborEntry>& b);

}  // namespace sluice

#endif  // SLUICE_CONTROL_DESIRED_STATE_H_
