// The pipeline end to end on one node, driven through Worker::ProcessBurst
// with the shared journey fixtures; outputs checked field by field with an
// independent parser and checksum verifier.
#include "dataplane/worker/worker.h"

#include <memory>
#include <set>

#include "dataplane/graph/context.h"
#include "gtest/gtest.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/node_harness.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

class WorkerTest : public ::testing::Test {
 protected:
  NodeHarness node_{Node228Model(), /*workers=*/2};
};

uint64_t TotalDrops(NodeHarness& node) {
  uint64_t d = 0;
  for (int c = 0; c < kCounterCount; ++c)
    if (CounterInfoOf(static_cast<Counter>(c)).kind == CounterKind::kDrop)
      d += node.counter(static_cast<Counter>(c));
  return d;
}

TEST_F(WorkerTest, EveryFixtureGoesWhereItsTableSays) {
  for (const JourneyFixture& f : JourneyFixtures()) {
    SCOPED_TRACE(f.name);
    const uint64_t before = f.forwarded ? 0 : node_.counter(f.drop);
    Outputs out = node_.Run(f.ingress, {f.build()});
    if (f.forwarded) {
      ASSERT_EQ(out.by_port[static_cast<int>(f.egress)].size(), 1u);
      EXPECT_EQ(out.total(), 1u);
      const auto& frame = out.by_port[static_cast<int>(f.egress)][0];
      const ParsedFrame p = ParseFrame(frame);
      if (p.ether_type == 0x0800) {
        EXPECT_EQ(VerifyChecksums(frame), "");
        if (p.proto == kProtoUdp && p.dst_port == 8472) {
          EXPECT_EQ(VerifyChecksums(frame, 64), "");
        }
      }
    } else {
      EXPECT_EQ(out.total(), 0u);
      EXPECT_EQ(node_.counter(f.drop), before + 1) << CounterInfoOf(f.drop).name;
    }
  }
}

TEST_F(WorkerTest, NodePortSynIsDnatedMasqueradedAndEncapsulatedAsFlannelWould) {
  const auto in = ClientSynToNodePort();
  Outputs out = node_.Run(PortRole::kUplink, {in});
  ASSERT_EQ(out.uplink().size(), 1u);
  const auto& f = out.uplink()[0];
  const ParsedFrame outer = ParseFrame(f);
  EXPECT_EQ(outer.src_mac, Mac("02:00:0a:0a:64:e4"));
  EXPECT_EQ(outer.dst_mac, Mac("02:00:0a:0a:64:e3"));  // node-227, same L2
  EXPECT_EQ(outer.src_ip, Ip(Example::kNode228));
  EXPECT_EQ(outer.dst_ip, Ip(Example::kNode227));
  EXPECT_EQ(outer.ttl, 64);
  EXPECT_EQ(outer.frag & 0x4000, 0);  // DF clear, as the kernel's vxlan device
  EXPECT_EQ(outer.proto, kProtoUdp);
  EXPECT_EQ(outer.dst_port, 8472);
  EXPECT_GE(outer.src_port, 32768);
  EXPECT_LT(outer.src_port, 61000);
  EXPECT_EQ(outer.udp_checksum, 0);
  EXPECT_EQ(f[42], 0x08);                              // VXLAN I flag
  EXPECT_EQ((f[46] << 16) | (f[47] << 8) | f[48], 1);  // VNI 1
  const ParsedFrame inner = ParseFrame(f, 50);
  EXPECT_EQ(inner.src_mac, Mac("0e:00:00:00:00:e4"));  // our VtepMAC
  EXPECT_EQ(inner.dst_mac, Mac("0e:00:00:00:00:e3"));  // node-227's VtepMAC
  EXPECT_EQ(inner.src_ip, Ip("10.244.26.0"));          // flannel.1's address: MASQUERADE's choice
  EXPECT_GE(inner.src_port, 1024);
  EXPECT_EQ(inner.dst_ip, Ip(Example::kSshPod));
  EXPECT_EQ(inner.dst_port, 22);
  EXPECT_EQ(inner.ttl, 61);
  const ParsedFrame orig = ParseFrame(in);
  EXPECT_EQ(inner.seq, orig.seq);
  EXPECT_EQ(inner.tcp_flags, orig.tcp_flags);
  EXPECT_EQ(VerifyChecksums(f, 64), "");
  EXPECT_EQ(VerifyChecksums(f, 14), "");
  EXPECT_EQ(node_.counter(k_service_dnat), 1u);
  EXPECT_EQ(node_.counter(k_masquerade), 1u);
  EXPECT_EQ(node_.counter(k_vxlan_encapsulated), 1u);
}

// What node-227 sends back for the pod: the reply, VXLAN-encapsulated.
std::vector<uint8_t> PodReplyVia227(const ParsedFrame& fwd_inner, uint8_t flags,
                                    const std::string& payload = "") {
  return TcpViaNode227(fwd_inner.dst_ip, fwd_inner.dst_port, fwd_inner.src_ip, fwd_inner.src_port,
                       flags, 9000, fwd_inner.seq + 1, payload);
}

