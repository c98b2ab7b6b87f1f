#include "dataplane/graph/trace.h"

#include <rte_mbuf_dyn.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "dataplane/common/counters.h"
#include "dataplane/policy/kube_policy.h"
#include "dataplane/route/route.h"
#include "dataplane/tables/service_directory.h"

namespace sluice {
namespace {

MacAddress MacOf(const uint8_t* b) {
  MacAddress m;
  std::memcpy(m.data(), b, 6);
  return m;
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

const char* EgressDevice(Egress e) {
  switch (e) {
    case Egress::kVxlan:
      return "flannel.1";
    case Egress::kPods:
      return "cni0";
    default:
      return "uplink";
  }
}

std::string Words(const TraceRecord& r, const ServiceDirectory* services) {
  const char* port = PortRoleName(static_cast<PortRole>(r.a8));
  switch (r.event) {
    case TraceEvent::kRxIpv4:
      return absl::StrFormat("[%s in] %s, TTL %u", port,
                             DescribeFlow(r.key, static_cast<uint8_t>(r.a16)), r.a);
    case TraceEvent::kRxOther:
      return absl::StrFormat("[%s in] %u bytes", port, r.a);
    case TraceEvent::kArp:
      return absl::StrFormat("[%s in] ARP %s: who has %s? tell %s (%s)", port,
                             r.a16 == 1 ? "request" : "reply", FormatIpv4(r.a), FormatIpv4(r.b),
                             FormatMac(MacOf(r.mac[0])));
    case TraceEvent::kArpLearned:
      return absl::StrFormat("  neighbour learned: %s is at %s on %s", FormatIpv4(r.a),
                             FormatMac(MacOf(r.mac[0])), port);
    case TraceEvent::kArpNotLearned:
      return absl::StrFormat(
          "  neighbour not learned: %s %s", FormatIpv4(r.a),
          r.a16 == 0 ? "is not on the port's subnet" : "would exceed the port's neighbour quota");
    case TraceEvent::kArpReplied:
      return absl::StrFormat("  ARP reply: %s is at %s", FormatIpv4(r.a),
                             FormatMac(MacOf(r.mac[0])));
    case TraceEvent::kVxlanDecap:
      return absl::StrFormat("  vxlan: from node %s (lease %s/%u), VNI %u, decapsulated: %s",
                             FormatIpv4(r.a), FormatIpv4(r.b), r.a8, r.c,
                             DescribeFlow(r.key, static_cast<uint8_t>(r.a16)));
    case TraceEvent::kConntrackHit:
      return absl::StrFormat("  conntrack: %s direction of tracked flow %s",
                             r.a8 ? "reply" : "original", DescribeFlow(r.key, 0));
    case TraceEvent::kService: {
      const auto kind = static_cast<ServiceEntryKind>(r.a8);
      const bool nodeport = kind == ServiceEntryKind::kNodePort;
      const std::string name = services != nullptr && r.a < services->names_size()
                                   ? services->name(r.a)
                                   : absl::StrFormat("service #%u", r.a);
      return absl::StrFormat("  service: %s, %s %s:%u (%s)", name, KindName(kind),
                             nodeport ? "node address" : FormatIpv4(r.key.dst_ip), r.key.dst_port,
                             nodeport
                                 ? "KUBE-NODEPORTS: destination is one of this node's addresses"
                                 : "KUBE-SERVICES");
    }
    case TraceEvent::kEndpoint:
      return absl::StrFormat(
          "  endpoint: %s:%u, chosen at random among %u %s endpoint(s) (KUBE-SEP DNAT)",
          FormatIpv4(r.a), r.a16, r.b, EndpointSubsetText(static_cast<EndpointSubset>(r.a8)));
    case TraceEvent::kConntrackNew:
      return "  conntrack: new flow tracked, original and reply tuples indexed";
    case TraceEvent::kConntrackRaced:
      return "  conntrack: another worker created this flow first; using its entry";
    case TraceEvent::kTrackedNoNat:
      return "  conntrack: tracked without NAT so that its replies are not masqueraded";
    case TraceEvent::kMasquerade:
      return absl::StrFormat(
          "  masquerade: %s; source %s:%u -> %s:%u (address of the %s egress, MASQUERADE "
          "--random-fully)",
          MasqueradeReasonText(static_cast<MasqueradeReason>(r.a8)), FormatIpv4(r.key.src_ip),
          r.key.src_port, FormatIpv4(r.a), r.a16, EgressDevice(static_cast<Egress>(r.b)));
    case TraceEvent::kNat:
      return absl::StrFormat("  nat: now %s", DescribeFlow(r.key, static_cast<uint8_t>(r.a16)));
    case TraceEvent::kRouteHost:
      return absl::StrFormat("  route: %s is this node's own address -> host port (kernel)",
                             FormatIpv4(r.a));
    case TraceEvent::kRouteVxlan:
      return absl::StrFormat("  route: %s is in %s/%u, leased by node %s -> flannel.1 (VXLAN)",
                             FormatIpv4(r.a), FormatIpv4(r.b), r.a8, FormatIpv4(r.c));
    case TraceEvent::kRoute:
      return absl::StrFormat(
          "  route: %s -> %s port, next hop %s", FormatIpv4(r.a),
          static_cast<Egress>(r.a8) == Egress::kPods ? "pods (local pod subnet, cni0)" : "uplink",
          FormatIpv4(r.b));
    case TraceEvent::kNeighborWait:
      return absl::StrFormat("  neighbour: MAC of %s on %s unknown%s", FormatIpv4(r.a), port,
                             r.a16 ? ", ARP request sent" : " (ARP request already sent)");
    case TraceEvent::kVxlanEncap:
      return absl::StrFormat(
          "  vxlan: encapsulated VNI %u, outer %s:%u -> %s:%u, inner MACs %s -> %s (VtepMACs), "
          "out of the uplink to %s",
          r.a, FormatIpv4(r.b), r.a16, FormatIpv4(r.c), r.d, FormatMac(MacOf(r.mac[0])),
          FormatMac(MacOf(r.mac[1])), FormatMac(MacOf(r.mac[2])));
    case TraceEvent::kOut:
      return absl::StrFormat("  out: %s port, %s -> %s", port, FormatMac(MacOf(r.mac[0])),
                             FormatMac(MacOf(r.mac[1])));
    case TraceEvent::kDrop: {
      const CounterInfo& info = CounterInfoOf(static_cast<Counter>(r.a16));
      return absl::StrFormat("  dropped: %s (%s)", info.name, info.help);
    }
  }
  return "?";
}

}  // namespace

std::string DescribeFlow(const FlowKey& k, uint8_t tcp_flags) {
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

Tracer::Tracer(uint16_t worker, int seq_offset) : worker_(worker), seq_offset_(seq_offset) {
  records_.reserve(4096);
}

void Tracer::Record(const rte_mbuf* m, TraceEvent event, const TraceArgs& a) {
  TraceRecord r{};
  r.seq = seq_offset_ >= 0 ? *RTE_MBUF_DYNFIELD(m, seq_offset_, const uint64_t*) : 0;
  r.event = event;
  r.a8 = a.a8;
  r.a16 = a.a16;
  r.a = a.a;
  r.b = a.b;
  r.c = a.c;
  r.d = a.d;
  if (a.key != nullptr) r.key = *a.key;
  const uint8_t* macs[3] = {a.mac0, a.mac1, a.mac2};
  for (int i = 0; i < 3; ++i)
    if (macs[i] != nullptr) std::memcpy(r.mac[i], macs[i], 6);
  records_.push_back(r);
}

std::vector<Tracer::Line> Tracer::TakeLines(const ServiceDirectory* services) {
  std::vector<Line> lines;
  lines.reserve(records_.size());
  for (const TraceRecord& r : records_) lines.push_back({r.seq, worker_, Words(r, services)});
  records_.clear();
  return lines;
}

}  // namespace sluice
