#include "dataplane/worker/worker.h"

#include <rte_arp.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_hash_crc.h>
#include <rte_ip.h>
#include <rte_random.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/vxlan/vxlan.h"

namespace sluice {
namespace {

std::string Describe(const FlowKey& k, uint8_t tcp_flags) {
  switch (k.proto) {
    case kProtoTcp: {
      std::string flags;
      if (tcp_flags & 0x02) flags += "SYN,";
      if (tcp_flags & 0x10) flags += "ACK,";
      if (tcp_flags & 0x08) flags += "PSH,";
      if (tcp_flags & 0x01) flags += "FIN,";
      if (tcp_flags & 0x04) flags += "RST,";
      if (!flags.empty()) flags = " [" + flags.substr(0, flags.size() - 1) + "]";
      return absl::StrFormat("TCP %s:%u -> %s:%u%s", FormatIpv4(k.src_ip), k.src_port,
                             FormatIpv4(k.dst_ip), k.dst_port, flags);
    }
    case kProtoUdp:
      return absl::StrFormat("UDP %s:%u -> %s:%u", FormatIpv4(k.src_ip), k.src_port,
                             FormatIpv4(k.dst_ip), k.dst_port);
    case kProtoIcmp:
      return absl::StrFormat("ICMP %s -> %s (id %u)", FormatIpv4(k.src_ip), FormatIpv4(k.dst_ip),
                             k.src_port | k.dst_port);
    default:
      return absl::StrFormat("IP proto %u %s -> %s", k.proto, FormatIpv4(k.src_ip),
                             FormatIpv4(k.dst_ip));
  }
}

const char* KindName(ServiceEntryKind k) {
  switch (k) {
    case ServiceEntryKind::kClusterIp:
      return "ClusterIP";
    case ServiceEntryKind::kNodePort:
      return "NodePort";
    case ServiceEntryKind::kExternalIp:
      return "externalIP";
    case ServiceEntryKind::kLoadBalancerIp:
      return "LoadBalancer IP";
  }
  return "?";
}

inline bool MacEquals(const rte_ether_addr& a, const MacAddress& b) {
  return std::memcmp(a.addr_bytes, b.data(), 6) == 0;
}

// The address Sluice answers ARP for on a port (0: none).
inline uint32_t OwnAddress(const NodeView& n, PortRole port) {
  switch (port) {
    case PortRole::kUplink:
      return n.node_ip;
    case PortRole::kPods:
      return n.pods_gateway_ip;
    case PortRole::kHost:
      return n.node_ip;
  }
  return 0;
}

}  // namespace

#define SLUICE_TRACE(m, ...)                                                            \
  do {                                                                                  \
    if (unlikely(tracer_ != nullptr)) tracer_->Note((m), absl::StrFormat(__VA_ARGS__)); \
  } while (0)

void Tracer::Note(const rte_mbuf* m, std::string text) {
  const uint64_t seq = seq_offset_ >= 0 ? *RTE_MBUF_DYNFIELD(m, seq_offset_, const uint64_t*) : 0;
  lines_.push_back({seq, worker_, std::move(text)});
}

const char* EgressName(Egress e) {
  switch (e) {
    case Egress::kNone:
      return "none";
    case Egress::kPods:
      return "pods";
    case Egress::kVxlan:
      return "vxlan";
    case Egress::kUplink:
      return "uplink";
    case Egress::kHost:
      return "host";
  }
  return "?";
}

Worker::Worker(uint16_t id, const WorkerShared& shared, const WorkerPorts& ports, rte_mempool* pool,
               Tracer* tracer)
    : id_(id), shared_(shared), ports_(ports), pool_(pool), tracer_(tracer) {
  // Outer IP IDs (DF clear) start at a random point per worker, so that two
  // workers do not emit the same ID sequence towards one peer.
  ip_id_ = static_cast<uint16_t>(rte_rand());
}

void Worker::Start() {
  rte_rcu_qsbr_thread_register(shared_.qsbr, id_);
  rte_rcu_qsbr_thread_online(shared_.qsbr, id_);
}

void Worker::Stop() {
  rte_rcu_qsbr_thread_offline(shared_.qsbr, id_);
  rte_rcu_qsbr_thread_unregister(shared_.qsbr, id_);
}

void Worker::Drop(rte_mbuf* m, Counter reason) {
  SLUICE_TRACE(m, "  dropped: %s (%s)", CounterInfoOf(reason).name, CounterInfoOf(reason).help);
  counters_.Add(reason);
  rte_pktmbuf_free(m);
}

void Worker::Enqueue(PortRole port, rte_mbuf* m) {
  const int p = static_cast<int>(port);
  if (unlikely(tx_count_[p] == kTxCapacity)) return Drop(m, k_tx_full);
  tx_[p][tx_count_[p]++] = m;
}

uint16_t Worker::TakeTx(PortRole port, rte_mbuf** out) {
  const int p = static_cast<int>(port);
  const uint16_t n = tx_count_[p];
  std::memcpy(out, tx_[p], n * sizeof(rte_mbuf*));
  tx_count_[p] = 0;
  counters_.Add(k_tx_packets, n);
  counters_.Add(static_cast<Counter>(k_tx_uplink + p), n);
  return n;
}

void Worker::Flush() {
  for (int p = 0; p < kPortRoleCount; ++p) {
    const uint16_t n = tx_count_[p];
    if (n == 0) continue;
    tx_count_[p] = 0;
    const uint16_t sent = rte_eth_tx_burst(ports_.port_id[p], ports_.queue, tx_[p], n);
    counters_.Add(k_tx_packets, sent);
    counters_.Add(static_cast<Counter>(k_tx_uplink + p), sent);
    for (uint16_t i = sent; i < n; ++i) {
      counters_.Add(k_tx_full);
      rte_pktmbuf_free(tx_[p][i]);
    }
  }
}

uint32_t Worker::PollOnce(uint64_t now) {
  uint32_t total = 0;
  for (int p = 0; p < kPortRoleCount; ++p) {
    if (!ports_.present[p]) continue;
    rte_mbuf* pkts[kBurstSize];
    const uint16_t n = rte_eth_rx_burst(ports_.port_id[p], ports_.queue, pkts, kBurstSize);
    if (n == 0) continue;
    ProcessBurst(static_cast<PortRole>(p), pkts, n, now);
    total += n;
  }
  Flush();
  rte_rcu_qsbr_quiescent(shared_.qsbr, id_);
  if ((++loops_ & 63) == 0)
    counters_.Add(k_conntrack_expired, shared_.conntrack->Expire(id_, now, 256));
  return total;
}

void Worker::HandleArp(PortRole ingress, rte_mbuf* m, const PacketMeta& meta, const TableSet& t,
                       uint64_t now) {
  const NodeView& n = t.node;
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  auto* arp = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, meta.l3_offset);
  const uint16_t op = Be16(arp->arp_opcode);
  const uint32_t sip = Be32(arp->arp_data.arp_sip);
  const uint32_t tip = Be32(arp->arp_data.arp_tip);
  const MacAddress& our_mac = n.port_mac[static_cast<int>(ingress)];
  const bool to_us =
      rte_is_broadcast_ether_addr(&eth->dst_addr) || MacEquals(eth->dst_addr, our_mac);
  // On the host port every address is ours: the node's kernel routes
  // through Sluice.
  const bool owned = ingress == PortRole::kHost ? tip != sip : tip == OwnAddress(n, ingress);
  SLUICE_TRACE(m, "[%s in] ARP %s: who has %s? tell %s (%s)", PortRoleName(ingress),
               op == RTE_ARP_OP_REQUEST ? "request" : "reply", FormatIpv4(tip), FormatIpv4(sip),
               FormatMac(*reinterpret_cast<const MacAddress*>(arp->arp_data.arp_sha.addr_bytes)));
  if (!to_us || !owned || (op != RTE_ARP_OP_REQUEST && op != RTE_ARP_OP_REPLY))
    return Drop(m, k_arp_not_for_us);
  if (sip != 0) {
    MacAddress sha;
    std::memcpy(sha.data(), arp->arp_data.arp_sha.addr_bytes, 6);
    switch (shared_.neighbors->Learn(ingress, OnLinkSubnet(n, ingress, sip), sip, sha, now)) {
      case NeighborTable::LearnResult::kLearned:
      case NeighborTable::LearnResult::kChanged:
      case NeighborTable::LearnResult::kRefreshed:
        counters_.Add(k_arp_learned);
        SLUICE_TRACE(m, "  neighbour learned: %s is at %s on %s", FormatIpv4(sip), FormatMac(sha),
                     PortRoleName(ingress));
        break;
      case NeighborTable::LearnResult::kStaticKept:
        break;
      case NeighborTable::LearnResult::kQuotaFull:
        counters_.Add(k_arp_learn_quota_full);
        break;
      case NeighborTable::LearnResult::kOffSubnet:
        counters_.Add(k_arp_sender_off_subnet);
        break;
    }
  }
  if (op == RTE_ARP_OP_REPLY) {
    counters_.Add(k_arp_reply_consumed);
    rte_pktmbuf_free(m);  // consumed: it taught us a neighbour
    return;
  }
  // Turn the request into the reply in place.
  rte_ether_addr mine;
  std::memcpy(mine.addr_bytes, our_mac.data(), 6);
  rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
  rte_ether_addr_copy(&mine, &eth->src_addr);
  arp->arp_opcode = Be16(RTE_ARP_OP_REPLY);
  rte_ether_addr_copy(&arp->arp_data.arp_sha, &arp->arp_data.arp_tha);
  rte_ether_addr_copy(&mine, &arp->arp_data.arp_sha);
  arp->arp_data.arp_tip = arp->arp_data.arp_sip;
  arp->arp_data.arp_sip = Be32(tip);
  counters_.Add(k_arp_replied);
  SLUICE_TRACE(m, "  ARP reply: %s is at %s", FormatIpv4(tip), FormatMac(our_mac));
  Enqueue(ingress, m);
}