TEST_F(WorkerTest, RepliesToNodePortAreReverseTranslatedOnAnotherWorker) {
  Outputs fwd = node_.Run(PortRole::kUplink, {ClientSynToNodePort()}, /*w=*/0);
  ASSERT_EQ(fwd.uplink().size(), 1u);
  const ParsedFrame inner = ParseFrame(fwd.uplink()[0], 50);
  // The reply arrives on the other worker (no flow steering).
  Outputs rep = node_.Run(PortRole::kUplink, {PodReplyVia227(inner, 0x12, "SSH-2.0-x\r\n")}, 1);
  ASSERT_EQ(rep.uplink().size(), 1u);
  const auto& f = rep.uplink()[0];
  const ParsedFrame p = ParseFrame(f);
  EXPECT_EQ(p.dst_mac, Mac("02:00:0a:0a:64:01"));  // client is off-link: via the gateway
  EXPECT_EQ(p.src_mac, Mac("02:00:0a:0a:64:e4"));
  EXPECT_EQ(p.src_ip, Ip(Example::kNode228));
  EXPECT_EQ(p.src_port, Example::kNodePort);
  EXPECT_EQ(p.dst_ip, Ip(Example::kClient));
  EXPECT_EQ(p.dst_port, 51234);
  EXPECT_EQ(p.ttl, 62);
  EXPECT_EQ(p.tcp_flags, 0x12);
  EXPECT_EQ(p.seq, 9000u);
  EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), "SSH-2.0-x\r\n");
  EXPECT_EQ(VerifyChecksums(f), "");
  EXPECT_EQ(node_.counter(k_conntrack_created, 0), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_reply, 1), 1u);
  EXPECT_EQ(node_.counter(k_vxlan_decapsulated, 1), 1u);
  EXPECT_EQ(TotalDrops(node_), 0u);
}

TEST_F(WorkerTest, PodToRemotePodIsEncapsulatedWithoutNatOrState) {
  Outputs out = node_.Run(PortRole::kPods, {PodToRemotePodSyn()});
  ASSERT_EQ(out.uplink().size(), 1u);
  const ParsedFrame inner = ParseFrame(out.uplink()[0], 50);
  EXPECT_EQ(inner.src_ip, Ip(Example::kWeb1));
  EXPECT_EQ(inner.src_port, 40000);
  EXPECT_EQ(inner.dst_ip, Ip(Example::kWeb2));
  EXPECT_EQ(inner.ttl, 63);
  EXPECT_EQ(node_.conntrack().InUse(), 0u);
  EXPECT_EQ(node_.counter(k_forwarded_stateless), 1u);
}

TEST_F(WorkerTest, PodToInternetIsMasqueradedToTheNodeAddress) {
  Outputs out = node_.Run(PortRole::kPods, {PodToInternetSyn()});
  ASSERT_EQ(out.uplink().size(), 1u);
  const ParsedFrame p = ParseFrame(out.uplink()[0]);
  EXPECT_EQ(p.dst_mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_EQ(p.src_ip, Ip(Example::kNode228));
  EXPECT_GE(p.src_port, 1024);
  EXPECT_EQ(p.src_port % 2, 0);  // worker 0 of 2 owns even ports
  EXPECT_EQ(p.dst_ip, Ip("93.184.216.34"));
  EXPECT_EQ(VerifyChecksums(out.uplink()[0]), "");
  EXPECT_EQ(node_.counter(k_masquerade), 1u);
}

TEST_F(WorkerTest, PingFromPodToInternetIsMasqueradedAndTheReplyRestored) {
  Outputs out = node_.Run(PortRole::kPods, {PodToInternetPing()});
  ASSERT_EQ(out.uplink().size(), 1u);
  const ParsedFrame req = ParseFrame(out.uplink()[0]);
  EXPECT_EQ(req.src_ip, Ip(Example::kNode228));
  EXPECT_EQ(VerifyChecksums(out.uplink()[0]), "");
  FrameSpec s;
  s.src_mac = Mac("02:00:0a:0a:64:01");
  s.dst_mac = Mac("02:00:0a:0a:64:e4");
  s.src_ip = Ip("93.184.216.34");
  s.dst_ip = Ip(Example::kNode228);
  s.l4.proto = kProtoIcmp;
  s.l4.icmp_type = 0;
  s.l4.icmp_id = req.src_port;  // the masqueraded identifier
  s.l4.payload = "abcdefgh";
  Outputs rep = node_.Run(PortRole::kUplink, {BuildFrame(s)}, 1);
  ASSERT_EQ(rep.pods().size(), 1u);
  const ParsedFrame p = ParseFrame(rep.pods()[0]);
  EXPECT_EQ(p.dst_ip, Ip(Example::kWeb1));
  EXPECT_EQ(p.src_port, 777);  // identifier restored
  EXPECT_EQ(p.dst_mac, Mac("0a:58:0a:f4:1a:14"));
  EXPECT_EQ(VerifyChecksums(rep.pods()[0]), "");
}

TEST_F(WorkerTest, ClusterIpPicksBothEndpointsAndHairpinIsMasqueraded) {
  std::set<uint32_t> seen;
  for (uint16_t port = 41000; port < 41064 && seen.size() < 2; ++port) {
    Outputs out = node_.Run(PortRole::kPods, {PodToClusterIpSyn(port)});
    ASSERT_EQ(out.total(), 1u);
    if (out.pods().size() == 1) {
      // web-1 reached itself through the Service: hairpin, masqueraded to cni0.
      const ParsedFrame p = ParseFrame(out.pods()[0]);
      EXPECT_EQ(p.dst_ip, Ip(Example::kWeb1));
      EXPECT_EQ(p.dst_port, 8080);
      EXPECT_EQ(p.src_ip, Ip("10.244.26.1"));
      EXPECT_EQ(VerifyChecksums(out.pods()[0]), "");
      seen.insert(p.dst_ip);
    } else {
      const ParsedFrame inner = ParseFrame(out.uplink()[0], 50);
      EXPECT_EQ(inner.dst_ip, Ip(Example::kWeb2));
      EXPECT_EQ(inner.src_ip, Ip(Example::kWeb1));  // pod to ClusterIP: no masquerade
      EXPECT_EQ(VerifyChecksums(out.uplink()[0], 64), "");
      seen.insert(inner.dst_ip);
    }
  }
  EXPECT_EQ(seen.size(), 2u);
}

TEST_F(WorkerTest, ServiceWithoutEndpointsIsDroppedAndCounted) {
  ClusterModel m = Node228Model();
  m.endpoint_slices.clear();
  node_.Reload(m);
  Outputs out = node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(node_.counter(k_service_no_endpoints), 1u);
}

TEST_F(WorkerTest, EstablishedFlowSurvivesAReloadThatMovesTheService) {
  Outputs first = node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  ASSERT_EQ(first.uplink().size(), 1u);
  ClusterModel m = Node228Model();
  m.endpoint_slices[0].endpoints[0].ip = Ip("10.244.24.77");  // the pod moved to node-226
  node_.Reload(m);
  Outputs again = node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  ASSERT_EQ(again.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(again.uplink()[0], 50).dst_ip, Ip(Example::kSshPod));
  // A new connection goes to the new endpoint.
  FrameSpec s;
  s.src_mac = Mac("02:00:0a:0a:64:01");
  s.dst_mac = Mac("02:00:0a:0a:64:e4");
  s.src_ip = Ip(Example::kClient);
  s.dst_ip = Ip(Example::kNode228);
  s.l4.src_port = 51999;
  s.l4.dst_port = Example::kNodePort;
  Outputs fresh = node_.Run(PortRole::kUplink, {BuildFrame(s)});
  ASSERT_EQ(fresh.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(fresh.uplink()[0], 50).dst_ip, Ip("10.244.24.77"));
  EXPECT_EQ(ParseFrame(fresh.uplink()[0]).dst_ip, Ip(Example::kNode226));
}

TEST_F(WorkerTest, PacketsOfANewFlowInOneBurstShareOneEntry) {
  const auto syn = ClientSynToNodePort();
  Outputs out = node_.Run(PortRole::kUplink, {syn, syn, syn});
  ASSERT_EQ(out.uplink().size(), 3u);
  std::set<uint16_t> ports;
  for (const auto& f : out.uplink()) ports.insert(ParseFrame(f, 50).src_port);
  EXPECT_EQ(ports.size(), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_created), 1u);
  EXPECT_EQ(node_.counter(k_service_dnat), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_original), 2u);
  EXPECT_EQ(node_.counter(k_conntrack_insert_raced), 0u);
}

