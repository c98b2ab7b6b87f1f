// DataplaneState: the dataplane's side of the socket protocol
// (api/messages.h). It keeps what writers have told it (node settings,
// flannel's network config and leases, the static neighbours; Services are
// passed on to a ServiceSink), validates every message as a whole before
// anything changes, applies it to the live tables, and answers Ok (with the
// generation then serving) or an Error naming the object and the field.
//
// Full syncs: SyncBegin{epoch} opens a sync on the writer's connection;
// every object named during it (accepted or not: a rejected new version
// keeps the last good one, it does not delete it) is marked seen; SyncEnd
// prunes the leases and Service ports the epoch did not name and records the
// epoch. A sync left unfinished (the writer died, or another writer began
// one) prunes nothing: the last good state keeps serving.
//
// The subnet map and node addressing become workers' tables only once they
// are complete (node settings, network config, this node's own lease);
// before that they are accepted and kept. A lease change changes that
// one entry of the long-lived subnet map and publishes a new generation
// (microseconds); it is in force when the Ok is sent (TablePublisher waits
// for a grace period).
//
// Concurrency: the dataplane's control thread only (the socket server's
// handler). The targets are called on it.
#ifndef SLUICE_APP_DATAPLANE_STATE_H_
#define SLUICE_APP_DATAPLANE_STATE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/cluster_model.h"
#include "api/messages.h"

namespace sluice {

// Where Service messages go (the Service tables' programmer).
class ServiceSink {
 public:
  virtual ~ServiceSink() = default;
  virtual absl::Status Upsert(const api::ServicePort& port) = 0;
  virtual absl::Status Replace(const api::EndpointSetReplace& endpoints) = 0;
  virtual absl::Status Delete(const api::ServicePortKey& key) = 0;
  // Every Service port it holds (for pruning after a full sync).
  virtual std::vector<api::ServicePortKey> Keys() const = 0;
  // The node's name changed (endpoint locality is decided against it).
  virtual void SetNodeName(const std::string& name) = 0;
};

class DataplaneState {
 public:
  struct Targets {
    // Builds and publishes the node view and subnet map of `model` (its
    // services are empty); returns the generation now serving, or an error
    // (nothing changed).
    std::function<absl::StatusOr<uint64_t>(const ClusterModel& model)> publish_network;
    // Makes the static neighbours exactly these, or fails changing nothing.
    std::function<absl::Status(const std::vector<NeighborEntry>& neighbors)> replace_neighbors;
    ServiceSink* services = nullptr;
    // The generation serving (for Ok replies).
    std::function<uint64_t()> generation;
  };
  DataplaneState(Targets targets, uint64_t instance);

  // A writer's message (api::IsWriteMessage) from connection `connection`;
  // returns Ok or Error.
  api::Message Apply(uint64_t connection, const api::Message& message);
  api::HelloReply Hello(bool writer) const;

  // Starts from a cluster file's state, as a completed sync would (sluice-node
  // --cluster): what a control process sends later replaces it.
  absl::Status Seed(const ClusterModel& model);

  uint64_t instance() const { return instance_; }
  uint64_t last_epoch() const { return last_epoch_; }
  bool network_complete() const { return published_; }
  size_t lease_count() const { return leases_.size(); }
  // The node name (empty until known).
  std::string node_name() const { return node_ ? node_->node.name : std::string(); }

 private:
  using LeaseKey = std::pair<uint32_t, uint8_t>;
  api::Message OkReply() const;
  absl::Status ApplyNodeSettings(const api::NodeSettings& s);
  absl::Status ApplyLease(const FlannelLease& lease);
  absl::Status ApplyLeaseDelete(const Ipv4Prefix& subnet);
  // Publishes node + network + leases when complete; `leases` replaces the
  // current set only when that works.
  absl::Status Republish(const std::optional<api::NodeSettings>& node,
                         const std::map<LeaseKey, FlannelLease>& leases);

  Targets targets_;
  const uint64_t instance_;
  uint64_t last_epoch_ = 0;
  std::optional<api::NodeSettings> node_;
  std::map<LeaseKey, FlannelLease> leases_;
  bool published_ = false;

  struct Sync {
    uint64_t epoch = 0;
    uint64_t connection = 0;
    std::set<LeaseKey> leases;
    std::set<std::string> ports;  // api::FormatServicePortKey
  };
  std::optional<Sync> sync_;
};

}  // namespace sluice

#endif  // SLUICE_APP_DATAPLANE_STATE_H_
