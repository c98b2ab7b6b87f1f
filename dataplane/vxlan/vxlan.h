// VXLAN encapsulation and decapsulation, byte-compatible with the Linux
// vxlan device flannel creates (flannel.<VNI>, learning off, default
// options): outer IPv4 TTL 64 (ip4_dst_hoplimit), DF clear, TOS carrying the
// inner ECN bits only, outer UDP checksum 0 (the kernel's default for IPv4
// VXLAN, udp_csum off), UDP source port from the inner flow hash mapped into
// the local port range [32768, 61000) as udp_flow_src_port() does, VXLAN
// flags 0x08 (I) and the VNI, inner destination MAC the remote VtepMAC.
//
// Stateless; inline where on the per-packet path.
#ifndef SLUICE_DATAPLANE_VXLAN_VXLAN_H_
#define SLUICE_DATAPLANE_VXLAN_VXLAN_H_

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>
#include <rte_vxlan.h>

#include <cstdint>
#include <cstring>

#include "dataplane/common/counters.h"
#include "dataplane/common/types.h"
#include "dataplane/parse/packet_parser.h"

namespace sluice {

inline constexpr uint16_t kVxlanOverhead =
    sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);
static_assert(kVxlanOverhead == 50);

// udp_flow_src_port(): ((u64)hash * (max - min) >> 32) + min, with the
// default ip_local_port_range 32768..60999.
inline uint16_t VxlanSourcePort(uint32_t inner_hash) {
  constexpr uint32_t kMin = 32768, kMax = 60999;
  return static_cast<uint16_t>(((uint64_t{inner_hash} * (kMax - kMin)) >> 32) + kMin);
}

struct VxlanEncapParams {
  uint32_t outer_src_ip;     // this node's PublicIP
  uint32_t outer_dst_ip;     // the peer's PublicIP
  MacAddress outer_src_mac;  // uplink MAC
  MacAddress outer_dst_mac;  // next hop towards the peer
  MacAddress inner_src_mac;  // our VtepMAC
  MacAddress inner_dst_mac;  // the peer's VtepMAC
  uint32_t vni;
  uint16_t udp_dst_port;
  uint16_t udp_src_port;
  uint16_t ip_id;
};

// The frame must start at the mbuf's data (inner Ethernet header) and be an
// IPv4 packet described by `inner` (l3_offset 14). Returns false when the
// mbuf lacks headroom for the 50 outer bytes.
inline bool VxlanEncapsulate(rte_mbuf* m, const PacketMeta& inner, const VxlanEncapParams& p) {
  auto* inner_eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  std::memcpy(&inner_eth->dst_addr, p.inner_dst_mac.data(), 6);
  std::memcpy(&inner_eth->src_addr, p.inner_src_mac.data(), 6);
  const uint8_t inner_tos =
      rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, inner.l3_offset)->type_of_service;
  const uint16_t inner_frame_len = rte_pktmbuf_data_len(m);
  char* outer = rte_pktmbuf_prepend(m, kVxlanOverhead);
  if (outer == nullptr) return false;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(outer);
  std::memcpy(&eth->dst_addr, p.outer_dst_mac.data(), 6);
  std::memcpy(&eth->src_addr, p.outer_src_mac.data(), 6);
  eth->ether_type = Be16(RTE_ETHER_TYPE_IPV4);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->type_of_service = inner_tos & 0x3;  // ECN only (ip_tunnel_ecn_encap)
  ip->total_length = Be16(static_cast<uint16_t>(inner_frame_len + sizeof(rte_ipv4_hdr) +
                                                sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr)));
  ip->packet_id = Be16(p.ip_id);
  ip->fragment_offset = 0;
  ip->time_to_live = 64;
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = Be32(p.outer_src_ip);
  ip->dst_addr = Be32(p.outer_dst_ip);
  ip->hdr_checksum = 0;
  ip->hdr_checksum = rte_ipv4_cksum(ip);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->src_port = Be16(p.udp_src_port);
  udp->dst_port = Be16(p.udp_dst_port);
  udp->dgram_len =
      Be16(static_cast<uint16_t>(inner_frame_len + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr)));
  udp->dgram_cksum = 0;
  auto* vx = reinterpret_cast<rte_vxlan_hdr*>(udp + 1);
  vx->vx_flags = Be32(0x08000000);
  vx->vx_vni = Be32(p.vni << 8);
  return true;
}

// Validates the VXLAN header of an outer packet already parsed as IPv4/UDP
// and strips the outer headers, leaving the inner frame at the mbuf's data.
// Returns kCounterCount on success, else the drop reason. The outer source is checked by the caller
// (it needs the lease table).
inline Counter VxlanDecapsulate(rte_mbuf* m, const PacketMeta& outer, uint32_t expected_vni) {
  const auto* udp = rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, outer.l4_offset);
  const uint32_t udp_len = Be16(udp->dgram_len);
  if (udp_len < sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr) + sizeof(rte_ether_hdr))
    return k_vxlan_truncated;
  const auto* vx = reinterpret_cast<const rte_vxlan_hdr*>(udp + 1);
  if ((Be32(vx->vx_flags) & 0x08000000) == 0) return k_vxlan_bad_flags;
  if ((Be32(vx->vx_vni) >> 8) != expected_vni) return k_vxlan_bad_vni;
  const uint32_t inner_off = outer.l4_offset + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr);
  const uint32_t inner_len = udp_len - sizeof(rte_udp_hdr) - sizeof(rte_vxlan_hdr);
  rte_pktmbuf_adj(m, static_cast<uint16_t>(inner_off));
  if (rte_pktmbuf_data_len(m) > inner_len)
    rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_data_len(m) - inner_len));
  return kCounterCount;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_VXLAN_VXLAN_H_
