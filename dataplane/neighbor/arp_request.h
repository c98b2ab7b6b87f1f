// The ARP request Sluice sends to resolve (or refresh) a next hop on one of
// its ports: broadcast, from the port's MAC and the address Sluice holds on
// that port. Off the per-packet path (next hops unresolved or due for a
// refresh); allocates from the worker's pool.
#ifndef SLUICE_DATAPLANE_NEIGHBOR_ARP_REQUEST_H_
#define SLUICE_DATAPLANE_NEIGHBOR_ARP_REQUEST_H_

#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/common/packet_priv.h"
#include "dataplane/tables/table_set.h"

namespace sluice {

// The address Sluice answers ARP for, and asks from, on a port.
inline uint32_t OwnAddress(const NodeView& n, PortRole port) {
  return port == PortRole::kPods ? n.pods_gateway_ip : n.node_ip;
}

// nullptr when the pool is empty.
inline rte_mbuf* BuildArpRequest(rte_mempool* pool, const NodeView& n, PortRole port,
                                 uint32_t target_ip) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  if (m == nullptr) return nullptr;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(
      rte_pktmbuf_append(m, sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr)));
  if (eth == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  const MacAddress& mac = n.port_mac[static_cast<int>(port)];
  std::memset(&eth->dst_addr, 0xff, 6);
  std::memcpy(&eth->src_addr, mac.data(), 6);
  eth->ether_type = Be16(RTE_ETHER_TYPE_ARP);
  auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
  arp->arp_hardware = Be16(RTE_ARP_HRD_ETHER);
  arp->arp_protocol = Be16(RTE_ETHER_TYPE_IPV4);
  arp->arp_hlen = RTE_ETHER_ADDR_LEN;
  arp->arp_plen = 4;
  arp->arp_opcode = Be16(RTE_ARP_OP_REQUEST);
  std::memcpy(&arp->arp_data.arp_sha, mac.data(), 6);
  arp->arp_data.arp_sip = Be32(OwnAddress(n, port));
  std::memset(&arp->arp_data.arp_tha, 0, 6);
  arp->arp_data.arp_tip = Be32(target_ip);
  Priv(m)->tx_port = static_cast<uint8_t>(port);
  return m;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_NEIGHBOR_ARP_REQUEST_H_
