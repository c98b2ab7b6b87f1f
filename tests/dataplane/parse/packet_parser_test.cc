#include "dataplane/parse/packet_parser.h"

#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_random.h>

#include <cstring>

#include "gtest/gtest.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/mbuf_pool_test.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

class PacketParserTest : public MbufPoolTest {
 protected:
  PacketMeta Parse(const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = ToMbuf(pool_, bytes);
    PacketMeta meta;
    ParsePacket(m, 0, &meta);
    rte_pktmbuf_free(m);
    return meta;
  }
};

TEST_F(PacketParserTest, TcpSynYieldsItsFlowKey) {
  const PacketMeta m = Parse(ClientSynToNodePort());
  ASSERT_EQ(m.cls, PacketClass::kIpv4);
  EXPECT_EQ(m.key.src_ip, Ip("172.100.0.6"));
  EXPECT_EQ(m.key.dst_ip, Ip("10.10.100.228"));
  EXPECT_EQ(m.key.src_port, 51234);
  EXPECT_EQ(m.key.dst_port, 8014);
  EXPECT_EQ(m.key.proto, kProtoTcp);
  EXPECT_EQ(m.tcp_flags, 0x02);
  EXPECT_EQ(m.l3_offset, 14);
  EXPECT_EQ(m.l4_offset, 34);
}

TEST_F(PacketParserTest, EchoRequestAndReplyKeysMirrorEachOther) {
  const PacketMeta req = Parse(PodToInternetPing());
  ASSERT_EQ(req.cls, PacketClass::kIpv4);
  EXPECT_TRUE(req.has_ports);
  EXPECT_EQ(req.key.src_port, 777);
  EXPECT_EQ(req.key.dst_port, 0);
  auto reply = PodToInternetPing();
  reply[34] = 0;  // echo reply (checksum is not checked by the parser)
  const PacketMeta rep = Parse(reply);
  EXPECT_TRUE(rep.is_icmp_echo_reply);
  EXPECT_EQ(rep.key.src_port, 0);
  EXPECT_EQ(rep.key.dst_port, 777);
}

TEST_F(PacketParserTest, ArpIsClassified) {
  EXPECT_EQ(Parse(GatewayArpForNodeIp()).cls, PacketClass::kArp);
}

// Every truncation of a valid frame is either a clean drop with a reason or
// (for cuts inside the payload) never read past the end; none crashes.
TEST_F(PacketParserTest, EveryTruncationIsDroppedWithAReason) {
  const auto full = ClientSynToNodePort();
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE(len);
    const PacketMeta m = Parse(std::vector<uint8_t>(full.begin(), full.begin() + len));
    EXPECT_EQ(m.cls, PacketClass::kDrop);
    EXPECT_NE(m.drop_reason, kCounterCount);
  }
}

struct Malformed {
  const char* name;
  size_t offset;
  uint8_t value;
  Counter reason;
};

TEST_F(PacketParserTest, MalformedHeadersAreDroppedByReason) {
  const Malformed cases[] = {
      {"version 6 in an IPv4 frame", 14, 0x65, k_ipv4_bad_version},
      {"IHL 4", 14, 0x44, k_ipv4_bad_ihl},
      {"IHL 15 past the frame", 14, 0x4f, k_ipv4_truncated},
      {"total length 0x0fff", 16, 0x0f, k_ipv4_bad_total_length},
      {"header checksum", 25, 0x00, k_ipv4_bad_checksum},
      {"TCP data offset 4", 46, 0x40, k_tcp_truncated},
      {"source 127.x", 26, 127, k_ipv4_bad_source},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    auto b = ClientSynToNodePort();
    b[c.offset] = c.value;
    // Keep the header checksum right unless that is the point.
    if (c.reason != k_ipv4_bad_checksum && c.offset < 34) {
      b[24] = b[25] = 0;
      uint32_t sum = 0;
      for (size_t i = 14; i < 34; i += 2) sum += (b[i] << 8) | b[i + 1];
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      b[24] = static_cast<uint8_t>(~sum >> 8);
      b[25] = static_cast<uint8_t>(~sum);
    }
    const PacketMeta m = Parse(b);
    EXPECT_EQ(m.cls, PacketClass::kDrop);
    EXPECT_EQ(CounterInfoOf(m.drop_reason).name, CounterInfoOf(c.reason).name);
  }
}

// The header check agrees with the plain 16-bit one's-complement sum
// (rte_raw_cksum) on random headers with and without a right checksum, with
// and without options.
TEST(HeaderChecksumTest, AgreesWithTheOnesComplementSum) {
  rte_srand(7);
  int valid = 0;
  for (int i = 0; i < 200000; ++i) {
    uint8_t h[60];
    for (auto& b : h) b = static_cast<uint8_t>(rte_rand());
    const uint32_t len = (i % 4 == 0) ? 4u * (5 + static_cast<uint32_t>(rte_rand_max(11))) : 20u;
    h[0] = static_cast<uint8_t>(0x40 | (len / 4));
    if (i % 2 == 0) {  // a right checksum, as a sender computes it
      h[10] = h[11] = 0;
      const uint16_t c = static_cast<uint16_t>(~rte_raw_cksum(h, len));
      std::memcpy(h + 10, &c, 2);
    }
    const bool want = rte_raw_cksum(h, len) == 0xffff;
    valid += want;
    ASSERT_EQ(parser_internal::HeaderChecksumValid(h, len), want) << "header " << i;
  }
  EXPECT_GE(valid, 100000);  // every right one (and any random one that is)
}

TEST_F(PacketParserTest, EthernetPaddingIsTrimmedToTheIpLength) {
  auto b = ClientSynToNodePort();
  b.resize(b.size() + 6, 0);
  rte_mbuf* m = ToMbuf(pool_, b);
  PacketMeta meta;
  ParsePacket(m, 0, &meta);
  ASSERT_EQ(meta.cls, PacketClass::kIpv4);
  TrimToIpLength(m, meta);
  EXPECT_EQ(rte_pktmbuf_data_len(m), b.size() - 6);
  rte_pktmbuf_free(m);
}

}  // namespace
}  // namespace sluice::testing
