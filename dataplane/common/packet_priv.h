// PacketPriv: what one packet carries from graph node to graph node, kept in
// the mbuf's private area (the bytes between struct rte_mbuf and its
// headroom). Every mempool whose mbufs enter a worker's graph must be
// created with at least kMbufPrivSize private bytes (CreatePacketPool does
// it); Worker refuses a pool without them.
//
// Written and read only by the worker that holds the mbuf: no sharing.
#ifndef SLUICE_DATAPLANE_COMMON_PACKET_PRIV_H_
#define SLUICE_DATAPLANE_COMMON_PACKET_PRIV_H_

#include <rte_mbuf.h>

#include <cstdint>

#include "dataplane/common/counters.h"
#include "dataplane/parse/packet_parser.h"

namespace sluice {

struct PacketPriv {
  PacketMeta meta;                    // classify (and VXLAN decap, for the inner frame)
  uint32_t ct_ref = UINT32_MAX;       // conntrack: entry ref (| reply bit), or kMiss
  uint32_t svc = UINT32_MAX;          // service lookup -> new flow: ServiceRef or kNoService
  uint32_t next_hop = 0;              // route: L2 next hop (pods, uplink)
  uint32_t peer = UINT32_MAX;         // route: VtepPeer index (VXLAN)
  uint16_t drop = kCounterCount;      // any node -> drop: the reason
  uint16_t vxlan_sport = 0;           // route: outer UDP source port (VXLAN)
  uint8_t ingress = 0;                // PortRole it arrived on
  uint8_t egress = 0;                 // Egress chosen by route (or the flow's cache)
  uint8_t tx_port = 0;                // PortRole it leaves by
  uint8_t stateless = 0;              // routed without conntrack
  uint8_t routed = 0;                 // egress, next_hop, peer already decided
  uint8_t created = 0;                // new_flow made its connection just now
};

inline constexpr uint16_t kMbufPrivSize =
    static_cast<uint16_t>(RTE_ALIGN_CEIL(sizeof(PacketPriv), RTE_MBUF_PRIV_ALIGN));

inline PacketPriv* Priv(rte_mbuf* m) { return static_cast<PacketPriv*>(rte_mbuf_to_priv(m)); }

// rte_pktmbuf_pool_create with the private area PacketPriv needs. Returns
// nullptr with rte_errno set, as rte_pktmbuf_pool_create does.
inline rte_mempool* CreatePacketPool(const char* name, unsigned n, unsigned cache_size,
                                     int socket_id) {
  return rte_pktmbuf_pool_create(name, n, cache_size, kMbufPrivSize, RTE_MBUF_DEFAULT_BUF_SIZE,
                                 socket_id);
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_COMMON_PACKET_PRIV_H_
