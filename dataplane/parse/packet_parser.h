// Parsing of Ethernet / ARP / IPv4 / TCP / UDP / ICMP with every length
// checked against the frame. A packet that fails a check is classified with
// the counter naming why; nothing is read past rte_pktmbuf_data_len().
//
// Stateless and thread-compatible: workers call it on their own mbufs.
#ifndef SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_
#define SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstdint>
#include <cstring>

#include "dataplane/common/counters.h"
#include "dataplane/common/types.h"

namespace sluice {

enum class PacketClass : uint8_t {
  kDrop,  // malformed; PacketMeta::drop_reason says why
  kArp,   // a well-formed Ethernet/IPv4 ARP packet at l3_offset
  kIpv4,  // a well-formed IPv4 packet; key filled in
};

struct PacketMeta {
  uint16_t l3_offset = 0;  // from the start of the mbuf data
  uint16_t l4_offset = 0;  // valid for kIpv4
  uint16_t ip_total_length = 0;
  uint8_t tcp_flags = 0;   // TCP only
  bool has_ports = false;  // TCP, UDP, or ICMP echo (the key has ports)
  bool is_icmp_echo_reply = false;
  PacketClass cls = PacketClass::kDrop;
  Counter drop_reason = kCounterCount;
  FlowKey key;  // kIpv4: addresses, ports, protocol
};

// Parses the frame starting at byte `offset` of the mbuf's data (0 for a
// frame off the wire, the inner frame's offset after VXLAN). Frames longer
// than the IPv4 total length (Ethernet padding) are accepted; the padding is
// trimmed by TrimToIpLength. Fragments and multi-segment mbufs are drops.
//
// The IPv4 header checksum is verified. L4 checksums are not: like the
// kernel forwarding path, Sluice forwards what it cannot verify cheaply and
// keeps them correct by incremental updates.
//
// Defined here, inline: it is the first thing every packet meets.
inline void ParsePacket(const rte_mbuf* m, uint16_t offset, PacketMeta* meta);

// Drops bytes past the IPv4 total length (Ethernet padding) so that
// encapsulation does not carry them.
inline void TrimToIpLength(rte_mbuf* m, const PacketMeta& meta);

namespace parser_internal {

inline void Fail(PacketMeta* meta, Counter reason) {
  meta->cls = PacketClass::kDrop;
  meta->drop_reason = reason;
}

// Whether an IPv4 header's checksum is right: its one's-complement sum of
// 16-bit words is 0xffff. The 32-bit words are added in 64 bits instead
// (2^16 = 1 modulo 0xffff, so that sum is congruent to the 16-bit word sum)
// and a right header is one whose sum is a non-zero multiple of 0xffff; a
// version-4 header is never all zero. One multiply-based modulo instead of
// four folds.
inline bool HeaderChecksumValid(const void* hdr, uint32_t len) {
  const auto* p = static_cast<const uint8_t*>(hdr);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < len; i += 4) {
    uint32_t w;
    std::memcpy(&w, p + i, 4);
    sum += w;
  }
  return sum % 0xffff == 0 && sum != 0;
}

}  // namespace parser_internal

