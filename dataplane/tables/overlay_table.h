// OverlayTable: flannel's subnet map as the workers use it.
//  - pod address -> VTEP (longest prefix match over the subnet leases,
//    rte_lpm), for routing and VXLAN encapsulation;
//  - outer source address -> VTEP, to accept VXLAN only from nodes that hold
//    a lease (flannel's FDB: VtepMAC -> PublicIP).
//
// Concurrency: immutable once built; one per TableSet generation, read
// lock-free by workers, freed after an RCU grace period with its TableSet.
#ifndef SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_
#define SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_

#include <rte_hash.h>
#include <rte_lpm.h>

#include <cstdint>
#include <memory>
#include <vector>

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
  // Peer indices must fit rte_lpm's 24-bit next hops and, tighter, the 13
  // bits workers keep them in (a flow's cached egress, the per-worker table
  // of prebuilt VXLAN headers: route_cache.h, graph/context.h). Kubernetes
  // supports 5000 nodes.
  static constexpr uint32_t kMaxPeers = 1u << 13;
  ~OverlayTable();
  OverlayTable(const OverlayTable&) = delete;
  OverlayTable& operator=(const OverlayTable&) = delete;

  // Errors: InvalidArgument for duplicate subnets or public IPs, a prefix
  // length above 32 or more than kMaxPeers peers;
  // ResourceExhausted when DPDK memory is short.
  static absl::StatusOr<std::unique_ptr<OverlayTable>> Build(std::vector<VtepPeer> peers,
                                                             uint64_t generation);

  // Peer index owning the pod address, or kNoPeer.
  uint32_t PeerForAddress(uint32_t ip) const {
    uint32_t hop;
    return rte_lpm_lookup(lpm_, ip, &hop) == 0 ? hop : kNoPeer;
  }
  // Peer index whose PublicIP this is, or kNoPeer.
  uint32_t PeerForPublicIp(uint32_t public_ip) const;
  const VtepPeer& peer(uint32_t i) const { return peers_[i]; }
  size_t size() const { return peers_.size(); }

 private:
  OverlayTable() = default;
  rte_lpm* lpm_ = nullptr;
  rte_hash* by_public_ip_ = nullptr;
  std::vector<VtepPeer> peers_;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_TABLES_OVERLAY_TABLE_H_
