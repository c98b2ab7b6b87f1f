// TableSet: one immutable generation of what the workers read about the
// node and the overlay (node addressing, the flannel subnet map), and
// TablePublisher, which swaps generations. Services are not part of it:
// they live in the long-lived ServiceDirectory (service_directory.h),
// changed one object at a time.
//
// Concurrency contract:
//  - Writer: one control thread calls TablePublisher::Publish. It changes
//    the long-lived subnet map lease by lease (each change atomic for
//    readers, overlay_table.h), builds the new TableSet (node view, a
//    pointer to the map) completely, publishes it with one release-store,
//    waits for an RCU (QSBR) grace period, then frees the old one and lets
//    the map reuse the slots of changed and removed peers. A reader never
//    sees a half-built table, and nothing is freed under a reader. A lease
//    change costs microseconds, not a table build.
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
#include <vector>

#include "absl/status/statusor.h"

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
  // The long-lived subnet map (owned by the TablePublisher). Slot indices
  // read through it are valid for this generation.
  const OverlayTable* overlay = nullptr;
};

// What a publish makes current: the node view, and the subnet map's whole
// set of leases (applied per entry).
struct NetworkSpec {
  NodeView node;
  std::vector<VtepPeer> peers;
};

class TablePublisher {
 public:
  // `qsbr` is the QSBR variable all workers report to; not owned. Errors:
  // OverlayTable::Create's.
  static absl::StatusOr<std::unique_ptr<TablePublisher>> Create(rte_rcu_qsbr* qsbr);
  ~TablePublisher() { delete current_.load(std::memory_order_acquire); }
  TablePublisher(const TablePublisher&) = delete;
  TablePublisher& operator=(const TablePublisher&) = delete;

  // Workers: the generation to use for this burst; nullptr before the first
  // Publish.
  const TableSet* Current() const { return current_.load(std::memory_order_acquire); }
  // The generation last published (0: none). Control thread.
  uint64_t generation() const { return generation_; }

  // Whether Publish would take `spec`: OverlayTable::Validate.
  absl::Status Validate(const NetworkSpec& spec) const { return overlay_->Validate(spec.peers); }
  // Control thread only; `spec` passed Validate. Changes the subnet map
  // entry by entry, then publishes a new generation (the node view and the
  // map), waits for one grace period (microseconds while the workers run),
  // frees the old generation and makes the map's retired slots reusable.
  // Once it returns no worker uses a removed or changed peer. Returns the new
  // generation.
  uint64_t Publish(const NetworkSpec& spec) {
    const OverlayTable::ApplyResult changed = overlay_->Apply(spec.peers);
    last_change_ = changed;
    auto next = std::make_unique<TableSet>();
    next->generation = ++generation_;
    next->node = spec.node;
    next->overlay = overlay_.get();
    const TableSet* old = current_.exchange(next.release(), std::memory_order_acq_rel);
    if (old != nullptr || overlay_->retired() != 0) {
      if (qsbr_ != nullptr) rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
      delete old;
      overlay_->ReleaseRetired();
    }
    return generation_;
  }
  // What the last Publish changed in the subnet map.
  OverlayTable::ApplyResult last_change() const { return last_change_; }

 private:
  TablePublisher() = default;
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<OverlayTable> overlay_;
  uint64_t generation_ = 0;
  OverlayTable::ApplyResult last_change_;
  std::atomic<const TableSet*> current_{nullptr};
};

inline absl::StatusOr<std::unique_ptr<TablePublisher>> TablePublisher::Create(rte_rcu_qsbr* qsbr) {
  auto overlay = OverlayTable::Create(qsbr);
  if (!overlay.ok()) return overlay.status();
  std::unique_ptr<TablePublisher> p(new TablePublisher());
  p->qsbr_ = qsbr;
  p->overlay_ = *std::move(overlay);
  return p;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_TABLE_SET_H_