void Worker::SendArpRequest(PortRole port, uint32_t target_ip, const TableSet& t) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool_);
  if (m == nullptr) return;
  const NodeView& n = t.node;
  const size_t len = sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_append(m, len));
  if (eth == nullptr) {
    rte_pktmbuf_free(m);
    return;
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
  counters_.Add(k_arp_requests_sent);
  Enqueue(port, m);
}

void Worker::ApplyTranslation(rte_mbuf* m, PacketMeta* meta, uint32_t ref) {
  const ConntrackEntry& e = shared_.conntrack->entry(ref);
  if (ref & ConntrackTable::kReplyBit) {
    // A reply: its source is the endpoint (or the original destination) and
    // its destination the masquerade address; restore the original tuple.
    if (e.flags & ConntrackEntry::kDnat)
      RewriteEndpoint(m, meta, true, e.original.dst_ip, e.original.dst_port);
    if (e.flags & ConntrackEntry::kSnat)
      RewriteEndpoint(m, meta, false, e.original.src_ip, e.original.src_port);
  } else {
    if (e.flags & ConntrackEntry::kDnat) RewriteEndpoint(m, meta, false, e.dnat_ip, e.dnat_port);
    if (e.flags & ConntrackEntry::kSnat) RewriteEndpoint(m, meta, true, e.snat_ip, e.snat_port);
  }
}

