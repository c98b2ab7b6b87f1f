// ServiceProgrammer: the dataplane control thread's Service API. It applies
// the socket protocol's plain objects (api/messages.h) to the
// ServiceDirectory, one object at a time, with kube-proxy's consequences for
// existing flows:
//
//   UpsertServicePort(api::ServicePort)        add a Service port or change its
//                                              keys and traffic policies
//   ReplaceEndpoints(api::EndpointSetReplace)  replace its endpoints
//   DeleteServicePort(api::ServicePortKey)     remove it, with its endpoints
//   PrepareSync / CommitSync (Sync)            a full sync: the given ports and
//                                              sets become the whole state
//
// sluice-node and sluice-replay apply a cluster file through PrepareSync and
// CommitSync (control/table_builder.h), so that a reload and a full sync
// from sluice-control take the same path.
//
// Validation. Every call is checked as a whole before anything changes; a
// rejected call changes nothing. Errors name the object and the field:
//   Service default/web:http/TCP: endpoints[3].ip: 224.0.0.1 is not a unicast address
//   Service default/web-copy:http/TCP: clusterIPs[0]: 10.96.100.10:80/TCP is already
//       Service default/web:http/TCP's
// InvalidArgument: a bad address as VIP or endpoint (0/8, 127/8, multicast,
// 240/4 and broadcast), port 0, a type other than ClusterIP, NodePort,
// LoadBalancer and ExternalName, a nodePort on a ClusterIP Service, a key
// the port lists twice or that another Service port holds, an endpoint
// listed twice, more endpoints to choose from (cluster-wide or on this node)
// than a set holds, an object listed twice in a sync. ResourceExhausted:
// more Service ports or keys than the directory holds, more pending endpoint
// sets than kept (below), DPDK memory short for an endpoint set. NotFound:
// DeleteServicePort of a port that is neither known nor pending.
//
// Endpoint choice: kube-proxy's, dataplane/state/endpoint_choice.h, with
// this node's name deciding which endpoints are local.
//
// Not proxied, as kube-proxy's iptables mode does not: ExternalName
// Services, SCTP ports and headless Services (no ClusterIP). Such a port is
// accepted and remembered (its endpoint set too) but holds no slot and no
// key; changing it into a proxied one later installs it.
//
// An endpoint set for a Service port not upserted yet (kube-proxy keeps
// EndpointSlices of Services it has not seen) is accepted and kept pending;
// it is attached when the port arrives. At most Config::max_pending_sets
// are kept. Deleting a Service port deletes its endpoint set; deleting a
// key that only has a pending set deletes that set.
//
// Memory and publication: the directory's (service_directory.h). An
// endpoint change builds one new EndpointSet and publishes one pointer; the
// old set is freed after a grace period. An unchanged Service port keeps its
// slot, its set and its flows through any number of syncs. Keys move between
// ports in one call (a sync) without ever being absent: removals that are
// not moves first, then additions and rewrites, then released slots.
//
// Existing flows, as kube-proxy's conntrack cleanup treats them
// (pkg/proxy/conntrack): established translations are copied into
// conntrack entries, so a change never touches TCP flows; they finish on
// their endpoint. For a UDP Service port, after a change:
//  - whose endpoints lost one or more (N -> M, N -> 0), or got their first
//    (0 -> N), or that was created or gained keys: every UDP flow whose
//    original destination is one of the port's keys and whose endpoint is
//    not one the port now has is removed, so that its next packet picks a
//    live endpoint (or meets service_no_endpoints). This includes flows
//    made before the port existed (masqueraded out, not DNATed: the stale
//    entries that blackholed DNS in kube-proxy's bug history);
//  - whose keys were removed (the port deleted, a VIP changed): every UDP
//    flow to a removed key is removed.
//  Flows of Service ports the call did not change are never looked at.
//  How: after the pointers are published the control thread waits for one
//  grace period (so that no worker still uses the old set: a flow made from
//  it a moment ago is in the table by then), scans the connection table
//  (ConntrackTable::SnapshotRacy) and asks each matching entry's owner to
//  remove it (RequestRemoval). The call returns once every removal has been
//  requested; a removal takes effect at the owner's next loop iteration
//  (microseconds while workers poll). Requests an owner's ring had no room
//  for are kept and posted again by FlushFlowRemovals() (which every call
//  also does first); the control loop calls it periodically. The scan reads
//  the whole table: about a millisecond per 64k entries of capacity, paid by
//  UDP changes only, after the pointer is published.
//
// Concurrency: control thread only; not thread-safe. It is the directory's
// one writer. It reads `tables` (the current generation, for the node's
// own addresses NodePort flows are matched on) on that same thread.
#ifndef SLUICE_DATAPLANE_STATE_SERVICE_PROGRAMMER_H_
#define SLUICE_DATAPLANE_STATE_SERVICE_PROGRAMMER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "api/messages.h"
#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/state/endpoint_choice.h"
#include "dataplane/tables/service_directory.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

class ServiceProgrammer {
 private:
  struct Plan;

 public:
  struct Config {
    std::string node_name;  // endpoints with this nodeName are local
    uint32_t max_pending_sets = 65536;
  };
  // Not owned. `conntrack` may be null (no flow cleanup); `tables` may be
  // null (NodePort flows then are not matched by the cleanup).
  ServiceProgrammer(const Config& config, ServiceDirectory* directory, ConntrackTable* conntrack,
                    const TablePublisher* tables);
  ~ServiceProgrammer();
  ServiceProgrammer(const ServiceProgrammer&) = delete;
  ServiceProgrammer& operator=(const ServiceProgrammer&) = delete;

