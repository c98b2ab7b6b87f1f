// TableSet: one immutable generation of what the workers read about the
// node and the overlay (node addressing, the flannel subnet map), and
// TablePublisher, which swaps generations. Services are not part of it:
// they live in the long-lived ServiceDirectory (service_directory.h),
// changed one object at a time.
//
// Concurrency contract:
//  - Writer: one control thread calls TablePublisher::Publish. It builds the
//    new TableSet completely, publishes it with one release-store, waits for
//    an RCU (QSBR) grace period, then frees the old one. A reader therefore
//    never sees a half-built table, and a table is never freed under a reader.
//  - Readers: workers load Current() once per burst (acquire) and use only
//    that pointer until they report a quiescent state, which they do between
//    bursts (rte_rcu_qsbr_quiescent). A worker must not hold a TableSet
//    pointer across a quiescent report.
//  - Connection tracking entries copy what they need (endpoint address and
//    port, masquerade address), so a new generation never disturbs
//    established flows (their cached egress is decided again, once).
#ifndef SLUICE_DATAPLANE_TABLES_TABLE_SET_H_
#define SLUICE_DATAPLANE_TABLES_TABLE_SET_H_

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "dataplane/common/types.h"
#include "dataplane/tables/overlay_table.h"

namespace sluice {

// The node's own addressing, as the workers need it.
struct NodeView {
  std::string name;
  uint32_t node_ip = 0;
  uint32_t uplink_net_mask = 0xffffff00;  // on-link underlay subnet
  uint32_t gateway_ip = 0;                // 0: no default route
  uint16_t uplink_mtu = 1500;
  MacAddress port_mac[kPortRoleCount] = {};
  bool has_host_port = false;
  MacAddress host_peer_mac{};
  // flannel: the cluster network, this node's lease, its VXLAN device.
  uint32_t cluster_net = 0, cluster_mask = 0;
  uint32_t pod_net = 0, pod_mask = 0;
  uint32_t vxlan_ip = 0;         // flannel.1's address: the lease's network address
  uint32_t pods_gateway_ip = 0;  // cni0's address: the lease's .1
  MacAddress vtep_mac{};
  uint32_t vni = 1;
  uint16_t vxlan_port = 8472;
  // The node kernel's ephemeral ports (net.ipv4.ip_local_port_range), which
  // masquerade never hands out.
  uint16_t local_port_lo = 32768, local_port_hi = 60999;

  bool InClusterNetwork(uint32_t ip) const { return (ip & cluster_mask) == cluster_net; }
  bool InPodNetwork(uint32_t ip) const { return (ip & pod_mask) == pod_net; }
  // Addresses the node itself holds (kube-proxy's addrtype LOCAL).
  bool IsLocalAddress(uint32_t ip) const {
    return ip == node_ip || ip == vxlan_ip || ip == pods_gateway_ip;
  }
};

struct TableSet {
  uint64_t generation = 0;
  NodeView node;
  std::unique_ptr<OverlayTable> overlay;
};

class TablePublisher {
 public:
  // `qsbr` is the QSBR variable all workers report to; not owned.
  explicit TablePublisher(rte_rcu_qsbr* qsbr) : qsbr_(qsbr) {}
  ~TablePublisher() { delete current_.load(std::memory_order_acquire); }
  TablePublisher(const TablePublisher&) = delete;
  TablePublisher& operator=(const TablePublisher&) = delete;

  // Workers: the generation to use for this burst; nullptr before the first
  // Publish.
  const TableSet* Current() const { return current_.load(std::memory_order_acquire); }

  // Control thread only. Blocks for one grace period (workers report every
  // loop iteration, so this is microseconds while they run).
  void Publish(std::unique_ptr<TableSet> next) {
    const TableSet* old = current_.exchange(next.release(), std::memory_order_acq_rel);
    if (old != nullptr) {
      if (qsbr_ != nullptr) rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
      delete old;
    }
  }

 private:
  rte_rcu_qsbr* qsbr_;
  std::atomic<const TableSet*> current_{nullptr};
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_TABLE_SET_H_