// new_flow works a chunk of 32 at a time, policy first and inserts after:
// a burst of more than one chunk, with a repeated flow in each, still makes
// each flow once and forwards every packet.
TEST_F(WorkerTest, NewFlowsAcrossChunksOfTheBurstAreEachMadeOnce) {
  std::vector<std::vector<uint8_t>> burst;
  for (int i = 0; i < 45; ++i) {
    FrameSpec s;
    s.src_mac = Mac("02:00:0a:0a:64:01");
    s.dst_mac = Mac("02:00:0a:0a:64:e4");
    s.src_ip = Ip(Example::kClient);
    s.dst_ip = Ip(Example::kNode228);
    s.l4.src_port = static_cast<uint16_t>(20000 + (i == 40 ? 3 : i));  // 40 repeats 3
    s.l4.dst_port = Example::kNodePort;
    burst.push_back(BuildFrame(s));
  }
  Outputs out = node_.Run(PortRole::kUplink, burst);
  EXPECT_EQ(node_.counter(k_conntrack_created), 44u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_original), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_insert_raced), 0u);
  ASSERT_EQ(out.uplink().size(), 45u);
  std::set<uint16_t> masquerade_ports;
  for (const auto& f : out.uplink()) {
    EXPECT_EQ(VerifyChecksums(f, 64), "");
    masquerade_ports.insert(ParseFrame(f, 50).src_port);
  }
  EXPECT_EQ(masquerade_ports.size(), 44u);
}

// The worker's own generator for endpoint and masquerade port picks: in
// range, every value reachable, about uniform, and the same sequence from
// the same seed (what `--seed` relies on).
TEST(PickBelowTest, IsInRangeAboutUniformAndReproducible) {
  auto ctx = std::make_unique<WorkerContext>();
  ctx->rng = 42;
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(PickBelow(ctx.get(), 1), 0u);
  uint32_t counts[3] = {0, 0, 0};
  for (int i = 0; i < 60000; ++i) {
    const uint32_t v = PickBelow(ctx.get(), 3);
    ASSERT_LT(v, 3u);
    ++counts[v];
  }
  for (uint32_t c : counts) {  // 20000 +- 1000 is more than 8 standard deviations
    EXPECT_GT(c, 19000u);
    EXPECT_LT(c, 21000u);
  }
  std::set<uint32_t> ports;
  for (int i = 0; i < 200000; ++i) {
    const uint32_t v = PickBelow(ctx.get(), 28232);  // the ports above the ephemeral range
    ASSERT_LT(v, 28232u);
    ports.insert(v);
  }
  EXPECT_GT(ports.size(), 28000u);  // 1 - e^-7 of them are expected
  auto a = std::make_unique<WorkerContext>();
  auto b = std::make_unique<WorkerContext>();
  a->rng = b->rng = 7;
  for (int i = 0; i < 100; ++i) ASSERT_EQ(PickBelow(a.get(), 1000), PickBelow(b.get(), 1000));
}

