// Small value types shared by the dataplane and the control process: flow
// keys, port roles, MAC addresses, and the burst size.
#ifndef SLUICE_DATAPLANE_COMMON_TYPES_H_
#define SLUICE_DATAPLANE_COMMON_TYPES_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace sluice {

// Packets per rx burst and per stage call. Stages keep scratch arrays of this
// size on the stack.
inline constexpr uint16_t kBurstSize = 32;
// Packets the rx node takes from one port queue per graph walk: each node
// call then carries up to this many, which halves the graph's per-call cost
// per packet against 32 (bench: main row 192 -> 161 cycles). Nodes still
// look up in bulk kBurstSize at a time.
inline constexpr uint16_t kRxBurstPerPort = 64;

using MacAddress = std::array<uint8_t, 6>;

// Which of the node's three ports an object belongs to.
enum class PortRole : uint8_t { kUplink = 0, kPods = 1, kHost = 2 };
inline constexpr int kPortRoleCount = 3;
const char* PortRoleName(PortRole role);

// "10.244.1.0" from a host-byte-order address; "aa:bb:cc:dd:ee:ff". For
// messages and traces, never the per-packet path.
std::string FormatIpv4(uint32_t ip);
std::string FormatMac(const MacAddress& mac);

// A unicast host address (host byte order): not 0.0.0.0/8, loopback
// 127.0.0.0/8, multicast 224.0.0.0/4, class E 240.0.0.0/4 or the broadcast.
inline constexpr bool IsUnicastHost(uint32_t ip) {
  const uint32_t first = ip >> 24;
  return first - 1 < 223 && first != 127;  // 0 wraps to 2^32 - 1
}

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

// A flow's identity in one direction. Addresses and ports in host byte order.
// For ICMP echo the identifier stands in as a port: requests carry it as
// src_port (dst_port 0), replies as dst_port (src_port 0), so that a reply's
// key is the request's key reversed, as for TCP and UDP.
struct FlowKey {
  uint32_t src_ip = 0;
  uint32_t dst_ip = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t proto = 0;
  uint8_t pad[3] = {0, 0, 0};  // always zero: keys are hashed and compared as bytes

  FlowKey Reversed() const {
    FlowKey r;
    r.src_ip = dst_ip;
    r.dst_ip = src_ip;
    r.src_port = dst_port;
    r.dst_port = src_port;
    r.proto = proto;
    return r;
  }
  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(FlowKey) == 16);

// Byte-order conversion for the per-packet path. DPDK's rte_cpu_to_be_16
// on x86 is a volatile inline asm (xchgb) that the compiler cannot schedule
// or fold; the builtins compile to the same single instruction and can be
// (bench: BM_NatRewrite, BM_Parse).
inline constexpr uint16_t Be16(uint16_t v) { return __builtin_bswap16(v); }
inline constexpr uint32_t Be32(uint32_t v) { return __builtin_bswap32(v); }
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Be16/Be32 assume a little-endian CPU");

inline uint32_t PrefixMask(uint8_t length) {
  return length == 0 ? 0 : ~uint32_t{0} << (32 - length);
}

// Milliseconds in a clock of `ticks_per_second` (the TSC in workers), split
// so that GHz rates times minutes of milliseconds cannot wrap.
inline constexpr uint64_t MillisecondsToTicks(uint32_t ms, uint64_t ticks_per_second) {
  return uint64_t{ms / 1000} * ticks_per_second + uint64_t{ms % 1000} * ticks_per_second / 1000;
}

// An IPv4 subnet as a network address and a contiguous mask, host order.
struct Ipv4Subnet {
  uint32_t network = 0;
  uint32_t mask = 0;
  bool Contains(uint32_t ip) const { return (ip & mask) == (network & mask); }
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_COMMON_TYPES_H_
