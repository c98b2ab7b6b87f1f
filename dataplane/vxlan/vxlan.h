// VXLAN encapsulation and decapsulation as the Linux vxlan device flannel
// creates (flannel.<VNI>, learning off, default options) does them: outer
// IPv4 TTL 64 (ip4_dst_hoplimit), DF clear, TOS carrying the inner ECN bits
// only (CE leaves as ECT(0); decapsulation per RFC 6040), UDP source port
// from the inner flow hash mapped into the local port range [32768, 61000)
// as udp_flow_src_port() does, VXLAN flags 0x08 (I) and the VNI, inner
// destination MAC the remote VtepMAC. One known difference: the outer UDP
// checksum is sent as 0, which RFC 7348 allows and the kernel's receive path
// accepts, where the kernel device computes one by default.
//
// Stateless; inline where on the per-packet path.
#ifndef SLUICE_DATAPLANE_VXLAN_VXLAN_H_
#define SLUICE_DATAPLANE_VXLAN_VXLAN_H_

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
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

// The inner flow hash the source port is derived from (the kernel uses the
// skb's flow hash; any stable hash of the inner tuple spreads the same way).
inline uint32_t VxlanInnerHash(const FlowKey& inner) {
  return rte_hash_crc(&inner, sizeof(inner), 0);
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

// Outer TOS from the inner one, as the kernel's ip_tunnel_ecn_encap with
// the device's tos 0 (flannel sets none): the inner ECN field is copied,
// except CE, which leaves as ECT(0) (INET_ECN_encapsulate); DSCP is not.
inline uint8_t VxlanOuterEcn(uint8_t inner_tos) {
  const uint8_t ecn = inner_tos & 0x3;
  return ecn == 0x3 ? 0x2 : ecn;
}

// RFC 6040 decapsulation (the kernel's IP_ECN_decapsulate): an outer CE
// marks the inner packet CE when it is ECN-capable; an outer CE over a
// Not-ECT inner packet is dropped (vxlan_ecn_ce_not_ect). Returns false
// for that drop. `inner` is the parsed inner packet.
inline bool VxlanDecapsulateEcn(rte_mbuf* m, const PacketMeta& inner, uint8_t outer_tos) {
  if ((outer_tos & 0x3) != 0x3) return true;
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, inner.l3_offset);
  const uint8_t ecn = ip->type_of_service & 0x3;
  if (ecn == 0) return false;
  if (ecn == 0x3) return true;
  // The TOS byte is the low byte of the first header word (version/IHL, TOS).
  const uint16_t old_word = *reinterpret_cast<const uint16_t*>(ip);
  ip->type_of_service |= 0x3;
  const uint16_t new_word = *reinterpret_cast<const uint16_t*>(ip);
  uint32_t sum = static_cast<uint16_t>(~ip->hdr_checksum);
  sum += static_cast<uint16_t>(~old_word) + new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  ip->hdr_checksum = static_cast<uint16_t>(~sum);
  return true;
}

// The 50 outer bytes (Ethernet, IPv4, UDP, VXLAN) of `p` with the IPv4 total
// length, IP ID, TOS, UDP length and UDP source port left 0, and the IPv4
// checksum of that header in *csum_base: what one peer's packets share.
inline void VxlanBuildOuterHeader(const VxlanEncapParams& p, uint8_t* out, uint16_t* csum_base) {
  std::memset(out, 0, kVxlanOverhead);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(out);
  std::memcpy(&eth->dst_addr, p.outer_dst_mac.data(), 6);
  std::memcpy(&eth->src_addr, p.outer_src_mac.data(), 6);
  eth->ether_type = Be16(RTE_ETHER_TYPE_IPV4);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
  ip->version_ihl = RTE_IPV4_VHL_DEF;
  ip->time_to_live = 64;  // ip4_dst_hoplimit
  ip->next_proto_id = IPPROTO_UDP;
  ip->src_addr = Be32(p.outer_src_ip);
  ip->dst_addr = Be32(p.outer_dst_ip);
  *csum_base = rte_ipv4_cksum(ip);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->dst_port = Be16(p.udp_dst_port);
  auto* vx = reinterpret_cast<rte_vxlan_hdr*>(udp + 1);
  vx->vx_flags = Be32(0x08000000);
  vx->vx_vni = Be32(p.vni << 8);
}

// Encapsulates the frame at the mbuf's data (inner Ethernet header, an IPv4
// packet described by `inner`, l3_offset 14) with a header built by
// VxlanBuildOuterHeader: sets the inner MACs (`inner_macs`: destination then
// source), prepends `outer` and patches lengths, IP ID, ECN and checksum, and
// the UDP source port. Returns false when the mbuf lacks headroom for the 50
// outer bytes.
inline bool VxlanEncapsulateWithHeader(rte_mbuf* m, const PacketMeta& inner, const uint8_t* outer,
                                       uint16_t csum_base, const uint8_t* inner_macs,
                                       uint16_t ip_id, uint16_t udp_src_port) {
  std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), inner_macs, 12);
  const uint8_t ecn = VxlanOuterEcn(
      rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, inner.l3_offset)->type_of_service);
  const uint16_t inner_frame_len = rte_pktmbuf_data_len(m);
  char* p = rte_pktmbuf_prepend(m, kVxlanOverhead);
  if (p == nullptr) return false;
  std::memcpy(p, outer, kVxlanOverhead);
  auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p + sizeof(rte_ether_hdr));
  const uint16_t ip_len = static_cast<uint16_t>(inner_frame_len + sizeof(rte_ipv4_hdr) +
                                                sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr));
  ip->type_of_service = ecn;
  ip->total_length = Be16(ip_len);
  ip->packet_id = Be16(ip_id);
  uint32_t sum = static_cast<uint16_t>(~csum_base);
  sum += Be16(ecn) + Be16(ip_len) + Be16(ip_id);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  ip->hdr_checksum = static_cast<uint16_t>(~sum);
  auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
  udp->src_port = Be16(udp_src_port);
  udp->dgram_len =
      Be16(static_cast<uint16_t>(inner_frame_len + sizeof(rte_udp_hdr) + sizeof(rte_vxlan_hdr)));
  return true;
}

// One-off encapsulation from parameters (tests, tools): the same bytes the
// per-peer path produces.
inline bool VxlanEncapsulate(rte_mbuf* m, const PacketMeta& inner, const VxlanEncapParams& p) {
  uint8_t outer[kVxlanOverhead];
  uint16_t base;
  VxlanBuildOuterHeader(p, outer, &base);
  uint8_t macs[12];
  std::memcpy(macs, p.inner_dst_mac.data(), 6);
  std::memcpy(macs + 6, p.inner_src_mac.data(), 6);
  return VxlanEncapsulateWithHeader(m, inner, outer, base, macs, p.ip_id, p.udp_src_port);
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