uint32_t Worker::InsertWithSnat(rte_mbuf* m, ConntrackEntry& proto, uint64_t now, Counter* drop) {
  ConntrackTable& ct = *shared_.conntrack;
  const bool snat = proto.flags & ConntrackEntry::kSnat;
  // MASQUERADE --random-fully: a random port from the original port's class
  // (1-511, 600-1023, 1024-65535), restricted to this worker's share (ports
  // congruent to the worker id), so workers never hand out the same port.
  uint32_t lo = 1024, hi = 65535;
  if (proto.original.proto != kProtoIcmp && proto.original.src_port < 512) {
    lo = 1;
    hi = 511;
  } else if (proto.original.proto != kProtoIcmp && proto.original.src_port < 1024) {
    lo = 600;
    hi = 1023;
  }
  const uint32_t w = shared_.workers;
  uint32_t first = lo + ((id_ + w - lo % w) % w);  // smallest port in [lo,hi] owned by us
  const uint32_t slots = first > hi ? 0 : (hi - first) / w + 1;
  constexpr int kMaxAttempts = 32;
  for (int attempt = 0; attempt < (snat ? kMaxAttempts : 1); ++attempt) {
    if (snat) {
      if (slots == 0) break;
      proto.snat_port = static_cast<uint16_t>(first + rte_rand_max(slots) * w);
      if (ct.ReplyTupleInUse(proto.ReplyKey())) continue;
    }
    const ConntrackTable::InsertResult r = ct.Insert(id_, proto, now);
    switch (r.status) {
      case ConntrackTable::InsertStatus::kCreated:
        counters_.Add(k_conntrack_created);
        if (proto.flags & ConntrackEntry::kDnat) counters_.Add(k_service_dnat);
        SLUICE_TRACE(m, "  conntrack: new flow tracked, original and reply tuples indexed");
        if (snat) counters_.Add(k_masquerade);
        return r.ref;
      case ConntrackTable::InsertStatus::kExists:
        // Another worker created this flow between our lookup and insert.
        counters_.Add(k_conntrack_insert_raced);
        SLUICE_TRACE(m, "  conntrack: another worker created this flow first; using its entry");
        return r.ref;
      case ConntrackTable::InsertStatus::kFull:
        *drop = k_conntrack_full;
        return ConntrackTable::kMiss;
      case ConntrackTable::InsertStatus::kReplyClash:
        if (!snat) {
          *drop = k_conntrack_reply_clash;
          return ConntrackTable::kMiss;
        }
        break;  // try another port
    }
  }
  *drop = snat ? k_snat_ports_exhausted : k_conntrack_reply_clash;
  return ConntrackTable::kMiss;
}

