// The worker graph's nodes: one per stage, each defined in its own file
// under dataplane/<concern>/, all registered with rte_graph by
// RegisterGraphNodes() and instantiated once per worker by CreateWorkerGraph().
//
//   rx -> classify -> arp ----------------------------------------------> tx
//                  -> vxlan_decap -> conntrack
//                  -> conntrack -> nat (hit) | service (miss) | route (no ports)
//   service -> new_flow (Service, or NAT/tracking needed) | route (stateless)
//   new_flow -> nat | route          nat -> vxlan_encap | neighbor | tx (cached) | route
//   route -> ttl | tx (to the host)  ttl -> vxlan_encap | neighbor
//   vxlan_encap -> tx | neighbor     neighbor -> tx
//   every node -> drop (the reason is in PacketPriv::drop)
//
// Thread-compatible: registration and graph creation run on the control
// thread before workers start; each graph is then walked by one lcore.
#ifndef SLUICE_DATAPLANE_GRAPH_NODES_H_
#define SLUICE_DATAPLANE_GRAPH_NODES_H_

#include <rte_graph.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {

struct WorkerContext;

inline constexpr char kRxNode[] = "sluice_rx";
inline constexpr char kClassifyNode[] = "sluice_classify";
inline constexpr char kArpNode[] = "sluice_arp";
inline constexpr char kVxlanDecapNode[] = "sluice_vxlan_decap";
inline constexpr char kConntrackNode[] = "sluice_conntrack";
inline constexpr char kServiceNode[] = "sluice_service";
inline constexpr char kNewFlowNode[] = "sluice_new_flow";
inline constexpr char kNatNode[] = "sluice_nat";
inline constexpr char kRouteNode[] = "sluice_route";
inline constexpr char kTtlNode[] = "sluice_ttl";
inline constexpr char kVxlanEncapNode[] = "sluice_vxlan_encap";
inline constexpr char kNeighborNode[] = "sluice_neighbor";
inline constexpr char kTxNode[] = "sluice_tx";
inline constexpr char kDropNode[] = "sluice_drop";

// What a node file defines: its name, process function and edges (in the
// order of its `enum Edge`).
struct GraphNodeSpec {
  const char* name;
  rte_node_process_t process;
  bool source;
  std::vector<const char*> edges;
};

const GraphNodeSpec& RxNodeSpec();
const GraphNodeSpec& ClassifyNodeSpec();
const GraphNodeSpec& ArpNodeSpec();
const GraphNodeSpec& VxlanDecapNodeSpec();
const GraphNodeSpec& ConntrackNodeSpec();
const GraphNodeSpec& ServiceNodeSpec();
const GraphNodeSpec& NewFlowNodeSpec();
const GraphNodeSpec& NatNodeSpec();
const GraphNodeSpec& RouteNodeSpec();
const GraphNodeSpec& TtlNodeSpec();
const GraphNodeSpec& VxlanEncapNodeSpec();
const GraphNodeSpec& NeighborNodeSpec();
const GraphNodeSpec& TxNodeSpec();
const GraphNodeSpec& DropNodeSpec();

// Registers every node once per process (later calls do nothing).
void RegisterGraphNodes();

// One graph of all nodes for one worker; every node's context points at
// `ctx`. Errors: Internal when rte_graph refuses (the message says why).
absl::StatusOr<rte_graph*> CreateWorkerGraph(WorkerContext* ctx, std::string* name);
void DestroyWorkerGraph(const std::string& name);

// Per-node statistics of one graph (rte_graph's stats: calls, objects,
// cycles spent in the node's process function).
struct NodeStats {
  std::string node;
  uint64_t calls = 0;
  uint64_t packets = 0;
  uint64_t cycles = 0;
};
std::vector<NodeStats> GraphNodeStats(const std::string& graph_name);

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_GRAPH_NODES_H_