inline void ParsePacket(const rte_mbuf* m, uint16_t offset, PacketMeta* meta) {
  using parser_internal::Fail;
  using parser_internal::HeaderChecksumValid;
  meta->tcp_flags = 0;
  meta->has_ports = false;
  meta->is_icmp_echo_reply = false;
  meta->key = FlowKey{};
  if (m->nb_segs != 1) return Fail(meta, k_multisegment_unsupported);
  const uint32_t len = rte_pktmbuf_data_len(m);
  const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
  if (len < uint32_t{offset} + sizeof(rte_ether_hdr)) return Fail(meta, k_eth_truncated);
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(data + offset);
  const uint16_t ether_type = Be16(eth->ether_type);
  const uint32_t l3 = offset + sizeof(rte_ether_hdr);
  meta->l3_offset = static_cast<uint16_t>(l3);

  if (unlikely(ether_type != RTE_ETHER_TYPE_IPV4)) {
    if (ether_type != RTE_ETHER_TYPE_ARP) return Fail(meta, k_unsupported_ethertype);
    if (len < l3 + sizeof(rte_arp_hdr)) return Fail(meta, k_arp_truncated);
    const auto* arp = reinterpret_cast<const rte_arp_hdr*>(data + l3);
    if (arp->arp_hardware != Be16(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != Be16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != RTE_ETHER_ADDR_LEN ||
        arp->arp_plen != 4)
      return Fail(meta, k_arp_truncated);
    meta->cls = PacketClass::kArp;
    return;
  }

  if (len < l3 + sizeof(rte_ipv4_hdr)) return Fail(meta, k_ipv4_truncated);
  const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(data + l3);
  // Version 4 with a 20-byte header (0x45), nearly every packet, is one
  // compare; options and bad versions or lengths take the checks one by one.
  uint32_t ihl = sizeof(rte_ipv4_hdr);
  if (unlikely(ip->version_ihl != RTE_IPV4_VHL_DEF)) {
    if ((ip->version_ihl >> 4) != 4) return Fail(meta, k_ipv4_bad_version);
    ihl = (ip->version_ihl & 0xf) * 4u;
    if (ihl < sizeof(rte_ipv4_hdr)) return Fail(meta, k_ipv4_bad_ihl);
    if (len < l3 + ihl) return Fail(meta, k_ipv4_truncated);
  }
  const uint32_t total = Be16(ip->total_length);
  if (total < ihl || l3 + total > len) return Fail(meta, k_ipv4_bad_total_length);
  // Options are rare: the 20-byte header's sum is five unrolled adds.
  const bool sum_ok = ihl == sizeof(rte_ipv4_hdr) ? HeaderChecksumValid(ip, sizeof(rte_ipv4_hdr))
                                                  : HeaderChecksumValid(ip, ihl);
  if (!sum_ok) return Fail(meta, k_ipv4_bad_checksum);
  const uint16_t frag = Be16(ip->fragment_offset);
  if ((frag & RTE_IPV4_HDR_MF_FLAG) || (frag & RTE_IPV4_HDR_OFFSET_MASK))
    return Fail(meta, k_ipv4_fragment);

  meta->ip_total_length = static_cast<uint16_t>(total);
  meta->key.src_ip = Be32(ip->src_addr);
  meta->key.dst_ip = Be32(ip->dst_addr);
  meta->key.proto = ip->next_proto_id;
  const uint32_t l4 = l3 + ihl;
  meta->l4_offset = static_cast<uint16_t>(l4);
  const uint32_t l4_len = total - ihl;
  if (!IsUnicastHost(meta->key.src_ip)) return Fail(meta, k_ipv4_bad_source);

  switch (ip->next_proto_id) {
    case IPPROTO_TCP: {
      if (l4_len < sizeof(rte_tcp_hdr)) return Fail(meta, k_tcp_truncated);
      const auto* tcp = reinterpret_cast<const rte_tcp_hdr*>(data + l4);
      const uint32_t doff = (tcp->data_off >> 4) * 4u;
      if (doff < sizeof(rte_tcp_hdr) || doff > l4_len) return Fail(meta, k_tcp_truncated);
      meta->key.src_port = Be16(tcp->src_port);
      meta->key.dst_port = Be16(tcp->dst_port);
      meta->tcp_flags = tcp->tcp_flags;
      meta->has_ports = true;
      break;
    }
    case IPPROTO_UDP: {
      if (l4_len < sizeof(rte_udp_hdr)) return Fail(meta, k_udp_bad_length);
      const auto* udp = reinterpret_cast<const rte_udp_hdr*>(data + l4);
      const uint32_t ulen = Be16(udp->dgram_len);
      if (ulen < sizeof(rte_udp_hdr) || ulen > l4_len) return Fail(meta, k_udp_bad_length);
      meta->key.src_port = Be16(udp->src_port);
      meta->key.dst_port = Be16(udp->dst_port);
      meta->has_ports = true;
      break;
    }
    case IPPROTO_ICMP: {
      if (l4_len < sizeof(rte_icmp_hdr)) return Fail(meta, k_icmp_truncated);
      const auto* icmp = reinterpret_cast<const rte_icmp_hdr*>(data + l4);
      const uint16_t id = Be16(icmp->icmp_ident);
      if (icmp->icmp_type == RTE_IP_ICMP_ECHO_REQUEST && icmp->icmp_code == 0) {
        meta->key.src_port = id;
        meta->has_ports = true;
      } else if (icmp->icmp_type == RTE_IP_ICMP_ECHO_REPLY && icmp->icmp_code == 0) {
        meta->key.dst_port = id;
        meta->has_ports = true;
        meta->is_icmp_echo_reply = true;
      }
      break;
    }
    default:
      break;  // other protocols are routed without NAT
  }
  meta->cls = PacketClass::kIpv4;
}

inline void TrimToIpLength(rte_mbuf* m, const PacketMeta& meta) {
  const uint32_t want = uint32_t{meta.l3_offset} + meta.ip_total_length;
  const uint32_t have = rte_pktmbuf_data_len(m);
  if (have > want) rte_pktmbuf_trim(m, static_cast<uint16_t>(have - want));
}


}  // namespace sluice

#endif  // SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_
