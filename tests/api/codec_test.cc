// api/codec: every message round-trips; the header layout is pinned byte
// by byte; every class of malformed frame is refused with the message that
// names it; the encoder refuses what the decoder would; FrameAssembler cuts
// streams at any boundary.
#include "api/codec.h"

#include <set>
#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/api/sample_messages.h"

namespace sluice::api {
namespace {

using ::sluice::api::testing::Bytes;
using ::sluice::api::testing::Dump;
using ::sluice::api::testing::HandFrame;
using ::sluice::api::testing::Ip;
using ::sluice::api::testing::SampleMessages;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Encode(const Message& m, uint64_t id = 1) {
  absl::StatusOr<std::string> f = EncodeFrame(m, id);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : std::string();
}

// The decoder's error message for `frame` ("" if it decoded).
std::string DecodeError(const std::string& frame) {
  absl::StatusOr<Frame> f = DecodeFrame(frame);
  if (f.ok()) return "";
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  return std::string(f.status().message());
}

uint16_t T(MessageType t) { return static_cast<uint16_t>(t); }

TEST(Codec, SamplesCoverEveryMessageType) {
  std::set<size_t> seen;
  for (const Message& m : SampleMessages()) seen.insert(m.index());
  EXPECT_EQ(seen.size(), std::variant_size_v<Message>);
}

TEST(Codec, EveryMessageTypeRoundTrips) {
  uint64_t id = 1000;
  for (const Message& m : SampleMessages()) {
    SCOPED_TRACE(MessageTypeName(TypeOf(m)));
    const std::string frame = Encode(m, ++id);
    ASSERT_GE(frame.size(), kFrameHeaderBytes);
    EXPECT_EQ(frame.substr(0, 4), "SLCE");
    absl::StatusOr<FrameHeader> h = DecodeFrameHeader(frame);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->type, TypeOf(m));
    EXPECT_EQ(h->payload_length, frame.size() - kFrameHeaderBytes);
    EXPECT_EQ(h->request_id, id);
    absl::StatusOr<Frame> f = DecodeFrame(frame);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->request_id, id);
    EXPECT_EQ(Dump(f->message), Dump(m));
    EXPECT_EQ(f->message.index(), m.index());
  }
}

TEST(Codec, TypeNamesAndClasses) {
  EXPECT_EQ(MessageTypeName(MessageType::kServicePortUpsert), "ServicePortUpsert");
  EXPECT_EQ(MessageTypeName(static_cast<MessageType>(99)), "type 99");
  EXPECT_TRUE(IsWriteMessage(MessageType::kSyncBegin));
  EXPECT_TRUE(IsWriteMessage(MessageType::kNeighborsReplace));
  EXPECT_FALSE(IsWriteMessage(MessageType::kHello));
  EXPECT_FALSE(IsWriteMessage(MessageType::kShow));
  EXPECT_TRUE(IsRequestMessage(MessageType::kShow));
  EXPECT_TRUE(IsRequestMessage(MessageType::kHello));
  EXPECT_FALSE(IsRequestMessage(MessageType::kOk));
  EXPECT_FALSE(IsRequestMessage(MessageType::kJsonReply));
  for (const Message& m : SampleMessages()) EXPECT_TRUE(IsKnownMessageType(T(TypeOf(m))));
  EXPECT_FALSE(IsKnownMessageType(0));
  EXPECT_FALSE(IsKnownMessageType(11));
  EXPECT_FALSE(IsKnownMessageType(68));
}

TEST(Codec, HeaderLayoutIsFixedLittleEndian) {
  const std::string frame = Encode(SyncBegin{0x0102030405060708}, 0x1122334455667788);
  const std::string expected = std::string("SLCE")                   // magic 0x45434c53
                               + std::string("\x01\x00", 2)          // version 1
                               + std::string("\x02\x00", 2)          // type SyncBegin
                               + std::string("\x00\x00\x00\x00", 4)  // flags, reserved
                               + std::string("\x08\x00\x00\x00", 4)  // payload length
                               + std::string("\x88\x77\x66\x55\x44\x33\x22\x11", 8)   // request id
                               + std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8);  // epoch
  EXPECT_EQ(frame, expected);
}

