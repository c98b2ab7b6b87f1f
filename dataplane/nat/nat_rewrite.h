// Header rewrites for NAT and forwarding, with checksums updated
// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')), never recomputed over
// the payload. Inline: these sit on the per-packet path.
//
// All functions take host-order values and write network order. Callers
// guarantee the headers were validated by ParsePacket.
#ifndef SLUICE_DATAPLANE_NAT_NAT_REWRITE_H_
#define SLUICE_DATAPLANE_NAT_NAT_REWRITE_H_

#include <rte_byteorder.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include <cstdint>

#include "dataplane/parse/packet_parser.h"

namespace sluice {

// Adds the one's-complement difference (old -> new) of a 32-bit field to a
// checksum stored in network order. Values are in network order too: the
// arithmetic is byte-order independent as long as it is consistent.
inline uint16_t ChecksumUpdate32(uint16_t csum, uint32_t old_be, uint32_t new_be) {
  uint32_t sum = static_cast<uint16_t>(~csum);
  sum += static_cast<uint16_t>(~old_be) + static_cast<uint16_t>(~old_be >> 16);
  sum += (new_be & 0xffff) + (new_be >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline uint16_t ChecksumUpdate16(uint16_t csum, uint16_t old_be, uint16_t new_be) {
  uint32_t sum = static_cast<uint16_t>(~csum);
  sum += static_cast<uint16_t>(~old_be);
  sum += new_be;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline rte_ipv4_hdr* Ipv4Header(rte_mbuf* m, const PacketMeta& meta) {
  return rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, meta.l3_offset);
}

// Where the L4 checksum of this packet lives, or nullptr when the address
// is not covered by one (ICMP, other protocols, UDP with checksum 0).
inline uint16_t* PseudoHeaderChecksum(rte_mbuf* m, const PacketMeta& meta) {
  if (meta.key.proto == kProtoTcp)
    return &rte_pktmbuf_mtod_offset(m, rte_tcp_hdr*, meta.l4_offset)->cksum;
  if (meta.key.proto == kProtoUdp) {
    auto* udp = rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, meta.l4_offset);
    return udp->dgram_cksum == 0 ? nullptr : &udp->dgram_cksum;
  }
  return nullptr;
}

// Rewrites the source (is_source) or destination address and port. For ICMP
// echo the "port" is the identifier, on the side FlowKey puts it.
inline void RewriteEndpoint(rte_mbuf* m, PacketMeta* meta, bool is_source, uint32_t new_ip,
                            uint16_t new_port) {
  rte_ipv4_hdr* ip = Ipv4Header(m, *meta);
  uint16_t* l4csum = PseudoHeaderChecksum(m, *meta);
  const uint32_t new_ip_be = Be32(new_ip);
  uint32_t* addr = is_source ? &ip->src_addr : &ip->dst_addr;
  if (*addr != new_ip_be) {
    ip->hdr_checksum = ChecksumUpdate32(ip->hdr_checksum, *addr, new_ip_be);
    if (l4csum != nullptr) *l4csum = ChecksumUpdate32(*l4csum, *addr, new_ip_be);
    *addr = new_ip_be;
  }
  uint16_t* port = nullptr;
  if (meta->key.proto == kProtoTcp) {
    auto* tcp = rte_pktmbuf_mtod_offset(m, rte_tcp_hdr*, meta->l4_offset);
    port = is_source ? &tcp->src_port : &tcp->dst_port;
  } else if (meta->key.proto == kProtoUdp) {
    auto* udp = rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, meta->l4_offset);
    port = is_source ? &udp->src_port : &udp->dst_port;
  } else if (meta->key.proto == kProtoIcmp && meta->has_ports) {
    // The identifier sits where FlowKey put it: src_port of a request,
    // dst_port of a reply. Only that side is rewritten.
    const bool id_side = meta->is_icmp_echo_reply ? !is_source : is_source;
    if (id_side) {
      auto* icmp = rte_pktmbuf_mtod_offset(m, rte_icmp_hdr*, meta->l4_offset);
      port = &icmp->icmp_ident;
      l4csum = &icmp->icmp_cksum;
    }
  }
  const uint16_t new_port_be = Be16(new_port);
  if (port != nullptr && *port != new_port_be) {
    if (l4csum != nullptr) *l4csum = ChecksumUpdate16(*l4csum, *port, new_port_be);
    *port = new_port_be;
  }
  // A UDP checksum that computes to 0 is sent as 0xffff (0 means "none").
  if (meta->key.proto == kProtoUdp && l4csum != nullptr && *l4csum == 0) *l4csum = 0xffff;
  if (is_source) {
    meta->key.src_ip = new_ip;
    if (port != nullptr) meta->key.src_port = new_port;
  } else {
    meta->key.dst_ip = new_ip;
    if (port != nullptr) meta->key.dst_port = new_port;
  }
}

// Forwarding as a router: false when the TTL would reach 0 (the caller drops
// with ttl_exceeded).
inline bool DecrementTtl(rte_mbuf* m, const PacketMeta& meta) {
  rte_ipv4_hdr* ip = Ipv4Header(m, meta);
  if (ip->time_to_live <= 1) return false;
  // TTL is the high byte of the 16-bit word it shares with the protocol.
  const uint16_t old_word = Be16(static_cast<uint16_t>(ip->time_to_live << 8));
  ip->time_to_live--;
  const uint16_t new_word = Be16(static_cast<uint16_t>(ip->time_to_live << 8));
  ip->hdr_checksum = ChecksumUpdate16(ip->hdr_checksum, old_word, new_word);
  return true;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_NAT_NAT_REWRITE_H_