TEST_F(WorkerTest, ExternalClientReachingAPodDirectlyGetsUnmasqueradedReplies) {
  FrameSpec syn;
  syn.src_mac = Mac("02:00:0a:0a:64:01");
  syn.dst_mac = Mac("02:00:0a:0a:64:e4");
  syn.src_ip = Ip(Example::kClient);
  syn.dst_ip = Ip(Example::kWeb1);
  syn.l4.src_port = 50000;
  syn.l4.dst_port = 8080;
  Outputs in = node_.Run(PortRole::kUplink, {BuildFrame(syn)}, 0);
  ASSERT_EQ(in.pods().size(), 1u);
  EXPECT_EQ(ParseFrame(in.pods()[0]).src_ip, Ip(Example::kClient));  // no NAT inbound
  FrameSpec ack;
  ack.src_mac = Mac("0a:58:0a:f4:1a:14");
  ack.dst_mac = Mac("02:00:0a:f4:1a:01");
  ack.src_ip = Ip(Example::kWeb1);
  ack.dst_ip = Ip(Example::kClient);
  ack.l4.src_port = 8080;
  ack.l4.dst_port = 50000;
  ack.l4.tcp_flags = 0x12;
  Outputs out = node_.Run(PortRole::kPods, {BuildFrame(ack)}, 1);
  ASSERT_EQ(out.uplink().size(), 1u);
  const ParsedFrame p = ParseFrame(out.uplink()[0]);
  EXPECT_EQ(p.src_ip, Ip(Example::kWeb1));  // the reply keeps the pod's address
  EXPECT_EQ(p.src_port, 8080);
  EXPECT_EQ(node_.counter(k_masquerade), 0u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_reply), 1u);
}

TEST_F(WorkerTest, ThreeBurstsForOnePortFitBeforeAFlush) {
  for (PortRole in : {PortRole::kUplink, PortRole::kPods, PortRole::kUplink}) {
    rte_mbuf* burst[kBurstSize];
    for (uint16_t i = 0; i < kBurstSize; ++i)
      burst[i] =
          ToMbuf(node_.pool(), in == PortRole::kPods ? PodToRemotePodSyn() : ClientSynToNodePort());
    node_.worker(0).ProcessBurst(in, burst, kBurstSize, 1);
  }
  rte_mbuf* tx[Worker::kTxCapacity];
  const uint16_t n = node_.worker(0).TakeTx(PortRole::kUplink, tx);
  EXPECT_EQ(n, 3 * kBurstSize);
  for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(tx[i]);
  EXPECT_EQ(node_.counter(k_tx_full), 0u);
}

TEST_F(WorkerTest, NodePortPacketWithTtlOneDiesBeforeCreatingAFlow) {
  Outputs out = node_.Run(PortRole::kUplink, {FixtureByName("nodeport_ttl_1").build()});
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(node_.counter(k_ttl_exceeded), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_created), 0u);
  EXPECT_EQ(node_.conntrack().InUse(), 0u);
}

TEST_F(WorkerTest, ArpForTheNodeIpIsAnsweredAndTheSenderLearned) {
  Outputs out = node_.Run(PortRole::kUplink, {GatewayArpForNodeIp()});
  ASSERT_EQ(out.uplink().size(), 1u);
  const auto& a = out.uplink()[0];
  EXPECT_EQ(ParseFrame(a).dst_mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_EQ((a[20] << 8) | a[21], 2);  // reply
  EXPECT_EQ(MacAddress({a[22], a[23], a[24], a[25], a[26], a[27]}), Mac("02:00:0a:0a:64:e4"));
  EXPECT_EQ(node_.counter(k_arp_replied), 1u);
}

TEST_F(WorkerTest, ArpFromOutsideThePortsSubnetIsAnsweredButNotLearned) {
  // 10.10.200.5 is not on the uplink's 10.10.100.0/24; a pod address is not
  // an uplink neighbour either.
  Outputs out = node_.Run(
      PortRole::kUplink,
      {BuildArpRequest(Mac("02:00:00:00:00:66"), Ip("10.10.200.5"), Ip(Example::kNode228)),
       BuildArpRequest(Mac("02:00:00:00:00:67"), Ip("10.244.26.50"), Ip(Example::kNode228)),
       BuildArpRequest(Mac("02:00:00:00:00:68"), Ip("10.10.100.50"), Ip(Example::kNode228))});
  EXPECT_EQ(out.uplink().size(), 3u);
  EXPECT_EQ(node_.counter(k_arp_replied), 3u);
  EXPECT_EQ(node_.counter(k_arp_sender_off_subnet), 2u);
  EXPECT_EQ(node_.counter(k_arp_learned), 1u);
  MacAddress mac;
  EXPECT_FALSE(node_.neighbors().Lookup(PortRole::kUplink, Ip("10.10.200.5"), &mac));
  EXPECT_FALSE(node_.neighbors().Lookup(PortRole::kUplink, Ip("10.244.26.50"), &mac));
  EXPECT_TRUE(node_.neighbors().Lookup(PortRole::kUplink, Ip("10.10.100.50"), &mac));
  EXPECT_EQ(mac, Mac("02:00:00:00:00:68"));
}

std::vector<uint8_t> ClientSynTo(const char* dst, uint16_t src_port) {
  FrameSpec s;
  s.src_mac = Mac("02:00:0a:0a:64:01");
  s.dst_mac = Mac("02:00:0a:0a:64:e4");
  s.src_ip = Ip(Example::kClient);
  s.dst_ip = Ip(dst);
  s.l4.src_port = src_port;
  s.l4.dst_port = 80;
  return BuildFrame(s);
}

// What 10.244.26.99 answers to our request, unicast to the pods port.
std::vector<uint8_t> Pod99ArpReply() {
  std::vector<uint8_t> reply =
      BuildArpRequest(Mac("0a:58:0a:f4:1a:63"), Ip("10.244.26.99"), Ip("10.244.26.1"));
  std::copy_n(Mac("02:00:0a:f4:1a:01").begin(), 6, reply.begin());
  reply[21] = 2;  // opcode reply
  return reply;
}

TEST_F(WorkerTest, UnknownNextHopHoldsPacketsUntilArpAnswers) {
  // A local pod nobody has told us the MAC of: one request, packets held.
  Outputs out = node_.Run(PortRole::kUplink,
                          {ClientSynTo("10.244.26.99", 1234), ClientSynTo("10.244.26.99", 1235)});
  ASSERT_EQ(out.pods().size(), 1u);
  const auto& a = out.pods()[0];
  EXPECT_EQ(ParseFrame(a).ether_type, 0x0806);
  EXPECT_EQ((a[38] << 24) | (a[39] << 16) | (a[40] << 8) | a[41], int(Ip("10.244.26.99")));
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 1u);
  EXPECT_EQ(node_.counter(k_neighbor_held), 2u);
  // More packets in the same second ask nothing more.
  out = node_.Run(PortRole::kUplink, {ClientSynTo("10.244.26.99", 1236)});
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 1u);
  // The answer teaches the MAC and the held packets leave, in order.
  Outputs after = node_.Run(PortRole::kPods, {Pod99ArpReply()});
  ASSERT_EQ(after.pods().size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const ParsedFrame p = ParseFrame(after.pods()[i]);
    EXPECT_EQ(p.dst_mac, Mac("0a:58:0a:f4:1a:63"));
    EXPECT_EQ(p.src_mac, Mac("02:00:0a:f4:1a:01"));
    EXPECT_EQ(p.src_port, 1234 + i);
    EXPECT_EQ(VerifyChecksums(after.pods()[i]), "");
  }
  EXPECT_EQ(node_.counter(k_neighbor_released), 3u);
  EXPECT_EQ(node_.counter(k_arp_reply_consumed), 1u);
  EXPECT_EQ(TotalDrops(node_), 0u);
}