  absl::Status UpsertServicePort(const api::ServicePort& port);
  absl::Status ReplaceEndpoints(const api::EndpointSetReplace& set);
  absl::Status DeleteServicePort(const api::ServicePortKey& key);

  // A full sync validated and its endpoint sets built, not applied yet (its
  // sets are freed if it is dropped uncommitted).
  class PreparedSync {
   public:
    PreparedSync(PreparedSync&&) noexcept;
    PreparedSync& operator=(PreparedSync&&) noexcept;
    ~PreparedSync();

   private:
    friend class ServiceProgrammer;
    PreparedSync();
    std::unique_ptr<Plan> plan_;
  };
  // `ports` and `sets` become the whole state (everything else is removed);
  // a port without a set in `sets` has no endpoints; a set without its port
  // is kept pending. `node_name` replaces Config::node_name from the commit
  // on (every set is chosen with it). Errors: as above; nothing changes.
  absl::StatusOr<PreparedSync> PrepareSync(const std::vector<api::ServicePort>& ports,
                                           const std::vector<api::EndpointSetReplace>& sets,
                                           const std::string& node_name);
  // Applies a prepared sync, with nothing else changed in between (one
  // thread), so its validation still holds. The one error, InternalError
  // when rte_hash refuses a key the capacity checks made room for, would
  // mean a bug; the rest of the sync is applied regardless.
  absl::Status CommitSync(PreparedSync sync);
  absl::Status Sync(const std::vector<api::ServicePort>& ports,
                    const std::vector<api::EndpointSetReplace>& sets, const std::string& node_name);

  // Posts again the flow removals an owner's ring had no room for. Returns
  // how many still wait.
  size_t FlushFlowRemovals();

  // What the last calls did, for tests and bench/.
  struct Stats {
    uint64_t calls = 0;
    uint64_t sets_published = 0;      // endpoint sets built and published
    uint64_t scans = 0;               // connection-table scans for UDP cleanup
    uint64_t removals_requested = 0;  // flows whose removal was asked
    uint64_t last_publish_tsc = 0;    // rte_rdtsc() once the last call's pointers were out
    uint64_t last_scan_cycles = 0;    // the last scan (its grace period included)
  };
  const Stats& stats() const { return stats_; }
  const std::string& node_name() const { return config_.node_name; }
  size_t port_count() const;     // Service ports known (proxied or not)
  size_t pending_count() const;  // endpoint sets waiting for their port

  // The name deciding which endpoints are local; endpoint sets chosen from
  // now on use it (sluice-node learns it from the node settings). Sets
  // already published keep theirs until sent again: a client renaming the
  // node re-sends every set after it (sluice-control's DeltaMessages).
  void SetNodeName(const std::string& name) { config_.node_name = name; }
  // Every Service port upserted (proxied or not), for pruning after a full
  // sync.
  std::vector<api::ServicePortKey> Keys() const;
  // What inspection shows of one Service port.
  struct PortView {
    std::string id;  // FormatServicePortKey
    bool proxied = false;
    uint8_t proto = 0;
    uint8_t flags = 0;  // EndpointSet::Flags
    std::vector<std::pair<ServiceKey, ServiceEntryKind>> keys;
    std::vector<Endpoint> all, local;  // the chosen endpoints
  };
  // Sorted by id; with `address` or `port` (0: any), only the Service ports
  // holding a key with them (a ClusterIP, external or LoadBalancer IP, a
  // Service port or NodePort number).
  std::vector<PortView> View(uint32_t address = 0, uint16_t port = 0) const;
  // The slot of a proxied Service port ("ns/name:port/PROTO"), or UINT32_MAX.
  uint32_t SlotOf(const api::ServicePortKey& key) const;

 private:
  struct KeyEntry {
    ServiceKey key;
    ServiceEntryKind kind;
    uint32_t index;  // in its list (clusterIPs[index], ...), for messages
  };
  struct Record;
  struct Item;
  struct PurgeRule {
    std::vector<ServiceKey> keys;
    bool all = false;            // every UDP flow to the keys
    std::vector<Endpoint> live;  // else those whose endpoint is not here (sorted)
  };

  // The final state an upsert of `port` gives `item`, or the first thing
  // wrong with `port`.
  static absl::Status FromSpec(const api::ServicePort& port, const std::string& id, Item* item);
  absl::Status Run(Plan& plan);  // Prepare + Commit
  absl::Status Prepare(Plan& plan);
  absl::Status Commit(Plan& plan);
  Record* Ensure(Item& item);
  // The start of each single-object call: counted, pending flow removals
  // posted again, `plan` set up for this directory and node.
  void BeginCall(Plan* plan);
  // An item for `key`, with its record when there is one.
  Item ItemFor(const api::ServicePortKey& key) const;
  void RemoveFlows(const std::vector<PurgeRule>& rules);

  Config config_;
  ServiceDirectory* dir_;
  ConntrackTable* conntrack_;
  const TablePublisher* tables_;
  std::unordered_map<std::string, std::unique_ptr<Record>> records_;  // by FormatServicePortKey
  std::unordered_map<uint64_t, Record*> owner_;                       // installed key -> port
  size_t pending_ = 0;
  uint64_t plan_id_ = 0;
  std::vector<std::pair<uint32_t, uint32_t>> backlog_;  // (index, check) not yet posted
  Stats stats_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_STATE_SERVICE_PROGRAMMER_H_
