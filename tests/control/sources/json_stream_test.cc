#include "control/sources/json_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice {
namespace {

// Two watch responses as the gateway sends them, with braces, brackets and
// escaped quotes inside strings.
const std::string kStream =
    "{\"result\":{\"header\":{\"revision\":\"2\"},\"created\":true}}\n"
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"a}{][\\\"\\\\\",\"value\":\"x\"}}]}}\n";
const std::string kFirst = kStream.substr(0, kStream.find('\n'));
const std::string kSecond =
    kStream.substr(kStream.find('\n') + 1, kStream.size() - kStream.find('\n') - 2);

TEST(JsonObjectSplitterTest, SeveralObjectsInOnePiece) {
  JsonObjectSplitter splitter(1 << 20);
  std::vector<std::string> objects;
  ASSERT_TRUE(splitter.Feed(kStream, &objects).ok());
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects[0], kFirst);
  EXPECT_EQ(objects[1], kSecond);
  EXPECT_EQ(splitter.pending_bytes(), 0u);
}

TEST(JsonObjectSplitterTest, EveryCutPointGivesTheSameObjects) {
  for (size_t cut = 0; cut <= kStream.size(); ++cut) {
    JsonObjectSplitter splitter(1 << 20);
    std::vector<std::string> objects;
    ASSERT_TRUE(splitter.Feed(std::string_view(kStream).substr(0, cut), &objects).ok());
    ASSERT_TRUE(splitter.Feed(std::string_view(kStream).substr(cut), &objects).ok());
    ASSERT_EQ(objects.size(), 2u) << "cut at " << cut;
    EXPECT_EQ(objects[0], kFirst) << "cut at " << cut;
    EXPECT_EQ(objects[1], kSecond) << "cut at " << cut;
  }
}

TEST(JsonObjectSplitterTest, ByteByByte) {
  JsonObjectSplitter splitter(1 << 20);
  std::vector<std::string> objects;
  for (const char c : kStream) ASSERT_TRUE(splitter.Feed(std::string_view(&c, 1), &objects).ok());
  ASSERT_EQ(objects.size(), 2u);
  EXPECT_EQ(objects[1], kSecond);
}

TEST(JsonObjectSplitterTest, AnUnfinishedObjectWaitsForMore) {
  JsonObjectSplitter splitter(1 << 20);
  std::vector<std::string> objects;
  ASSERT_TRUE(splitter.Feed("{\"a\":\"}", &objects).ok());
  EXPECT_TRUE(objects.empty());
  EXPECT_EQ(splitter.pending_bytes(), 7u);
  ASSERT_TRUE(splitter.Feed("\"}", &objects).ok());
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0], "{\"a\":\"}\"}");
}

TEST(JsonObjectSplitterTest, SomethingOtherThanAnObjectIsAnError) {
  JsonObjectSplitter splitter(1 << 20);
  std::vector<std::string> objects;
  const absl::Status status = splitter.Feed(" [1]", &objects);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "expected a JSON object, got byte 0x5b");
}

TEST(JsonObjectSplitterTest, AnObjectPastTheLimitIsAnError) {
  JsonObjectSplitter splitter(16);
  std::vector<std::string> objects;
  EXPECT_TRUE(splitter.Feed("{\"a\":\"0123", &objects).ok());
  EXPECT_EQ(splitter.Feed("456789abcdef", &objects).code(), absl::StatusCode::kResourceExhausted);
  splitter.Reset();
  ASSERT_TRUE(splitter.Feed("{}", &objects).ok());
  ASSERT_EQ(objects.size(), 1u);
}

}  // namespace
}  // namespace sluice