TEST(Codec, PayloadLayoutMatchesTheHandWrittenOne) {
  // Strings and vectors are u32-counted, enums one byte, in field order.
  const std::string by_hand = HandFrame(T(MessageType::kEndpointSetReplace),
                                        Bytes()
                                            .Str("default")
                                            .Str("web")
                                            .Str("http")
                                            .U8(17)  // the key: default/web:http/UDP
                                            .U32(1)  // one endpoint
                                            .U32(Ip(10, 244, 25, 149))
                                            .U16(8080)
                                            .U8(1)
                                            .U8(0)
                                            .U8(1)
                                            .Str("node-227")
                                            .Str("")
                                            .str(),
                                        9);
  EndpointSetReplace m;
  m.key = testing::WebKey();
  m.endpoints.push_back(Endpoint{Ip(10, 244, 25, 149), 8080, true, false, true, "node-227", ""});
  EXPECT_EQ(Encode(m, 9), by_hand);

  const std::string neighbors =
      HandFrame(T(MessageType::kNeighborsReplace),
                Bytes().U32(1).U8(2).U32(Ip(169, 254, 0, 1)).Mac6(testing::Mac(10)).str(), 3);
  EXPECT_EQ(
      Encode(
          NeighborsReplace{{NeighborEntry{PortRole::kHost, Ip(169, 254, 0, 1), testing::Mac(10)}}},
          3),
      neighbors);
}

TEST(Codec, NodeSettingsDoesNotCarryNeighbors) {
  NodeSettings ns = std::get<NodeSettings>(SampleMessages()[3]);
  ns.node.neighbors.push_back(NeighborEntry{PortRole::kUplink, 1, {}});
  absl::StatusOr<Frame> f = DecodeFrame(Encode(ns));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(std::get<NodeSettings>(f->message).node.neighbors.empty());
}

TEST(Codec, WrongMagicIsRefused) {
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kOk), Bytes().U64(1).str(), 1, 0x50545448)),
            "frame: magic: 0x50545448, expected 0x45434c53 (\"SLCE\")");
}

TEST(Codec, OtherVersionIsRefusedNamingOurs) {
  const std::string message =
      DecodeError(HandFrame(T(MessageType::kOk), Bytes().U64(1).str(), 1, kMagic, 2));
  EXPECT_EQ(message, "frame: version: 2 is not supported (this end speaks version 1)");
  const Error e = ErrorFromStatus(absl::InvalidArgumentError(message));
  EXPECT_EQ(e.object, "frame");
  EXPECT_EQ(e.field, "version");
  EXPECT_EQ(e.message, "2 is not supported (this end speaks version 1)");
}

TEST(Codec, UnknownTypeIsRefused) {
  EXPECT_EQ(DecodeError(HandFrame(99, "")), "frame: type: 99 is not a message type");
  EXPECT_EQ(DecodeError(HandFrame(0, "")), "frame: type: 0 is not a message type");
}

TEST(Codec, FlagsAndReservedMustBeZero) {
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kOk), Bytes().U64(1).str(), 1, kMagic, 1, 1)),
            "frame: flags: 0x0001, none are defined in version 1");
  EXPECT_EQ(
      DecodeError(HandFrame(T(MessageType::kOk), Bytes().U64(1).str(), 1, kMagic, 1, 0, 0x80)),
      "frame: reserved: 0x0080, must be 0");
}

TEST(Codec, OversizedLengthIsRefusedFromTheHeaderAlone) {
  std::string header = HandFrame(T(MessageType::kJsonReply), "");
  header[12] = '\xe9';  // payload_length = 0x00ffffe9 = kMaxPayloadBytes + 1
  header[13] = '\xff';
  header[14] = '\xff';
  header[15] = '\x00';
  ASSERT_EQ(kMaxPayloadBytes + 1, 0x00ffffe9u);
  absl::StatusOr<FrameHeader> h = DecodeFrameHeader(header);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().message(), "frame: payload_length: 16777193 bytes, at most 16777192");
  // The assembler refuses it before waiting for 16 MB.
  FrameAssembler a;
  a.Append(header);
  EXPECT_EQ(a.Next().kind, FrameAssembler::Kind::kBroken);
}