TEST_F(WorkerTest, AnUnansweredNextHopGetsThreeRequestsThenItsPacketsAreDropped) {
  // The harness clock ticks once per second.
  node_.Run(PortRole::kUplink, {ClientSynTo("10.244.26.98", 1234)}, 0, /*now=*/10);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 1u);
  for (uint64_t now = 11; now <= 14; ++now) node_.Run(PortRole::kUplink, {}, 0, now);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 3u);  // mcast_solicit
  EXPECT_EQ(node_.counter(k_neighbor_unresolved), 1u);
  EXPECT_EQ(node_.counter(k_neighbor_held), 1u);
  // Held packets are bounded per next hop; the rest are dropped and counted.
  std::vector<std::vector<uint8_t>> many;
  for (uint16_t i = 0; i < 12; ++i) many.push_back(ClientSynTo("10.244.26.97", 2000 + i));
  node_.Run(PortRole::kUplink, many, 0, 20);
  EXPECT_EQ(node_.counter(k_neighbor_held), 1u + 8u);
  EXPECT_EQ(node_.counter(k_neighbor_queue_full), 4u);
}

TEST_F(WorkerTest, AStaleNeighbourIsStillUsedAndRefreshedOncePerSecond) {
  node_.Run(PortRole::kPods, {Pod99ArpReply()}, 0, /*now=*/100);  // learned at t=100
  Outputs fresh = node_.Run(PortRole::kUplink, {ClientSynTo("10.244.26.99", 1)}, 0, 110);
  ASSERT_EQ(fresh.pods().size(), 1u);  // no request while reachable
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 0u);
  Outputs stale = node_.Run(
      PortRole::kUplink, {ClientSynTo("10.244.26.99", 2), ClientSynTo("10.244.26.99", 3)}, 0, 140);
  ASSERT_EQ(stale.pods().size(), 3u);  // both packets, and one refresh request
  EXPECT_EQ(ParseFrame(stale.pods()[0]).ether_type, 0x0806);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 1u);
  node_.Run(PortRole::kUplink, {ClientSynTo("10.244.26.99", 4)}, 0, 140);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 1u);
  node_.Run(PortRole::kUplink, {ClientSynTo("10.244.26.99", 5)}, 0, 141);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), 2u);
}

// A later packet (ACK) of the TCP flow whose first frame is `syn`.
FrameSpec AckOf(const std::vector<uint8_t>& syn_frame) {
  const ParsedFrame syn = ParseFrame(syn_frame);
  FrameSpec s;
  s.src_mac = syn.src_mac;
  s.dst_mac = syn.dst_mac;
  s.src_ip = syn.src_ip;
  s.dst_ip = syn.dst_ip;
  s.l4.src_port = syn.src_port;
  s.l4.dst_port = syn.dst_port;
  s.l4.tcp_flags = 0x10;
  return s;
}

uint64_t StagePackets(Worker& w, const char* node) {
  for (const NodeStats& n : w.Stats())
    if (n.node == node) return n.packets;
  ADD_FAILURE() << "no node " << node;
  return 0;
}

TEST_F(WorkerTest, MasqueradePortsStayOutOfTheKernelEphemeralRange) {
  const NodeView& n = node_.tables().node;
  ASSERT_EQ(n.local_port_lo, 32768);
  ASSERT_EQ(n.local_port_hi, 60999);
  std::set<uint16_t> ports;
  for (uint16_t w = 0; w < 2; ++w) {
    for (uint16_t i = 0; i < 300; ++i) {
      FrameSpec s;
      s.src_mac = Mac("0a:58:0a:f4:1a:14");
      s.dst_mac = Mac("02:00:0a:f4:1a:01");
      s.src_ip = Ip(Example::kWeb1);
      s.dst_ip = Ip("93.184.216.34");
      s.l4.src_port = static_cast<uint16_t>(20000 + w * 1000 + i);
      s.l4.dst_port = 443;
      Outputs out = node_.Run(PortRole::kPods, {BuildFrame(s)}, w);
      ASSERT_EQ(out.uplink().size(), 1u);
      const uint16_t port = ParseFrame(out.uplink()[0]).src_port;
      EXPECT_TRUE(port < 32768 || port > 60999) << port;
      EXPECT_GE(port, 1024);
      EXPECT_EQ(port % 2, w);  // each worker's own share
      ports.insert(port);
    }
  }
  EXPECT_GT(ports.size(), 500u);  // random, not one port reused
  // Both sides of the excluded range are used.
  EXPECT_LT(*ports.begin(), 32768);
  EXPECT_GT(*ports.rbegin(), 60999);
}

