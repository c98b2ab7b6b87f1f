// Packet tracing for `--trace`: the nodes record compact binary records
// (which stage, what it decided, the few ids and values that explain it)
// only when a Tracer is attached to the worker; words are made later, off the
// fast path, by FormatTrace.
//
// A Tracer belongs to one worker and is written only by its lcore; it is read
// (formatted) after the worker stopped, or by the control thread between
// runs. Recording appends to a vector: tracing is a diagnostic mode and may
// allocate; with no Tracer attached the fast path pays one predicted branch
// per trace site.
#ifndef SLUICE_DATAPLANE_GRAPH_TRACE_H_
#define SLUICE_DATAPLANE_GRAPH_TRACE_H_

#include <rte_mbuf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/common/types.h"

namespace sluice {

class ServiceDirectory;

enum class TraceEvent : uint8_t {
  kRxIpv4,         // a8 ingress, a16 tcp flags, a TTL, key
  kRxOther,        // a8 ingress, a frame length (not IPv4: ARP or malformed)
  kArp,            // a8 ingress, a16 opcode, a target, b sender, mac0 sender MAC
  kArpLearned,     // a8 port, a address, mac0
  kArpNotLearned,  // a8 port, a16 why (ArpLearnRefusal), a address
  kArpReplied,     // a address, mac0 our MAC
  kVxlanDecap,  // a peer PublicIP, b lease subnet, a8 lease length, c VNI, a16 tcp flags, key inner
  kConntrackHit,    // a8 1 for the reply direction, key the flow's original tuple
  kService,         // a Service port slot, a8 ServiceEntryKind, key
  kEndpoint,        // a endpoint IP, a16 endpoint port, b candidates, a8 EndpointSubset
  kConntrackNew,    //
  kConntrackRaced,  //
  kTrackedNoNat,    //
  kMasquerade,      // a8 MasqueradeReason, b egress, key before, a new IP, a16 new port
  kNat,             // key after, a16 tcp flags
  kRouteHost,       // a destination
  kRouteVxlan,      // a destination, b lease subnet, a8 lease length, c peer PublicIP
  kRoute,           // a destination, a8 Egress, b next hop
  kNeighborWait,    // a next hop, a8 port, a16 1 when an ARP request was sent
  kVxlanEncap,  // a VNI, b outer src, c outer dst, a16 sport, d dport, mac0 inner src, mac1 inner
                // dst, mac2 outer dst
  kOut,         // a8 port, mac0 src, mac1 dst
  kDrop,        // a16 Counter
};

struct TraceArgs {
  uint8_t a8 = 0;
  uint16_t a16 = 0;
  uint32_t a = 0, b = 0, c = 0, d = 0;
  const FlowKey* key = nullptr;
  const uint8_t* mac0 = nullptr;
  const uint8_t* mac1 = nullptr;
  const uint8_t* mac2 = nullptr;
};

struct TraceRecord {
  uint64_t seq;
  TraceEvent event;
  uint8_t a8;
  uint16_t a16;
  uint32_t a, b, c, d;
  FlowKey key;
  uint8_t mac[3][6];
};

class Tracer {
 public:
  struct Line {
    uint64_t seq;
    uint16_t worker;
    std::string text;
  };
  // `seq_offset`: mbuf dynamic field holding the packet's sequence number,
  // or -1 (all packets then have seq 0).
  Tracer(uint16_t worker, int seq_offset);

  void Record(const rte_mbuf* m, TraceEvent event, const TraceArgs& args);
  const std::vector<TraceRecord>& records() const { return records_; }

  // Words for every record so far, then forgets them. `services` (may be
  // null) names Service ports, by the slot a record carries: call it on the
  // control thread (the names are its), soon after the run, since a slot
  // reused by another Service port meanwhile would lend its name.
  std::vector<Line> TakeLines(const ServiceDirectory* services);

 private:
  uint16_t worker_;
  int seq_offset_;
  std::vector<TraceRecord> records_;
};

// "TCP 10.0.0.1:80 -> 10.0.0.2:1234 [SYN,ACK]".
std::string DescribeFlow(const FlowKey& k, uint8_t tcp_flags);

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_GRAPH_TRACE_H_
