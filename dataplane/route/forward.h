// What forwarding as a router does to every packet once its egress is
// known, shared by the ttl node (packets that went through route) and the
// nat node (established flows whose cached egress is current, which skip
// route and ttl): the TTL is decremented (checksum updated incrementally), a
// packet that would leave with TTL 0 is dropped, and a packet bound for
// VXLAN must fit the uplink MTU once encapsulated (outer IPv4 length =
// inner IP length + 50; RFC 7348: never an outer fragment).
#ifndef SLUICE_DATAPLANE_ROUTE_FORWARD_H_
#define SLUICE_DATAPLANE_ROUTE_FORWARD_H_

#include <cstdint>

#include "dataplane/common/packet_priv.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/route/route.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {

enum class ForwardVerdict : uint8_t { kVxlanEncap, kNeighbor, kDrop };

// The checks after the TTL: for a packet whose TTL the caller decremented
// already (nat folds it into the NAT checksum update).
inline ForwardVerdict ForwardChecksAfterTtl(PacketPriv* pp, uint32_t uplink_mtu) {
  if (static_cast<Egress>(pp->egress) != Egress::kVxlan) return ForwardVerdict::kNeighbor;
  if (uint32_t{pp->meta.ip_total_length} + kVxlanOverhead > uplink_mtu) {
    pp->drop = k_vxlan_too_big;
    return ForwardVerdict::kDrop;
  }
  return ForwardVerdict::kVxlanEncap;
}

// On kDrop, pp->drop holds the reason (ttl_exceeded, vxlan_too_big).
inline ForwardVerdict ForwardChecks(rte_mbuf* m, PacketPriv* pp, uint32_t uplink_mtu) {
  if (!DecrementTtl(m, pp->meta)) {
    pp->drop = k_ttl_exceeded;
    return ForwardVerdict::kDrop;
  }
  return ForwardChecksAfterTtl(pp, uplink_mtu);
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_ROUTE_FORWARD_H_