// Outer IPv4 header of a VXLAN frame with TOS `tos`, checksum recomputed.
void SetOuterTos(std::vector<uint8_t>& f, uint8_t tos) {
  f[15] = tos;
  f[24] = f[25] = 0;
  uint32_t sum = 0;
  for (int i = 14; i < 34; i += 2) sum += (f[i] << 8) | f[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  f[24] = static_cast<uint8_t>(~sum >> 8);
  f[25] = static_cast<uint8_t>(~sum);
}

TEST_F(WorkerTest, EcnFollowsTheKernelsTunnelRules) {
  // Encapsulation copies ECN, CE leaving as ECT(0); DSCP stays inside.
  for (const auto& [inner_tos, outer_ecn] :
       std::vector<std::pair<uint8_t, uint8_t>>{{0x00, 0}, {0x01, 1}, {0x02, 2}, {0xb8 | 3, 2}}) {
    FrameSpec s;
    s.src_mac = Mac("0a:58:0a:f4:1a:14");
    s.dst_mac = Mac("02:00:0a:f4:1a:01");
    s.src_ip = Ip(Example::kWeb1);
    s.dst_ip = Ip(Example::kWeb2);
    s.tos = inner_tos;
    s.l4.src_port = static_cast<uint16_t>(42000 + inner_tos);
    s.l4.dst_port = 8080;
    Outputs out = node_.Run(PortRole::kPods, {BuildFrame(s)});
    ASSERT_EQ(out.uplink().size(), 1u);
    EXPECT_EQ(ParseFrame(out.uplink()[0]).tos, outer_ecn) << int(inner_tos);
    EXPECT_EQ(ParseFrame(out.uplink()[0], 50).tos, inner_tos);
    EXPECT_EQ(VerifyChecksums(out.uplink()[0]), "");
  }
  // Decapsulation (RFC 6040): outer CE marks an ECN-capable inner packet CE,
  // and drops a Not-ECT one.
  FrameSpec in;
  in.src_mac = Mac("0e:00:00:00:00:e3");
  in.dst_mac = Mac("0e:00:00:00:00:e4");
  in.src_ip = Ip(Example::kWeb2);
  in.dst_ip = Ip(Example::kWeb1);
  in.ttl = 63;
  in.l4.src_port = 8080;
  in.l4.dst_port = 43000;
  in.l4.tcp_flags = 0x10;
  for (uint8_t inner_ecn : {0, 1, 2, 3}) {
    in.tos = inner_ecn;
    std::vector<uint8_t> f =
        BuildVxlan(Mac("02:00:0a:0a:64:e3"), Mac("02:00:0a:0a:64:e4"), Ip(Example::kNode227),
                   Ip(Example::kNode228), 40000, 1, BuildFrame(in));
    SetOuterTos(f, 0x03);
    const uint64_t before = node_.counter(k_vxlan_ecn_ce_not_ect);
    Outputs out = node_.Run(PortRole::kUplink, {f});
    if (inner_ecn == 0) {
      EXPECT_EQ(out.total(), 0u);
      EXPECT_EQ(node_.counter(k_vxlan_ecn_ce_not_ect), before + 1);
      continue;
    }
    ASSERT_EQ(out.pods().size(), 1u) << int(inner_ecn);
    EXPECT_EQ(ParseFrame(out.pods()[0]).tos & 3, 3);
    EXPECT_EQ(VerifyChecksums(out.pods()[0]), "");
  }
}

TEST_F(WorkerTest, EveryReceivedPacketIsAccountedForByOneCounter) {
  // rx = what left (less what Sluice made itself: ARP requests) + drops +
  // ARP replies consumed.
  std::vector<uint8_t> arp_reply =
      BuildArpRequest(Mac("02:00:0a:0a:64:01"), Ip(Example::kGateway), Ip(Example::kNode228));
  std::copy_n(Mac("02:00:0a:0a:64:e4").begin(), 6, arp_reply.begin());
  arp_reply[21] = 2;
  node_.Run(PortRole::kUplink, {arp_reply});
  for (const JourneyFixture& f : JourneyFixtures()) node_.Run(f.ingress, {f.build()});
  uint64_t drops = 0;
  for (int c = 0; c < kCounterCount; ++c)
    if (CounterInfoOf(static_cast<Counter>(c)).kind == CounterKind::kDrop)
      drops += node_.counter(static_cast<Counter>(c));
  EXPECT_EQ(node_.counter(k_arp_reply_consumed), 1u);
  EXPECT_EQ(node_.counter(k_rx_packets), node_.counter(k_tx_packets) -
                                             node_.counter(k_arp_requests_sent) + drops +
                                             node_.counter(k_arp_reply_consumed));
}

TEST_F(WorkerTest, EstablishedPacketsUseTheFlowsCachedEgressUntilAReload) {
  Worker& w = node_.worker(0);
  node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  EXPECT_EQ(StagePackets(w, kNewFlowNode), 1u);
  EXPECT_EQ(StagePackets(w, kRouteNode), 0u);  // decided by new_flow, kept in the entry
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(node_.Run(PortRole::kUplink, {ClientSynToNodePort()}).uplink().size(), 1u);
  EXPECT_EQ(StagePackets(w, kNatNode), 4u);
  EXPECT_EQ(StagePackets(w, kRouteNode), 0u);  // cached
  EXPECT_EQ(StagePackets(w, kVxlanEncapNode), 4u);
  node_.Reload(Node228Model());  // a new generation: decided again, once
  for (int i = 0; i < 2; ++i)
    ASSERT_EQ(node_.Run(PortRole::kUplink, {ClientSynToNodePort()}).uplink().size(), 1u);
  EXPECT_EQ(StagePackets(w, kRouteNode), 1u);
  EXPECT_EQ(StagePackets(w, kServiceNode), 1u);
  for (const NodeStats& n : w.Stats()) {
    if (n.packets > 0) {
      EXPECT_GT(n.cycles, 0u) << n.node;
    }
  }
}

// Established packets with a current cached egress skip route and ttl: nat
// forwards them, with the same router checks the ttl node makes.
TEST_F(WorkerTest, EstablishedPacketsAreForwardedAsARouterWouldWithoutTheTtlNode) {
  Worker& w = node_.worker(0);
  ASSERT_EQ(node_.Run(PortRole::kUplink, {ClientSynToNodePort()}).uplink().size(), 1u);
  FrameSpec s = AckOf(ClientSynToNodePort());
  s.ttl = 9;
  Outputs out = node_.Run(PortRole::kUplink, {BuildFrame(s)});
  ASSERT_EQ(out.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(out.uplink()[0], 50).ttl, 8);
  EXPECT_EQ(VerifyChecksums(out.uplink()[0], 64), "");
  s.ttl = 1;  // would leave with TTL 0
  EXPECT_EQ(node_.Run(PortRole::kUplink, {BuildFrame(s)}).total(), 0u);
  EXPECT_EQ(node_.counter(k_ttl_exceeded), 1u);
  s.ttl = 64;
  s.l4.payload.assign(1451 - 40, 'x');  // inner IPv4 of 1451 bytes: 1501 outside
  EXPECT_EQ(node_.Run(PortRole::kUplink, {BuildFrame(s)}).total(), 0u);
  EXPECT_EQ(node_.counter(k_vxlan_too_big), 1u);
  s.l4.payload.assign(1450 - 40, 'x');  // fits exactly
  EXPECT_EQ(node_.Run(PortRole::kUplink, {BuildFrame(s)}).uplink().size(), 1u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_original), 4u);
  EXPECT_EQ(StagePackets(w, kRouteNode), 0u);
  EXPECT_EQ(StagePackets(w, kTtlNode), 0u);
}