TEST(Codec, TruncationAtEveryOffsetIsRefused) {
  for (const Message& m : SampleMessages()) {
    const std::string name = MessageTypeName(TypeOf(m));
    SCOPED_TRACE(name);
    const std::string frame = Encode(m);
    for (size_t k = 0; k < frame.size(); ++k) {
      SCOPED_TRACE(k);
      // Cut short: the header promises more than there is.
      const std::string cut = DecodeError(frame.substr(0, k));
      if (k < kFrameHeaderBytes) {
        EXPECT_EQ(cut, absl::StrCat("frame: header: truncated: ", k, " of 24 bytes"));
      } else {
        EXPECT_EQ(cut, absl::StrCat(name, ": payload: truncated: ", k - kFrameHeaderBytes, " of ",
                                    frame.size() - kFrameHeaderBytes, " bytes"));
        // Cut short with a header that agrees: a field runs out.
        std::string agreeing = frame.substr(0, k);
        const uint32_t len = static_cast<uint32_t>(k - kFrameHeaderBytes);
        for (int i = 0; i < 4; ++i) agreeing[12 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
        const std::string field = DecodeError(agreeing);
        EXPECT_THAT(field, StartsWith(name + ": "));
        EXPECT_THAT(field, HasSubstr("truncated"));
      }
    }
  }
}

TEST(Codec, TrailingBytesAreRefused) {
  const std::string frame = Encode(Ok{5});
  EXPECT_EQ(DecodeError(frame + "xyz"), "Ok: payload: 3 trailing bytes after the frame");
  // Inside the payload, past the last field.
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kOk), Bytes().U64(5).U8(0).str())),
            "Ok: payload: 1 trailing bytes after the last field");
}

// ServicePortUpsert's payload up to its cluster_ips count.
Bytes ServicePortPrefix() {
  return std::move(
      Bytes().Str("default").Str("web").Str("http").U8(6).Str("ClusterIP").U16(80).U16(0));
}

TEST(Codec, HostileCountsAreRefusedBeforeAllocating) {
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kServicePortUpsert),
                                  ServicePortPrefix().U32(70000).str())),
            "ServicePortUpsert: port.cluster_ips: 70000 entries, at most 1024");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kServicePortUpsert),
                                  ServicePortPrefix().U32(1000).U32(1).str())),
            "ServicePortUpsert: port.cluster_ips: truncated: 1000 entries need at least 4000 "
            "bytes, 4 left");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kEndpointSetReplace),
                                  Bytes().Str("a").Str("b").Str("").U8(6).U32(60000).str())),
            "EndpointSetReplace: endpoints: truncated: 60000 entries need at least 1020000 "
            "bytes, 0 left");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kEndpointSetReplace),
                                  Bytes().Str("a").Str("b").Str("").U8(6).U32(0xffffffff).str())),
            "EndpointSetReplace: endpoints: 4294967295 entries, at most 65535");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kNeighborsReplace), Bytes().U32(16385).str())),
            "NeighborsReplace: neighbors: 16385 entries, at most 16384");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kHello), Bytes().U32(0xffffffff).str())),
            "Hello: client: 4294967295 bytes, at most 4096");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kHello), Bytes().U32(100).Raw("abc").str())),
            "Hello: client: truncated: needs 100 bytes, 3 left");
}

TEST(Codec, EnumsAndBoolsOutOfRangeAreRefused) {
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kServicePortDelete),
                                  Bytes().Str("default").Str("web").Str("").U8(7).str())),
            "ServicePortDelete: key.protocol: 7 is not a protocol (6 TCP, 17 UDP, 132 SCTP)");
  EXPECT_EQ(
      DecodeError(HandFrame(T(MessageType::kServicePortUpsert),
                            ServicePortPrefix().U32(0).U32(0).U32(0).U8(2).str())),
      "ServicePortUpsert: port.external_traffic_policy: 2 is not a traffic policy (0 Cluster, 1 "
      "Local)");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kNeighborsReplace), Bytes()
                                                                         .U32(2)
                                                                         .U8(0)
                                                                         .U32(1)
                                                                         .Mac6(testing::Mac(1))
                                                                         .U8(3)
                                                                         .U32(2)
                                                                         .Mac6(testing::Mac(2))
                                                                         .str())),
            "NeighborsReplace: neighbors[1].port: 3 is not a port (0 uplink, 1 pods, 2 host)");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kHello), Bytes().Str("x").U8(2).str())),
            "Hello: want_write: 2 is not a boolean (0 or 1)");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kLeaseDelete), Bytes().U32(1).U8(33).str())),
            "LeaseDelete: subnet.length: 33 is out of range (at most 32)");
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kEndpointSetReplace), Bytes()
                                                                           .Str("a")
                                                                           .Str("b")
                                                                           .Str("")
                                                                           .U8(17)
                                                                           .U32(1)
                                                                           .U32(1)
                                                                           .U16(2)
                                                                           .U8(1)
                                                                           .U8(1)
                                                                           .U8(9)
                                                                           .Str("")
                                                                           .Str("")
                                                                           .str())),
            "EndpointSetReplace: endpoints[0].terminating: 9 is not a boolean (0 or 1)");
}

