#include "dataplane/vxlan/vxlan.h"

#include <rte_mbuf.h>

#include "gtest/gtest.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/mbuf_pool_test.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

using VxlanTest = MbufPoolTest;

TEST_F(VxlanTest, EncapThenDecapRestoresTheInnerFrame) {
  const auto inner = PodToRemotePodSyn();
  rte_mbuf* m = ToMbuf(pool_, inner);
  PacketMeta meta;
  ParsePacket(m, 0, &meta);
  VxlanEncapParams p;
  p.outer_src_ip = Ip("10.10.100.228");
  p.outer_dst_ip = Ip("10.10.100.227");
  p.outer_src_mac = Mac("02:00:0a:0a:64:e4");
  p.outer_dst_mac = Mac("02:00:0a:0a:64:e3");
  p.inner_src_mac = Mac("0e:00:00:00:00:e4");
  p.inner_dst_mac = Mac("0e:00:00:00:00:e3");
  p.vni = 1;
  p.udp_dst_port = 8472;
  p.udp_src_port = VxlanSourcePort(0x12345678);
  p.ip_id = 7;
  ASSERT_TRUE(VxlanEncapsulate(m, meta, p));
  const auto wire = FromMbuf(m);
  ASSERT_EQ(wire.size(), inner.size() + 50);
  EXPECT_EQ(VerifyChecksums(wire), "");
  const ParsedFrame outer = ParseFrame(wire);
  EXPECT_EQ(outer.total_length, inner.size() + 36);
  EXPECT_EQ(outer.udp_checksum, 0);
  EXPECT_EQ(outer.src_port, p.udp_src_port);
  EXPECT_EQ(std::vector<uint8_t>(wire.begin() + 64, wire.end()),
            std::vector<uint8_t>(inner.begin() + 14, inner.end()));

  PacketMeta outer_meta;
  ParsePacket(m, 0, &outer_meta);
  ASSERT_EQ(outer_meta.cls, PacketClass::kIpv4);
  EXPECT_EQ(VxlanDecapsulate(m, outer_meta, 1), kCounterCount);
  auto back = FromMbuf(m);
  EXPECT_EQ(std::vector<uint8_t>(back.begin() + 14, back.end()),
            std::vector<uint8_t>(inner.begin() + 14, inner.end()));
  EXPECT_EQ(ParseFrame(back).dst_mac, Mac("0e:00:00:00:00:e3"));
  rte_pktmbuf_free(m);
}

TEST_F(VxlanTest, SourcePortStaysInTheKernelsRange) {
  for (uint32_t h : {0u, 1u, 0x7fffffffu, 0xffffffffu}) {
    EXPECT_GE(VxlanSourcePort(h), 32768);
    EXPECT_LT(VxlanSourcePort(h), 60999);
  }
}

TEST_F(VxlanTest, WrongVniAndMissingFlagAreRejected) {
  auto b = BuildVxlan(Mac("02:00:0a:0a:64:e3"), Mac("02:00:0a:0a:64:e4"), Ip("10.10.100.227"),
                      Ip("10.10.100.228"), 40000, 2, PodToRemotePodSyn());
  rte_mbuf* m = ToMbuf(pool_, b);
  PacketMeta meta;
  ParsePacket(m, 0, &meta);
  EXPECT_EQ(VxlanDecapsulate(m, meta, 1), k_vxlan_bad_vni);
  rte_pktmbuf_free(m);
  b[42] = 0;
  m = ToMbuf(pool_, b);
  ParsePacket(m, 0, &meta);
  EXPECT_EQ(VxlanDecapsulate(m, meta, 2), k_vxlan_bad_flags);
  rte_pktmbuf_free(m);
}

}  // namespace
}  // namespace sluice::testing
