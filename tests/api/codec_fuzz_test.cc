// Random mutations of valid frames (fixed seed, bounded iterations) never
// crash the decoder or make it read out of bounds (the sanitizer build runs
// this too), and whatever it accepts is canonical: encoding the decoded
// message gives back the very bytes.
#include <cstdint>
#include <random>
#include <string>

#include "api/codec.h"
#include "gtest/gtest.h"
#include "tests/api/sample_messages.h"

namespace sluice::api {
namespace {

using ::sluice::api::testing::SampleMessages;

constexpr int kIterationsPerSample = 4000;

std::string Mutate(std::string f, std::mt19937& rng) {
  auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const int edits = 1 + static_cast<int>(pick(4));
  for (int e = 0; e < edits && !f.empty(); ++e) {
    switch (pick(7)) {
      case 0:  // flip a bit
        f[pick(f.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1: {  // a byte to a boundary value
        static constexpr char kValues[] = {0, 1, 0x7f, static_cast<char>(0x80),
                                           static_cast<char>(0xff)};
        f[pick(f.size())] = kValues[pick(sizeof(kValues))];
        break;
      }
      case 2: {  // a hostile u32 anywhere (counts, lengths)
        static constexpr uint32_t kValues[] = {0xffffffff, 0x7fffffff, 0x10000,
                                               1025,       65536,      kMaxMessageBytes};
        const uint32_t v = kValues[pick(sizeof(kValues) / sizeof(kValues[0]))];
        if (f.size() >= 4) {
          const size_t at = pick(f.size() - 3);
          for (int i = 0; i < 4; ++i) f[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
        }
        break;
      }
      case 3:  // truncate
        f.resize(pick(f.size()));
        break;
      case 4: {  // duplicate a slice
        const size_t at = pick(f.size());
        const size_t n = 1 + pick(16);
        f.insert(at, f.substr(at, n));
        break;
      }
      case 5: {  // insert random bytes
        const size_t at = pick(f.size() + 1);
        const size_t n = 1 + pick(8);
        std::string junk;
        for (size_t i = 0; i < n; ++i) junk += static_cast<char>(pick(256));
        f.insert(at, junk);
        break;
      }
      case 6:  // erase a byte
        f.erase(pick(f.size()), 1);
        break;
    }
  }
  // Usually make the header agree with the new size, so that the mutation
  // reaches the payload decoder instead of stopping at the length check.
  if (f.size() >= kFrameHeaderBytes && pick(4) != 0) {
    const uint32_t len = static_cast<uint32_t>(f.size() - kFrameHeaderBytes);
    for (int i = 0; i < 4; ++i) f[12 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
  }
  return f;
}

TEST(CodecFuzz, MutatedFramesNeverCrashAndAcceptedOnesAreCanonical) {
  std::mt19937 rng(20261207);
  int accepted = 0, rejected = 0, payload_errors = 0;
  uint64_t id = 1;
  for (const Message& m : SampleMessages()) {
    absl::StatusOr<std::string> valid = EncodeFrame(m, id++);
    ASSERT_TRUE(valid.ok());
    for (int i = 0; i < kIterationsPerSample; ++i) {
      const std::string f = Mutate(*valid, rng);
      absl::StatusOr<Frame> d = DecodeFrame(f);
      if (!d.ok()) {
        ++rejected;
        ASSERT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
        if (d.status().message().rfind("frame: ", 0) != 0) ++payload_errors;
        continue;
      }
      ++accepted;
      absl::StatusOr<std::string> again = EncodeFrame(d->message, d->request_id);
      ASSERT_TRUE(again.ok()) << again.status();
      ASSERT_EQ(*again, f) << "accepted a non-canonical frame of " << MessageTypeName(TypeOf(m));

      // The same bytes through the stream assembler, in random pieces.
      FrameAssembler a;
      size_t at = 0;
      int frames = 0;
      while (at < f.size()) {
        const size_t n = std::uniform_int_distribution<size_t>(1, 64)(rng);
        a.Append(absl::string_view(f).substr(at, n));
        at += n;
        for (auto item = a.Next(); item.kind != FrameAssembler::Kind::kNeedMore; item = a.Next()) {
          ASSERT_EQ(item.kind, FrameAssembler::Kind::kFrame) << item.error;
          ++frames;
        }
      }
      EXPECT_EQ(frames, 1);
    }
  }
  // The mutations reach both outcomes, and errors beyond the header.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(rejected, 10000);
  EXPECT_GT(payload_errors, 5000);
  RecordProperty("accepted", accepted);
  RecordProperty("rejected", rejected);
}

TEST(CodecFuzz, RandomStreamsThroughTheAssemblerNeverCrash) {
  std::mt19937 rng(7);
  std::string stream;
  for (const Message& m : SampleMessages()) stream += *EncodeFrame(m, 1);
  for (int i = 0; i < 2000; ++i) {
    const std::string s = Mutate(stream, rng);
    FrameAssembler a;
    size_t at = 0;
    bool broken = false;
    while (at < s.size() && !broken) {
      const size_t n = std::uniform_int_distribution<size_t>(1, 300)(rng);
      a.Append(absl::string_view(s).substr(at, n));
      at += n;
      for (auto item = a.Next(); item.kind != FrameAssembler::Kind::kNeedMore; item = a.Next()) {
        if (item.kind == FrameAssembler::Kind::kBroken) {
          broken = true;
          break;
        }
      }
    }
  }
}

}  // namespace
}  // namespace sluice::api
