// OverlayTable: flannel's subnet map as the workers use it, long-lived and
// changed one lease at a time.
//  - pod address -> VTEP peer (longest prefix match over the subnet leases,
//    one rte_lpm for the process), for routing and VXLAN encapsulation;
//  - outer source address -> VTEP peer, to accept VXLAN only from nodes that
//    hold a lease (flannel's FDB: VtepMAC -> PublicIP; a lock-free rte_hash).
//
// A peer lives in a slot whose contents never change while any reader may
// use it: a lease that changes (new VtepMAC, new PublicIP) gets a new slot,
// and the prefix's next hop is switched to it with one atomic store; a
// lease that goes away has its rule deleted. The old slots are retired and
// only reused after the TablePublisher (table_set.h) has published a newer
// generation and waited for a grace period, because workers keep slot
// indices across bursts in state tagged with the generation (a flow's
// cached egress, route_cache.h; the prebuilt VXLAN headers, graph/context.h).
//
// Concurrency: one writer, the control thread (Validate, Apply,
// ReleaseRetired, Peers); workers read lock-free (PeerForAddress,
// PeerForPublicIp, peer). rte_lpm's tbl8 groups and the hash's key slots are
// reclaimed through the workers' QSBR variable (synchronous mode: the
// control thread waits for a grace period when it frees one).
#ifndef SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_
#define SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_

#include <rte_hash.h>
#include <rte_lpm.h>
#include <rte_rcu_qsbr.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/common/types.h"

namespace sluice {

struct VtepPeer {
  uint32_t public_ip = 0;
  uint32_t subnet = 0;
  uint8_t subnet_length = 0;
  bool local = false;  // this node's own lease
  MacAddress vtep_mac{};
};

class OverlayTable {
 public:
  static constexpr uint32_t kNoPeer = UINT32_MAX;
  // Leases the map holds at once. Kubernetes supports 5000 nodes.
  static constexpr uint32_t kMaxLeases = 1u << 13;
  // Slot indices: every lease may change in one Apply, so live and retired
  // slots together need twice the leases. They must fit rte_lpm's 24-bit
  // next hops and, tighter, the 14 bits workers keep them in (route_cache.h,
  // the per-worker table of prebuilt VXLAN headers, graph/context.h).
  static constexpr uint32_t kMaxPeers = 2 * kMaxLeases;

  struct ApplyResult {
    uint32_t added = 0, changed = 0, removed = 0;
    bool any() const { return added + changed + removed != 0; }
  };

  // `qsbr`: the workers' QSBR variable (may be null only when no worker runs
  // concurrently, e.g. single-threaded tests). Errors: ResourceExhausted
  // when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<OverlayTable>> Create(rte_rcu_qsbr* qsbr);
  ~OverlayTable();
  OverlayTable(const OverlayTable&) = delete;
  OverlayTable& operator=(const OverlayTable&) = delete;

  // Whether `peers` can be the whole set: InvalidArgument for duplicate
  // subnets or public IPs, a prefix length above 32, more than kMaxLeases
  // leases.
  absl::Status Validate(const std::vector<VtepPeer>& peers) const;
  // Makes the set exactly `peers`, which Validate accepted: each lease that
  // is new, changed or gone is changed alone and atomically for readers; an
  // unchanged lease keeps its slot. Control thread only; does not fail.
  ApplyResult Apply(const std::vector<VtepPeer>& peers);
  // Makes the retired slots reusable. Call only once every worker has moved
  // to a generation published after the Apply that retired them and passed
  // a quiescent state since (TablePublisher::Publish does).
  void ReleaseRetired();

  // Peer slot owning the pod address, or kNoPeer.
  uint32_t PeerForAddress(uint32_t ip) const {
    uint32_t hop;
    return rte_lpm_lookup(lpm_, ip, &hop) == 0 ? hop : kNoPeer;
  }
  // Peer slot whose PublicIP this is, or kNoPeer.
  uint32_t PeerForPublicIp(uint32_t public_ip) const;
  const VtepPeer& peer(uint32_t slot) const { return slots_[slot]; }

  // Control thread: the live peers' slots, by subnet.
  std::vector<uint32_t> Peers() const;
  size_t size() const { return live_.size(); }
  size_t retired() const { return retired_.size(); }

 private:
  OverlayTable() = default;
  uint32_t TakeSlot(const VtepPeer& p);

  rte_lpm* lpm_ = nullptr;
  rte_hash* by_public_ip_ = nullptr;
  VtepPeer* slots_ = nullptr;  // kMaxPeers, rte_zmalloc'd
  // Control thread only.
  std::map<std::pair<uint32_t, uint8_t>, uint32_t> live_;  // (subnet, length) -> slot
  std::vector<uint32_t> free_;
  std::vector<uint32_t> retired_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_