TEST(Codec, StringsWithNulOrOverlongAreRefused) {
  EXPECT_EQ(DecodeError(HandFrame(T(MessageType::kHello),
                                  Bytes().Str(std::string("abc\0def", 7)).U8(0).str())),
            "Hello: client: contains a NUL byte at offset 3");
  EXPECT_EQ(
      DecodeError(HandFrame(T(MessageType::kServicePortDelete),
                            Bytes().Str(std::string(254, 'n')).Str("web").Str("").U8(6).str())),
      "ServicePortDelete: key.namespace_name: 254 bytes, at most 253");
}

TEST(Codec, EncoderRefusesWhatTheDecoderWould) {
  std::string out = "kept";
  ServicePort p;
  p.key = testing::WebKey();
  p.cluster_ips.assign(70000, Ip(10, 96, 0, 1));
  absl::Status s = EncodeFrame(ServicePortUpsert{p}, 1, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "ServicePortUpsert: port.cluster_ips: 70000 entries, at most 1024");
  EXPECT_EQ(out, "kept");  // unchanged on error

  EndpointSetReplace es;
  es.key = testing::WebKey();
  es.endpoints.resize(3);
  es.endpoints[2].node_name = std::string("node\0x", 6);
  EXPECT_EQ(EncodeFrame(es, 1).status().message(),
            "EndpointSetReplace: endpoints[2].node_name: contains a NUL byte at offset 4");

  ServicePortDelete bad_enum{testing::WebKey()};
  bad_enum.key.protocol = static_cast<L4Protocol>(1);
  EXPECT_EQ(EncodeFrame(bad_enum, 1).status().message(),
            "ServicePortDelete: key.protocol: 1 is not a protocol (6 TCP, 17 UDP, 132 SCTP)");

  EXPECT_EQ(EncodeFrame(LeaseDelete{Ipv4Prefix{0, 40}}, 1).status().message(),
            "LeaseDelete: subnet.length: 40 is out of range (at most 32)");
}

TEST(Codec, FrameSizeIsBoundedByMaxMessageBytes) {
  // The largest JsonReply fills a frame of exactly kMaxMessageBytes.
  JsonReply big{std::string(kMaxJsonBytes, 'j')};
  absl::StatusOr<std::string> f = EncodeFrame(big, 1);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size(), kMaxMessageBytes);
  absl::StatusOr<Frame> back = DecodeFrame(*f);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::get<JsonReply>(back->message).json.size(), kMaxJsonBytes);

  big.json.push_back('j');
  EXPECT_EQ(EncodeFrame(big, 1).status().message(),
            "JsonReply: json: 16777189 bytes, at most 16777188");

  // Many endpoints with long names: each fits, the frame does not.
  EndpointSetReplace es;
  es.key = testing::WebKey();
  es.endpoints.assign(kMaxEndpointsPerSet,
                      Endpoint{1, 2, true, true, false, std::string(kMaxNameBytes, 'n'), ""});
  absl::Status s = EncodeFrame(es, 1).status();
  EXPECT_THAT(std::string(s.message()), StartsWith("EndpointSetReplace: payload: "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("bytes, at most 16777192"));
}

TEST(Codec, ErrorFromStatusSplitsObjectFieldAndMessage) {
  Error e = ErrorFromStatus(absl::InvalidArgumentError(
      "ServicePortUpsert: port.cluster_ips: 70000 entries, at most 1024"));
  EXPECT_EQ(e.object, "ServicePortUpsert");
  EXPECT_EQ(e.field, "port.cluster_ips");
  EXPECT_EQ(e.message, "70000 entries, at most 1024");
  e = ErrorFromStatus(absl::InvalidArgumentError("no structure here"));
  EXPECT_EQ(e.object, "message");
  EXPECT_EQ(e.field, "");
  EXPECT_EQ(e.message, "no structure here");
}

