// The typed messages sluice-control, sluicectl and sluice-node exchange over
// the dataplane's Unix socket (protocol version kVersion). Plain data, no
// DPDK: this folder is the one small library both processes link. The wire
// format is api/codec.h; the socket, its roles and its limits api/socket.h.
//
// Roles. A connection is a writer (sluice-control: may change state) or a
// reader (sluicectl, monitoring: queries only); the dataplane decides from
// the peer's credentials (SO_PEERCRED) and the socket's file mode, never from
// what the client claims (Hello only says what it wants).
//
// Conversation of a writer:
//   Hello -> HelloReply (the dataplane's instance id and the last epoch it
//            completed, so a control process can tell a restarted dataplane)
//   SyncBegin{epoch}, then every object once (NodeSettings, LeaseUpsert,
//   ServicePortUpsert, EndpointSetReplace, NeighborsReplace), SyncEnd{epoch}:
//   the dataplane then prunes every object the epoch did not mention. Objects
//   keep their identity across a resync: an unchanged Service port keeps its
//   table slot and its flows.
//   Afterwards, deltas: any upsert/replace/delete, applied one by one.
// Every request is answered, in order, by Ok or Error with the request's id.
// A message is validated as a whole before anything changes: a rejected
// message changes nothing, and the Error names the object and the field
// ("Service default/web:http/TCP: endpoints[3].ip: 0.0.0.0 is not a unicast
// address"). Queries are answered by a JsonReply.
//
// All IPv4 addresses are host byte order, as in control/cluster_model.h,
// whose types the payloads reuse.
#ifndef SLUICE_API_MESSAGES_H_
#define SLUICE_API_MESSAGES_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "api/cluster_model.h"

namespace sluice::api {

inline constexpr uint32_t kMagic = 0x45434c53;  // "SLCE" on the wire (little endian)
inline constexpr uint16_t kVersion = 1;
// A frame larger than this is refused (and the connection closed) before
// it is read: a full sync is many messages, never one huge one.
inline constexpr uint32_t kMaxMessageBytes = 16u << 20;

enum class MessageType : uint16_t {
  // writer -> dataplane
  kHello = 1,
  kSyncBegin = 2,
  kSyncEnd = 3,
  kNodeSettings = 4,
  kLeaseUpsert = 5,
  kLeaseDelete = 6,
  kServicePortUpsert = 7,
  kServicePortDelete = 8,
  kEndpointSetReplace = 9,
  kNeighborsReplace = 10,
  // reader (or writer) -> dataplane
  kShow = 32,
  // dataplane -> client
  kHelloReply = 64,
  kOk = 65,
  kError = 66,
  kJsonReply = 67,
};

struct Hello {
  std::string client;  // "sluice-control 0.1.0 (pid 1234)", for logs
  bool want_write = false;
};

struct HelloReply {
  uint16_t version = kVersion;
  uint64_t instance = 0;    // random per dataplane start
  uint64_t last_epoch = 0;  // last completed full sync, 0 = none
  bool writer = false;      // the role granted
};

struct SyncBegin {
  uint64_t epoch = 0;  // > 0, larger than any epoch this dataplane completed
};
struct SyncEnd {
  uint64_t epoch = 0;  // the SyncBegin's
};

// The node's own addressing and flannel's network config. The static
// neighbours travel separately (NeighborsReplace): node.neighbors is ignored.
struct NodeSettings {
  NodeSpec node;
  FlannelNetworkConfig network;
  uint16_t local_port_lo = 32768, local_port_hi = 60999;  // ip_local_port_range
};

struct LeaseUpsert {
  FlannelLease lease;  // identity: lease.subnet
};
struct LeaseDelete {
  Ipv4Prefix subnet;
};

// kube-proxy's ServicePortName: namespace/name, port name, protocol.
struct ServicePortKey {
  std::string namespace_name;
  std::string service_name;
  std::string port_name;  // may be empty (single-port Services)
  L4Protocol protocol = L4Protocol::kTcp;
};

struct ServicePort {
  ServicePortKey key;
  std::string type;  // ClusterIP, NodePort, LoadBalancer
  uint16_t port = 0;
  uint16_t node_port = 0;  // 0 = none
  std::vector<uint32_t> cluster_ips;  // empty: headless, nothing to proxy
  std::vector<uint32_t> external_ips;
  std::vector<uint32_t> load_balancer_ips;  // ingress with ipMode VIP (or unset)
  TrafficPolicy external_traffic_policy = TrafficPolicy::kCluster;
  TrafficPolicy internal_traffic_policy = TrafficPolicy::kCluster;
  uint16_t health_check_node_port = 0;  // externalTrafficPolicy Local only
};
struct ServicePortUpsert {
  ServicePort port;
};
struct ServicePortDelete {
  ServicePortKey key;  // its endpoint set goes with it
};

// One endpoint of a Service port, as kube-proxy reads an EndpointSlice
// endpoint: conditions with their nil defaults already applied by the
// control side (ready and serving true, terminating false), the target port
// resolved by port name.
struct Endpoint {
  uint32_t ip = 0;
  uint16_t port = 0;
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  std::string node_name;  // compared with NodeSettings.node.name: local or not
  std::string zone;
};
// The whole endpoint set of one Service port (the union of its slices); the
// dataplane picks from it as kube-proxy does (ready ones, else serving and
// terminating ones; node-local subsets for traffic policy Local).
struct EndpointSetReplace {
  ServicePortKey key;
  std::vector<Endpoint> endpoints;
};

// The node's static neighbours, replaced as a set.
struct NeighborsReplace {
  std::vector<NeighborEntry> neighbors;
};

// Queries. `what`: "services", "peers", "neighbors", "conntrack",
// "counters", "stages", "status". Filters apply to conntrack (0/empty = any).
struct Show {
  std::string what;
  uint8_t protocol = 0;
  uint32_t address = 0;  // either tuple's source or destination
  uint16_t port = 0;     // either tuple's source or destination port
  uint32_t limit = 1000;
};

struct Ok {
  uint64_t generation = 0;  // the table generation serving once applied
};
struct Error {
  std::string object;   // "Service default/web:http/TCP", "lease 10.244.1.0/24", "message"
  std::string field;    // "endpoints[3].ip"; empty when the whole object is at fault
  std::string message;  // what is wrong, with the offending value
};
struct JsonReply {
  std::string json;
};

using Message =
    std::variant<Hello, SyncBegin, SyncEnd, NodeSettings, LeaseUpsert, LeaseDelete,
                 ServicePortUpsert, ServicePortDelete, EndpointSetReplace, NeighborsReplace, Show,
                 HelloReply, Ok, Error, JsonReply>;

// "default/web:http/TCP" (port name omitted with its ':' when empty).
std::string FormatServicePortKey(const ServicePortKey& key);

}  // namespace sluice::api

#endif  // SLUICE_API_MESSAGES_H_