uint32_t Worker::NewFlow(rte_mbuf* m, const PacketMeta& meta, const ServiceEntry* svc,
                         const TableSet& t, uint64_t now, Counter* drop) {
  *drop = kCounterCount;
  const NodeView& n = t.node;
  ConntrackEntry proto;
  proto.original = meta.key;
  proto.dnat_ip = meta.key.dst_ip;
  proto.dnat_port = meta.key.dst_port;
  proto.snat_ip = meta.key.src_ip;
  proto.snat_port = meta.key.src_port;
  bool masq = false;
  const char* masq_why = "";
  if (svc != nullptr) {
    const bool from_cluster = n.InClusterNetwork(meta.key.src_ip);
    uint32_t begin = svc->endpoints_begin, count = svc->endpoints_count;
    const char* which = "ready";
    if (svc->kind == ServiceEntryKind::kClusterIp) {
      if (svc->internal_local_only) {
        begin = svc->local_begin;
        count = svc->local_count;
        which = "node-local (internalTrafficPolicy Local)";
      }
      if (!from_cluster) {
        masq = true;
        masq_why = "source outside the cluster network reaching a ClusterIP";
      }
    } else if (svc->external_local_only) {
      if (!from_cluster) {
        begin = svc->local_begin;
        count = svc->local_count;
        which = "node-local (externalTrafficPolicy Local, client address kept)";
      }
    } else {
      masq = true;
      masq_why = "external traffic with externalTrafficPolicy Cluster (KUBE-EXT -> KUBE-MARK-MASQ)";
    }
    SLUICE_TRACE(
        m, "  service: %s, %s %s:%u (%s)", t.services->name(svc->name_index), KindName(svc->kind),
        svc->kind == ServiceEntryKind::kNodePort ? "node address" : FormatIpv4(meta.key.dst_ip),
        meta.key.dst_port,
        svc->kind == ServiceEntryKind::kNodePort
            ? "KUBE-NODEPORTS: destination is one of this node's addresses"
            : "KUBE-SERVICES");
    if (count == 0) {
      *drop = k_service_no_endpoints;
      return ConntrackTable::kMiss;
    }
    const uint32_t pick = count == 1 ? 0 : static_cast<uint32_t>(rte_rand_max(count));
    const Endpoint& ep = t.services->endpoint(begin + pick);
    SLUICE_TRACE(m, "  endpoint: %s:%u, chosen at random among %u %s endpoint(s) (KUBE-SEP DNAT)",
                 FormatIpv4(ep.ip), ep.port, count, which);
    if (ep.ip == meta.key.src_ip) {
      masq = true;
      masq_why = "hairpin: the endpoint reaches its own Service";
    }
    proto.dnat_ip = ep.ip;
    proto.dnat_port = ep.port;
    proto.flags |= ConntrackEntry::kDnat;
  }
  const RouteResult rr = RouteTo(t, proto.dnat_ip);
  if (!masq && rr.egress != Egress::kHost &&
      FlannelMasquerades(n, meta.key.src_ip, proto.dnat_ip)) {
    masq = true;
    masq_why = "flannel --ip-masq: pod traffic leaving the cluster network";
  }
  if (svc == nullptr && !masq) {
    // No NAT. Still track the flow when its replies would otherwise meet a
    // masquerade rule (a client outside the cluster reaching a pod
    // directly): the kernel matches such replies to the connection and
    // leaves them alone, and so must we.
    if (rr.egress == Egress::kHost || !FlannelMasquerades(n, proto.dnat_ip, meta.key.src_ip))
      return ConntrackTable::kMiss;
    SLUICE_TRACE(m, "  conntrack: tracked without NAT so that its replies are not masqueraded");
  }
  if (masq) {
    if (rr.egress == Egress::kNone) {
      *drop = k_no_route;
      return ConntrackTable::kMiss;
    }
    proto.snat_ip = MasqueradeAddress(n, rr.egress);
    proto.flags |= ConntrackEntry::kSnat;
  }
  const uint32_t ref = InsertWithSnat(m, proto, now, drop);
  if (ref != ConntrackTable::kMiss && masq) {
    const ConntrackEntry& e = shared_.conntrack->entry(ref);
    SLUICE_TRACE(m,
                 "  masquerade: %s; source %s:%u -> %s:%u (address of the %s egress, "
                 "MASQUERADE --random-fully)",
                 masq_why, FormatIpv4(meta.key.src_ip), meta.key.src_port, FormatIpv4(e.snat_ip),
                 e.snat_port,
                 rr.egress == Egress::kVxlan  ? "flannel.1"
                 : rr.egress == Egress::kPods ? "cni0"
                                              : "uplink");
  }
  return ref;
}