TEST_F(WorkerTest, TraceRecordsTellTheNodePortJourney) {
  Tracer tracer(0, -1);
  node_.worker(0).SetTracer(&tracer);
  node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  node_.worker(0).SetTracer(nullptr);
  std::string text;
  for (const Tracer::Line& l : tracer.TakeLines(&node_.directory())) text += l.text + "\n";
  for (const char* want :
       {"[uplink in] TCP 172.100.0.6:51234 -> 10.10.100.228:8014 [SYN], TTL ",
        "service: ai/tzp-pytorch-2:ssh, NodePort node address:8014",
        "endpoint: 10.244.25.149:22, chosen at random among 1 ready endpoint(s)",
        "masquerade: external traffic with externalTrafficPolicy Cluster",
        "-> 10.244.26.0:", "nat: now TCP 10.244.26.0:",
        "route: 10.244.25.149 is in 10.244.25.0/24, leased by node 10.10.100.227",
        "vxlan: encapsulated VNI 1, outer 10.10.100.228:",
        "inner MACs 0e:00:00:00:00:e4 -> 0e:00:00:00:00:e3"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  // The flow's first packet is not also reported as a hit on its own entry.
  EXPECT_EQ(text.find("conntrack: original direction"), std::string::npos) << text;
  EXPECT_TRUE(tracer.records().empty());
}

TEST_F(WorkerTest, PerPeerVxlanHeaderFollowsTheNextHopsMac) {
  Outputs a = node_.Run(PortRole::kPods, {PodToRemotePodSyn()});
  ASSERT_EQ(a.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(a.uplink()[0]).dst_mac, Mac("02:00:0a:0a:64:e3"));
  // node-227's MAC changes (a NIC swap): the prebuilt header must not keep
  // the old one.
  // (The neighbour table alone changes: no new table generation.)
  ASSERT_TRUE(
      node_.neighbors()
          .ReplaceStatic({{PortRole::kUplink, Ip(Example::kGateway), Mac("02:00:0a:0a:64:01")},
                          {PortRole::kUplink, Ip(Example::kNode226), Mac("02:00:0a:0a:64:e2")},
                          {PortRole::kUplink, Ip(Example::kNode227), Mac("02:00:0a:0a:99:e3")}})
          .ok());
  Outputs b = node_.Run(PortRole::kPods, {PodToRemotePodSyn()});
  ASSERT_EQ(b.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(b.uplink()[0]).dst_mac, Mac("02:00:0a:0a:99:e3"));
  EXPECT_EQ(VerifyChecksums(b.uplink()[0]), "");
  EXPECT_EQ(VerifyChecksums(b.uplink()[0], 64), "");
}

TEST_F(WorkerTest, EstablishedPacketsTakeTheNextHopsRewriteWithoutTheNeighborNodeUntilItChanges) {
  Worker& w = node_.worker(0);
  // web-1 -> the internet: masqueraded, out of the uplink via the gateway.
  Outputs first = node_.Run(PortRole::kPods, {PodToInternetSyn()});
  ASSERT_EQ(first.uplink().size(), 1u);
  EXPECT_EQ(StagePackets(w, kNeighborNode), 1u);  // resolved there, the rewrite kept
  FrameSpec s = AckOf(PodToInternetSyn());
  s.ttl = 20;
  Outputs out = node_.Run(PortRole::kPods, {BuildFrame(s), BuildFrame(s)});
  ASSERT_EQ(out.uplink().size(), 2u);
  const ParsedFrame p = ParseFrame(out.uplink()[1]);
  EXPECT_EQ(p.dst_mac, Mac("02:00:0a:0a:64:01"));  // the gateway
  EXPECT_EQ(p.src_mac, ParseFrame(first.uplink()[0]).src_mac);
  EXPECT_EQ(p.src_ip, Ip(Example::kNode228));  // masqueraded
  EXPECT_EQ(p.ttl, 19);
  EXPECT_EQ(VerifyChecksums(out.uplink()[1]), "");
  EXPECT_EQ(StagePackets(w, kNeighborNode), 1u);
  // The gateway's MAC changes: the very next packet carries the new one.
  ASSERT_TRUE(
      node_.neighbors()
          .ReplaceStatic({{PortRole::kUplink, Ip(Example::kGateway), Mac("02:00:0a:0a:77:01")},
                          {PortRole::kUplink, Ip(Example::kNode226), Mac("02:00:0a:0a:64:e2")},
                          {PortRole::kUplink, Ip(Example::kNode227), Mac("02:00:0a:0a:64:e3")}})
          .ok());
  out = node_.Run(PortRole::kPods, {BuildFrame(s)});
  ASSERT_EQ(out.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(out.uplink()[0]).dst_mac, Mac("02:00:0a:0a:77:01"));
  EXPECT_EQ(StagePackets(w, kNeighborNode), 2u);
}

TEST_F(WorkerTest, ANodePortToAHostNetworkEndpointIsNotMasqueraded) {
  // MASQUERADE is in POSTROUTING, which local delivery never reaches.
  ClusterModel m = Node228Model();
  m.endpoint_slices[0].endpoints[0].ip = Ip(Example::kNode228);  // hostNetwork sshd
  node_.Reload(m);
  Outputs out = node_.Run(PortRole::kUplink, {ClientSynToNodePort()});
  EXPECT_EQ(out.total(), 0u);  // node-228's model has no host port
  EXPECT_EQ(node_.counter(k_host_path_unavailable), 1u);
  EXPECT_EQ(node_.counter(k_service_dnat), 1u);
  EXPECT_EQ(node_.counter(k_masquerade), 0u);
}

TEST_F(WorkerTest, HeldPacketsLeaveBeforeNewerOnesToTheSameHop) {
  node_.Run(PortRole::kUplink,
            {ClientSynTo("10.244.26.99", 1234), ClientSynTo("10.244.26.99", 1235)});
  // One burst: the answer, then a newer packet to the same pod.
  FrameSpec s;
  s.src_mac = Mac("0a:58:0a:f4:1a:14");
  s.dst_mac = Mac("02:00:0a:f4:1a:01");
  s.src_ip = Ip(Example::kWeb2);  // a remote pod, arriving here through the pods port
  s.dst_ip = Ip("10.244.26.99");
  s.l4.src_port = 1236;
  s.l4.dst_port = 80;
  Outputs out = node_.Run(PortRole::kPods, {Pod99ArpReply(), BuildFrame(s)});
  ASSERT_EQ(out.pods().size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ParseFrame(out.pods()[i]).src_port, 1234 + i) << i;
}

TEST_F(WorkerTest, AVxlanPeersLearnedNextHopIsRefreshedWhileInUse) {
  // node-227 learned by ARP instead of configured: its entry ages like any.
  ClusterModel m = Node228Model();
  m.node.neighbors.erase(m.node.neighbors.begin() + 2);  // node-227's static entry
  node_.Reload(m);
  std::vector<uint8_t> arp =
      BuildArpRequest(Mac("02:00:0a:0a:64:e3"), Ip(Example::kNode227), Ip(Example::kNode228));
  node_.Run(PortRole::kUplink, {arp}, 0, /*now=*/100);  // learned (and answered)
  const uint64_t asked = node_.counter(k_arp_requests_sent);
  ASSERT_EQ(node_.Run(PortRole::kPods, {PodToRemotePodSyn()}, 0, 101).uplink().size(), 1u);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), asked);  // fresh: nothing to ask
  // Past the reachable time the peer's traffic still flows and a refresh
  // request goes out, once per second.
  Outputs later = node_.Run(PortRole::kPods, {PodToRemotePodSyn()}, 0, 140);
  EXPECT_EQ(later.uplink().size(), 2u);  // the packet and the request
  EXPECT_EQ(node_.counter(k_arp_requests_sent), asked + 1);
  node_.Run(PortRole::kPods, {PodToRemotePodSyn()}, 0, 140);
  EXPECT_EQ(node_.counter(k_arp_requests_sent), asked + 1);
}

TEST_F(WorkerTest, AnEchoReplyThatWouldNeedAConnectionIsDropped) {
  FrameSpec s = {};
  s.src_mac = Mac("0a:58:0a:f4:1a:14");
  s.dst_mac = Mac("02:00:0a:f4:1a:01");
  s.src_ip = Ip(Example::kWeb1);
  s.dst_ip = Ip("93.184.216.34");  // would be masqueraded
  s.l4.proto = kProtoIcmp;
  s.l4.icmp_type = 0;  // echo reply to no request
  s.l4.icmp_id = 4242;
  Outputs out = node_.Run(PortRole::kPods, {BuildFrame(s)});
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(node_.counter(k_icmp_echo_reply_untracked), 1u);
  EXPECT_EQ(node_.conntrack().InUse(), 0u);
}

}  // namespace
}  // namespace sluice::testing
