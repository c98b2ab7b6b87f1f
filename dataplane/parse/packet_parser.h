// Parsing of Ethernet / ARP / IPv4 / TCP / UDP / ICMP with every length
// checked against the frame. A packet that fails a check is classified with
// the counter naming why; nothing is read past rte_pktmbuf_data_len().
//
// Stateless and thread-compatible: workers call it on their own mbufs.
#ifndef SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_
#define SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_

#include <rte_mbuf.h>

#include <cstdint>

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
void ParsePacket(const rte_mbuf* m, uint16_t offset, PacketMeta* meta);

// Drops bytes past the IPv4 total length (Ethernet padding) so that
// encapsulation does not carry them.
void TrimToIpLength(rte_mbuf* m, const PacketMeta& meta);

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_PARSE_PACKET_PARSER_H_