void Worker::ProcessBurst(PortRole ingress, rte_mbuf** pkts, uint16_t n, uint64_t now) {
  counters_.Add(k_rx_packets, n);
  const TableSet* tables = shared_.tables->Current();
  if (unlikely(tables == nullptr)) {
    for (uint16_t i = 0; i < n; ++i) Drop(pkts[i], k_no_tables);
    return;
  }
  const TableSet& t = *tables;
  const NodeView& node = t.node;
  const int in = static_cast<int>(ingress);

  // Stage 1: parse, ARP, VXLAN decapsulation. Survivors are IPv4 packets,
  // compacted into live[].
  rte_mbuf* live[kBurstSize];
  PacketMeta meta[kBurstSize];
  uint16_t nlive = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (i + 1 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void*));
    PacketMeta& pm = meta[nlive];
    ParsePacket(m, 0, &pm);
    if (pm.cls == PacketClass::kIpv4)
      SLUICE_TRACE(m, "[%s in] %s, TTL %u", PortRoleName(ingress), Describe(pm.key, pm.tcp_flags),
                   Ipv4Header(m, pm)->time_to_live);
    if (pm.cls == PacketClass::kDrop) {
      SLUICE_TRACE(m, "[%s in] %u bytes", PortRoleName(ingress), rte_pktmbuf_data_len(m));
      Drop(m, pm.drop_reason);
      continue;
    }
    if (pm.cls == PacketClass::kArp) {
      HandleArp(ingress, m, pm, t, now);
      continue;
    }
    if (!MacEquals(rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr, node.port_mac[in])) {
      Drop(m, k_l2_not_for_us);
      continue;
    }
    if (ingress == PortRole::kUplink && pm.key.proto == kProtoUdp &&
        pm.key.dst_ip == node.node_ip && pm.key.dst_port == node.vxlan_port) {
      const uint32_t peer = t.overlay->PeerForPublicIp(pm.key.src_ip);
      if (peer == OverlayTable::kNoPeer || t.overlay->peer(peer).local) {
        Drop(m, k_vxlan_unknown_peer);
        continue;
      }
      const Counter bad = VxlanDecapsulate(m, pm, node.vni);
      if (bad != kCounterCount) {
        Drop(m, bad);
        continue;
      }
      if (!MacEquals(rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr, node.vtep_mac)) {
        Drop(m, k_vxlan_wrong_inner_mac);
        continue;
      }
      ParsePacket(m, 0, &pm);
      if (pm.cls != PacketClass::kIpv4) {
        Drop(m, pm.cls == PacketClass::kArp || pm.drop_reason == k_unsupported_ethertype
                    ? k_vxlan_inner_not_ipv4
                    : pm.drop_reason);
        continue;
      }
      counters_.Add(k_vxlan_decapsulated);
      SLUICE_TRACE(m, "  vxlan: from node %s (lease %s/%u), VNI %u, decapsulated: %s",
                   FormatIpv4(t.overlay->peer(peer).public_ip),
                   FormatIpv4(t.overlay->peer(peer).subnet), t.overlay->peer(peer).subnet_length,
                   node.vni, Describe(pm.key, pm.tcp_flags));
    }
    TrimToIpLength(m, pm);
    live[nlive++] = m;
  }

  // Stage 2: connection tracking, in bulk.
  uint32_t ref[kBurstSize];
  const FlowKey* keys[kBurstSize];
  uint16_t which[kBurstSize];
  uint16_t nk = 0;
  for (uint16_t i = 0; i < nlive; ++i) {
    ref[i] = ConntrackTable::kMiss;
    if (meta[i].has_ports) {
      keys[nk] = &meta[i].key;
      which[nk++] = i;
    }
  }
  if (nk > 0) {
    uint32_t found[kBurstSize];
    shared_.conntrack->LookupBulk(keys, nk, found);
    for (uint16_t j = 0; j < nk; ++j) {
      ref[which[j]] = found[j];
      // The entry is read (translation) and written (last_seen) in stage 4;
      // with a million flows it is rarely in cache.
      if (found[j] != ConntrackTable::kMiss) rte_prefetch0(&shared_.conntrack->entry(found[j]));
    }
  }

  // Stage 3: Services for the misses: exact (ClusterIP, externalIP, LB IP)
  // first, then NodePort for destinations that are the node's own, the order
  // of kube-proxy's KUBE-SERVICES chain.
  const ServiceEntry* svc[kBurstSize] = {};
  ServiceKey skey[kBurstSize];
  const ServiceKey* skp[kBurstSize];
  const ServiceEntry* sfound[kBurstSize];
  nk = 0;
  for (uint16_t i = 0; i < nlive; ++i) {
    if (ref[i] != ConntrackTable::kMiss ||
        (meta[i].key.proto != kProtoTcp && meta[i].key.proto != kProtoUdp))
      continue;
    skey[nk] = ServiceKey{meta[i].key.dst_ip, meta[i].key.dst_port, meta[i].key.proto, 0};
    skp[nk] = &skey[nk];
    which[nk++] = i;
  }
  if (nk > 0) {
    t.services->LookupBulk(skp, nk, sfound);
    uint16_t nn = 0;
    for (uint16_t j = 0; j < nk; ++j) {
      const uint16_t i = which[j];
      svc[i] = sfound[j];
      if (svc[i] == nullptr && node.IsLocalAddress(meta[i].key.dst_ip)) {
        skey[nn] = ServiceKey{0, meta[i].key.dst_port, meta[i].key.proto, 0};
        skp[nn] = &skey[nn];
        which[nn++] = i;
      }
    }
    if (nn > 0) {
      t.services->LookupBulk(skp, nn, sfound);
      for (uint16_t j = 0; j < nn; ++j) svc[which[j]] = sfound[j];
    }
  }

  // Stage 4: NAT (established from the entry, new flows through the slow
  // path), then routing and TTL. Survivors queue for the neighbour lookup.
  rte_mbuf* out[kBurstSize];
  uint16_t out_meta[kBurstSize];
  RouteResult out_route[kBurstSize];
  NeighborKey nkey[kBurstSize];
  const NeighborKey* nkp[kBurstSize];
  uint16_t nout = 0;
  for (uint16_t i = 0; i < nlive; ++i) {
    rte_mbuf* m = live[i];
    PacketMeta& pm = meta[i];
    uint32_t r = ref[i];
    // A miss may have been created since the bulk lookup, by an earlier
    // packet of this burst (or another worker): look again before the slow
    // path. Only first packets pay for this.
    if (r == ConntrackTable::kMiss && pm.has_ports) r = shared_.conntrack->Lookup(pm.key);
    if (r != ConntrackTable::kMiss) {
      const bool reply = r & ConntrackTable::kReplyBit;
      counters_.Add(reply ? k_conntrack_hit_reply : k_conntrack_hit_original);
      shared_.conntrack->Touch(r, pm.tcp_flags, now);
      if (unlikely(tracer_ != nullptr)) {
        const ConntrackEntry& e = shared_.conntrack->entry(r);
        SLUICE_TRACE(m, "  conntrack: %s direction of tracked flow %s",
                     reply ? "reply" : "original", Describe(e.original, 0));
      }
    } else if (pm.has_ports) {
      // A packet that will be forwarded with TTL 1 dies here, before it can
      // create a flow (the kernel never confirms such a conntrack entry).
      if (Ipv4Header(m, pm)->time_to_live <= 1 &&
          (svc[i] != nullptr || !node.IsLocalAddress(pm.key.dst_ip))) {
        Drop(m, k_ttl_exceeded);
        continue;
      }
      Counter drop;
      r = NewFlow(m, pm, svc[i], t, now, &drop);
      if (drop != kCounterCount) {
        Drop(m, drop);
        continue;
      }
    }
    const bool stateless = r == ConntrackTable::kMiss;
    if (!stateless) {
      ApplyTranslation(m, &pm, r);
      SLUICE_TRACE(m, "  nat: now %s", Describe(pm.key, pm.tcp_flags));
    }
    const RouteResult rr = RouteTo(t, pm.key.dst_ip);
    switch (rr.egress) {
      case Egress::kNone:
        Drop(m, k_no_route);
        continue;
      case Egress::kHost:
        counters_.Add(k_to_node);
        if (!node.has_host_port) {
          Drop(m, k_host_path_unavailable);
          continue;
        }
        {
          auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
          std::memcpy(&eth->dst_addr, node.host_peer_mac.data(), 6);
          std::memcpy(&eth->src_addr, node.port_mac[static_cast<int>(PortRole::kHost)].data(), 6);
        }
        SLUICE_TRACE(m, "  route: %s is this node's own address -> host port (kernel)",
                     FormatIpv4(pm.key.dst_ip));
        Enqueue(PortRole::kHost, m);
        continue;
      default:
        break;
    }
    if (!DecrementTtl(m, pm)) {
      Drop(m, k_ttl_exceeded);
      continue;
    }
    if (stateless) counters_.Add(k_forwarded_stateless);
    NeighborKey& k = nkey[nout];
    k = NeighborKey{};
    if (rr.egress == Egress::kVxlan) {
      // Outer IPv4 length = inner IP packet + inner Ethernet + VXLAN + UDP +
      // outer IP = ip_total_length + 50 (the outer Ethernet header is not
      // part of the MTU, the inner one is).
      if (uint32_t{pm.ip_total_length} + kVxlanOverhead > node.uplink_mtu) {
        Drop(m, k_vxlan_too_big);
        continue;
      }
      k.port = static_cast<uint8_t>(PortRole::kUplink);
      k.ip = UplinkNextHop(node, rr.next_hop);
      if (unlikely(tracer_ != nullptr)) {
        const VtepPeer& p = t.overlay->peer(rr.peer);
        SLUICE_TRACE(m, "  route: %s is in %s/%u, leased by node %s -> flannel.1 (VXLAN)",
                     FormatIpv4(pm.key.dst_ip), FormatIpv4(p.subnet), p.subnet_length,
                     FormatIpv4(p.public_ip));
      }
    } else {
      k.port =
          static_cast<uint8_t>(rr.egress == Egress::kPods ? PortRole::kPods : PortRole::kUplink);
      k.ip = rr.next_hop;
      SLUICE_TRACE(m, "  route: %s -> %s port, next hop %s", FormatIpv4(pm.key.dst_ip),
                   rr.egress == Egress::kPods ? "pods (local pod subnet, cni0)" : "uplink",
                   FormatIpv4(rr.next_hop));
    }
    nkp[nout] = &nkey[nout];
    out[nout] = m;
    out_meta[nout] = i;
    out_route[nout] = rr;
    ++nout;
  }
  if (nout == 0) return;

  // Stage 5: neighbours in bulk, then L2 rewrite or VXLAN encapsulation.
  // Most packets of a burst share a next hop (the gateway, a peer node):
  // look each distinct one up once.
  // Stale entries are used as they are; sending their refresh requests is
  // left to the neighbour hold queue's integration.
  MacAddress mac[kBurstSize];
  bool found[kBurstSize];
  uint64_t stale = 0;
  uint16_t uniq_of[kBurstSize];
  const NeighborKey* uniq[kBurstSize];
  constexpr uint16_t kMaxDistinctHops = 8;
  uint16_t nuniq = 0;
  bool many = false;
  for (uint16_t j = 0; j < nout && !many; ++j) {
    uint16_t u = 0;
    while (u < nuniq && std::memcmp(uniq[u], &nkey[j], sizeof(NeighborKey)) != 0) ++u;
    if (u == nuniq) {
      if (nuniq == kMaxDistinctHops) {
        many = true;  // many distinct hops: plain bulk lookup below
        break;
      }
      uniq[nuniq++] = &nkey[j];
    }
    uniq_of[j] = u;
  }
  if (!many) {
    MacAddress umac[kMaxDistinctHops];
    const uint64_t uhit = shared_.neighbors->LookupBulk(uniq, nuniq, now, umac, &stale);
    for (uint16_t j = 0; j < nout; ++j) {
      mac[j] = umac[uniq_of[j]];
      found[j] = (uhit >> uniq_of[j]) & 1;
    }
  } else {
    const uint64_t hit = shared_.neighbors->LookupBulk(nkp, nout, now, mac, &stale);
    for (uint16_t j = 0; j < nout; ++j) found[j] = (hit >> j) & 1;
  }
  const NeighborKey* arp_sent[kBurstSize];
  uint16_t narp = 0;
  for (uint16_t j = 0; j < nout; ++j) {
    rte_mbuf* m = out[j];
    const PacketMeta& pm = meta[out_meta[j]];
    const PortRole port = static_cast<PortRole>(nkey[j].port);
    if (!found[j]) {
      bool asked = false;
      for (uint16_t a = 0; a < narp; ++a)
        asked |= std::memcmp(arp_sent[a], &nkey[j], sizeof(NeighborKey)) == 0;
      if (!asked) {
        arp_sent[narp++] = &nkey[j];
        SendArpRequest(port, nkey[j].ip, t);
      }
      SLUICE_TRACE(m, "  neighbour: MAC of %s on %s unknown, ARP request sent",
                   FormatIpv4(nkey[j].ip), PortRoleName(port));
      Drop(m, k_neighbor_miss);
      continue;
    }
    if (out_route[j].egress == Egress::kVxlan) {
      const VtepPeer& peer = t.overlay->peer(out_route[j].peer);
      VxlanEncapParams p;
      p.outer_src_ip = node.node_ip;
      p.outer_dst_ip = peer.public_ip;
      p.outer_src_mac = node.port_mac[static_cast<int>(PortRole::kUplink)];
      p.outer_dst_mac = mac[j];
      p.inner_src_mac = node.vtep_mac;
      p.inner_dst_mac = peer.vtep_mac;
      p.vni = node.vni;
      p.udp_dst_port = node.vxlan_port;
      p.udp_src_port = VxlanSourcePort(rte_hash_crc(&pm.key, sizeof(pm.key), 0));
      p.ip_id = ip_id_++;
      if (!VxlanEncapsulate(m, pm, p)) {
        Drop(m, k_no_headroom);
        continue;
      }
      counters_.Add(k_vxlan_encapsulated);
      SLUICE_TRACE(m,
                   "  vxlan: encapsulated VNI %u, outer %s:%u -> %s:%u, inner MACs %s -> %s "
                   "(VtepMACs), out of the uplink to %s",
                   p.vni, FormatIpv4(p.outer_src_ip), p.udp_src_port, FormatIpv4(p.outer_dst_ip),
                   p.udp_dst_port, FormatMac(p.inner_src_mac), FormatMac(p.inner_dst_mac),
                   FormatMac(p.outer_dst_mac));
    } else {
      auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
      std::memcpy(&eth->dst_addr, mac[j].data(), 6);
      std::memcpy(&eth->src_addr, node.port_mac[static_cast<int>(port)].data(), 6);
      SLUICE_TRACE(m, "  out: %s port, %s -> %s", PortRoleName(port),
                   FormatMac(node.port_mac[static_cast<int>(port)]), FormatMac(mac[j]));
    }
    Enqueue(port, m);
  }
}

}  // namespace sluice
