// NAT rewrites against an independent full checksum recomputation.
#include "dataplane/nat/nat_rewrite.h"

#include <rte_mbuf.h>
#include <rte_random.h>

#include "gtest/gtest.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/mbuf_pool_test.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

using NatRewriteTest = MbufPoolTest;

// One side's address and port (for ICMP echo the identifier, on the side
// the packet carries it) rewritten through the per-flow path: deltas
// computed for the tuple change, then applied.
void RewriteOneSide(rte_mbuf* m, PacketMeta* meta, bool is_source, uint32_t ip, uint16_t port) {
  FlowKey out = meta->key;
  (is_source ? out.src_ip : out.dst_ip) = ip;
  const bool has_port =
      meta->key.proto != kProtoIcmp || (meta->has_ports && meta->is_icmp_echo_reply != is_source);
  if (has_port) (is_source ? out.src_port : out.dst_port) = port;
  ApplyRewrite(m, meta, out, ComputeRewriteDeltas(meta->key, out));
}

TEST_F(NatRewriteTest, RandomRewritesKeepEveryChecksumValid) {
  rte_srand(42);
  for (int proto_case = 0; proto_case < 3; ++proto_case) {
    for (int i = 0; i < 500; ++i) {
      FrameSpec s;
      s.src_ip = static_cast<uint32_t>(rte_rand());
      s.dst_ip = static_cast<uint32_t>(rte_rand());
      s.l4.proto = proto_case == 0 ? kProtoTcp : proto_case == 1 ? kProtoUdp : kProtoIcmp;
      s.l4.src_port = static_cast<uint16_t>(rte_rand());
      s.l4.dst_port = static_cast<uint16_t>(rte_rand());
      s.l4.icmp_id = static_cast<uint16_t>(rte_rand());
      s.l4.payload = std::string(rte_rand_max(40), static_cast<char>(rte_rand()));
      s.src_ip = (s.src_ip & 0x00ffffff) | ((1 + rte_rand_max(100)) << 24);  // unicast source
      rte_mbuf* m = ToMbuf(pool_, BuildFrame(s));
      PacketMeta meta;
      ParsePacket(m, 0, &meta);
      ASSERT_EQ(meta.cls, PacketClass::kIpv4);
      const uint32_t ip = static_cast<uint32_t>(rte_rand());
      const uint16_t port = static_cast<uint16_t>(rte_rand());
      RewriteOneSide(m, &meta, i % 2 == 0, ip, port);
      ASSERT_TRUE(DecrementTtl(m, meta));
      const auto out = FromMbuf(m);
      ASSERT_EQ(VerifyChecksums(out), "") << "case " << proto_case << " #" << i;
      const ParsedFrame p = ParseFrame(out);
      EXPECT_EQ(i % 2 == 0 ? p.src_ip : p.dst_ip, ip);
      if (proto_case < 2) {
        EXPECT_EQ(i % 2 == 0 ? p.src_port : p.dst_port, port);
      }
      if (proto_case == 2 && i % 2 == 0) {
        EXPECT_EQ(p.src_port, port);  // echo id
      }
      EXPECT_EQ(p.ttl, 63);
      rte_pktmbuf_free(m);
    }
  }
}

TEST_F(NatRewriteTest, UdpWithoutChecksumStaysWithout) {
  FrameSpec s;
  s.src_ip = Ip("10.244.26.20");
  s.dst_ip = Ip("10.96.0.10");
  s.l4.proto = kProtoUdp;
  s.l4.src_port = 5353;
  s.l4.dst_port = 53;
  auto b = BuildFrame(s);
  b[40] = b[41] = 0;
  rte_mbuf* m = ToMbuf(pool_, b);
  PacketMeta meta;
  ParsePacket(m, 0, &meta);
  RewriteOneSide(m, &meta, false, Ip("10.244.24.53"), 53);
  const ParsedFrame p = ParseFrame(FromMbuf(m));
  EXPECT_EQ(p.udp_checksum, 0);
  EXPECT_EQ(VerifyChecksums(FromMbuf(m)), "");
  rte_pktmbuf_free(m);
}

TEST_F(NatRewriteTest, TtlOfOneIsNotForwarded) {
  FrameSpec s;
  s.src_ip = Ip("10.0.0.1");
  s.dst_ip = Ip("10.0.0.2");
  s.ttl = 1;
  s.l4.src_port = 1;
  s.l4.dst_port = 2;
  rte_mbuf* m = ToMbuf(pool_, BuildFrame(s));
  PacketMeta meta;
  ParsePacket(m, 0, &meta);
  EXPECT_FALSE(DecrementTtl(m, meta));
  rte_pktmbuf_free(m);
}

// The per-flow path: deltas computed once for a tuple change, applied to
// packets; checked by full recomputation and against the wanted tuple.
TEST_F(NatRewriteTest, PrecomputedDeltasRewriteWholeTuplesWithValidChecksums) {
  rte_srand(7);
  for (int proto_case = 0; proto_case < 4; ++proto_case) {
    for (int i = 0; i < 500; ++i) {
      FrameSpec s;
      s.src_ip = (static_cast<uint32_t>(rte_rand()) & 0x00ffffff) | ((1 + rte_rand_max(100)) << 24);
      s.dst_ip = static_cast<uint32_t>(rte_rand());
      s.l4.proto = proto_case == 0 ? kProtoTcp : proto_case == 1 ? kProtoUdp : kProtoIcmp;
      s.l4.icmp_type = proto_case == 3 ? 0 : 8;  // echo reply: identifier on the other side
      s.l4.src_port = static_cast<uint16_t>(rte_rand());
      s.l4.dst_port = static_cast<uint16_t>(rte_rand());
      s.l4.icmp_id = static_cast<uint16_t>(rte_rand());
      s.l4.payload = std::string(rte_rand_max(40), static_cast<char>(rte_rand()));
      rte_mbuf* m = ToMbuf(pool_, BuildFrame(s));
      PacketMeta meta;
      ParsePacket(m, 0, &meta);
      ASSERT_EQ(meta.cls, PacketClass::kIpv4);
      FlowKey out = meta.key;
      out.src_ip = static_cast<uint32_t>(rte_rand());
      out.dst_ip = static_cast<uint32_t>(rte_rand());
      if (meta.key.proto == kProtoIcmp) {
        (meta.is_icmp_echo_reply ? out.dst_port : out.src_port) = static_cast<uint16_t>(rte_rand());
      } else {
        out.src_port = static_cast<uint16_t>(rte_rand());
        out.dst_port = static_cast<uint16_t>(rte_rand());
      }
      ApplyRewrite(m, &meta, out, ComputeRewriteDeltas(meta.key, out));
      const auto bytes = FromMbuf(m);
      ASSERT_EQ(VerifyChecksums(bytes), "") << "case " << proto_case << " #" << i;
      const ParsedFrame p = ParseFrame(bytes);
      EXPECT_EQ(p.src_ip, out.src_ip);
      EXPECT_EQ(p.dst_ip, out.dst_ip);
      if (meta.key.proto != kProtoIcmp) {
        EXPECT_EQ(p.src_port, out.src_port);
        EXPECT_EQ(p.dst_port, out.dst_port);
      }
      EXPECT_TRUE(meta.key == out);
      rte_pktmbuf_free(m);
    }
  }
}

}  // namespace
}  // namespace sluice::testing