// FrameAssembler

std::string AllSamples(uint64_t first_id) {
  std::string s;
  for (const Message& m : SampleMessages()) s += Encode(m, first_id++);
  return s;
}

TEST(FrameAssembler, ByteByByteYieldsEveryFrameInOrder) {
  const std::string stream = AllSamples(1);
  const std::vector<Message> samples = SampleMessages();
  FrameAssembler a;
  size_t got = 0;
  for (char ch : stream) {
    a.Append(absl::string_view(&ch, 1));
    for (FrameAssembler::Item item = a.Next(); item.kind != FrameAssembler::Kind::kNeedMore;
         item = a.Next()) {
      ASSERT_EQ(item.kind, FrameAssembler::Kind::kFrame) << item.error;
      ASSERT_LT(got, samples.size());
      EXPECT_EQ(item.request_id, got + 1);
      EXPECT_EQ(Dump(item.frame.message), Dump(samples[got]));
      ++got;
    }
  }
  EXPECT_EQ(got, samples.size());
  EXPECT_EQ(a.buffered_bytes(), 0u);
}

TEST(FrameAssembler, ManyFramesInOneAppendAndReadIntoReservedRoom) {
  const std::string stream = AllSamples(10);
  FrameAssembler a;
  // Half through Reserve/Commit (as a read(2) would), half through Append.
  const size_t half = stream.size() / 2;
  char* room = a.Reserve(half + 100);
  std::memcpy(room, stream.data(), half);
  a.Commit(half);
  a.Append(absl::string_view(stream).substr(half));
  size_t got = 0;
  for (FrameAssembler::Item item = a.Next(); item.kind == FrameAssembler::Kind::kFrame;
       item = a.Next())
    EXPECT_EQ(item.request_id, 10 + got++);
  EXPECT_EQ(got, SampleMessages().size());
}

TEST(FrameAssembler, RejectedFrameSkippedBrokenStreamStaysBroken) {
  FrameAssembler a;
  a.Append(Encode(Ok{1}, 1) + HandFrame(99, "abc", 2) +
           HandFrame(T(MessageType::kHello), Bytes().Str("x").U8(5).str(), 3) + Encode(Ok{4}, 4));
  FrameAssembler::Item i = a.Next();
  EXPECT_EQ(i.kind, FrameAssembler::Kind::kFrame);
  i = a.Next();
  EXPECT_EQ(i.kind, FrameAssembler::Kind::kRejected);
  EXPECT_EQ(i.request_id, 2u);
  EXPECT_EQ(i.error.message(), "frame: type: 99 is not a message type");
  i = a.Next();
  EXPECT_EQ(i.kind, FrameAssembler::Kind::kRejected);
  EXPECT_EQ(i.request_id, 3u);
  EXPECT_EQ(i.error.message(), "Hello: want_write: 5 is not a boolean (0 or 1)");
  i = a.Next();
  EXPECT_EQ(i.kind, FrameAssembler::Kind::kFrame);
  EXPECT_EQ(i.request_id, 4u);

  a.Append(HandFrame(T(MessageType::kOk), Bytes().U64(1).str(), 5, kMagic, 3));
  a.Append(Encode(Ok{6}, 6));
  for (int k = 0; k < 2; ++k) {
    i = a.Next();
    EXPECT_EQ(i.kind, FrameAssembler::Kind::kBroken);
    EXPECT_EQ(i.error.message(), "frame: version: 3 is not supported (this end speaks version 1)");
  }
  EXPECT_TRUE(a.broken());
}

TEST(FrameAssembler, StrayTextIsRefusedWithoutWaitingForAHeader) {
  FrameAssembler a;
  a.Append("GET ");
  FrameAssembler::Item i = a.Next();
  EXPECT_EQ(i.kind, FrameAssembler::Kind::kBroken);
  EXPECT_EQ(i.error.message(), "frame: magic: 0x20544547, expected 0x45434c53 (\"SLCE\")");
  FrameAssembler b;
  b.Append("SLC");  // a prefix of the magic: wait
  EXPECT_EQ(b.Next().kind, FrameAssembler::Kind::kNeedMore);
  b.Append(std::string("E\x07\x00", 3));  // then version 7
  EXPECT_EQ(b.Next().error.message(),
            "frame: version: 7 is not supported (this end speaks version 1)");
}

}  // namespace
}  // namespace sluice::api
