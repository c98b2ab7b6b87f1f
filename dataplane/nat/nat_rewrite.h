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

// One's-complement sum of the 16-bit word changes old -> new (memory order)
// that turn packet tuple `in` into `out`, for the IPv4 header checksum and
// the L4 checksum (pseudo-header addresses and ports for TCP and UDP; the
// identifier only for ICMP echo, whose checksum has no pseudo-header).
// Computed once per flow direction when the flow is created (VPP nat44-ed's
// per-session checksum deltas); applied by ApplyRewrite.
struct RewriteDeltas {
  uint16_t ip = 0;
  uint16_t l4 = 0;
};

inline uint16_t FoldChecksum(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The one's-complement sum of two 16-bit values: FoldChecksum(a + b) with
// one fold, which is enough (a + b <= 0x1fffe folds to at most 0xffff).
inline uint16_t AddOnes16(uint16_t a, uint16_t b) {
  const uint32_t sum = uint32_t{a} + b;
  return static_cast<uint16_t>((sum & 0xffff) + (sum >> 16));
}

inline RewriteDeltas ComputeRewriteDeltas(const FlowKey& in, const FlowKey& out) {
  auto word_diff32 = [](uint32_t old_host, uint32_t new_host) {
    const uint32_t o = Be32(old_host), n = Be32(new_host);
    return uint32_t{static_cast<uint16_t>(~o)} + static_cast<uint16_t>(~(o >> 16)) + (n & 0xffff) +
           (n >> 16);
  };
  auto word_diff16 = [](uint16_t old_host, uint16_t new_host) {
    return uint32_t{static_cast<uint16_t>(~Be16(old_host))} + Be16(new_host);
  };
  const uint32_t ip = word_diff32(in.src_ip, out.src_ip) + word_diff32(in.dst_ip, out.dst_ip);
  const uint32_t ports =
      word_diff16(in.src_port, out.src_port) + word_diff16(in.dst_port, out.dst_port);
  RewriteDeltas d;
  d.ip = FoldChecksum(ip);
  d.l4 = in.proto == kProtoIcmp ? FoldChecksum(ports) : FoldChecksum(ip + ports);
  return d;
}

// HC' = ~(~HC + delta) (RFC 1624 eqn. 3).
inline uint16_t ApplyChecksumDelta(uint16_t csum, uint16_t delta) {
  return static_cast<uint16_t>(~AddOnes16(static_cast<uint16_t>(~csum), delta));
}

// Rewrites the packet's tuple (meta->key, as parsed) to `out`, or to the
// reverse of `out` when `reversed` (a conntrack entry holds the tuples as
// they arrive; a packet leaves as the other direction's tuple reversed), with
// the precomputed deltas of ComputeRewriteDeltas(meta->key, that tuple).
// Fields are read and written one by one: building the reversed tuple as a
// struct first costs a store-forwarding stall per packet (bench).
inline void ApplyRewrite(rte_mbuf* m, PacketMeta* meta, const FlowKey& out, const RewriteDeltas& d,
                         bool reversed = false) {
  const uint32_t src_ip = reversed ? out.dst_ip : out.src_ip;
  const uint32_t dst_ip = reversed ? out.src_ip : out.dst_ip;
  const uint16_t src_port = reversed ? out.dst_port : out.src_port;
  const uint16_t dst_port = reversed ? out.src_port : out.dst_port;
  rte_ipv4_hdr* ip = Ipv4Header(m, *meta);
  ip->src_addr = Be32(src_ip);
  ip->dst_addr = Be32(dst_ip);
  ip->hdr_checksum = ApplyChecksumDelta(ip->hdr_checksum, d.ip);
  switch (meta->key.proto) {
    case kProtoTcp: {
      auto* tcp = rte_pktmbuf_mtod_offset(m, rte_tcp_hdr*, meta->l4_offset);
      tcp->src_port = Be16(src_port);
      tcp->dst_port = Be16(dst_port);
      tcp->cksum = ApplyChecksumDelta(tcp->cksum, d.l4);
      break;
    }
    case kProtoUdp: {
      auto* udp = rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, meta->l4_offset);
      udp->src_port = Be16(src_port);
      udp->dst_port = Be16(dst_port);
      if (udp->dgram_cksum != 0) {
        const uint16_t c = ApplyChecksumDelta(udp->dgram_cksum, d.l4);
        udp->dgram_cksum = c == 0 ? 0xffff : c;  // 0 means "no checksum"
      }
      break;
    }
    case kProtoIcmp: {
      auto* icmp = rte_pktmbuf_mtod_offset(m, rte_icmp_hdr*, meta->l4_offset);
      icmp->icmp_ident = Be16(meta->is_icmp_echo_reply ? dst_port : src_port);
      icmp->icmp_cksum = ApplyChecksumDelta(icmp->icmp_cksum, d.l4);
      break;
    }
    default:
      break;
  }
  meta->key.src_ip = src_ip;
  meta->key.dst_ip = dst_ip;
  meta->key.src_port = src_port;
  meta->key.dst_port = dst_port;
}

// Forwarding as a router: false when the TTL would reach 0 (the caller drops
// with ttl_exceeded).
// `d` with a TTL decrement folded into its IPv4 header delta: the TTL's
// 16-bit word (TTL, protocol) drops by 0x0100 in network order, i.e. the
// one's complement of that, in the byte order the header is summed in (as
// DecrementTtl's words), is added to the header sum. Applying it gives the
// same checksum as ApplyRewrite followed by DecrementTtl (both sums end in
// 1..0xffff).
inline RewriteDeltas WithTtlDecrement(RewriteDeltas d) {
  d.ip = AddOnes16(d.ip, static_cast<uint16_t>(~Be16(0x0100)));
  return d;
}

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
