#include "control/sources/etcd_gateway.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/escaping.h"

namespace sluice {
namespace {

using json = nlohmann::json;

std::string Decode(const json& v) {
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(v.get<std::string>(), &out));
  return out;
}

TEST(EtcdGatewayTest, PrefixRangeEndIncrementsTheLastByte) {
  EXPECT_EQ(PrefixRangeEnd("/coreos.com/network/"), "/coreos.com/network0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(EtcdGatewayTest, RequestBodiesAreBase64WithInt64AsStrings) {
  const json range = json::parse(RangeRequestBody("/p/", "/p0", 7, 100));
  EXPECT_EQ(Decode(range["key"]), "/p/");
  EXPECT_EQ(Decode(range["range_end"]), "/p0");
  EXPECT_EQ(range["revision"], "7");
  EXPECT_EQ(range["limit"], "100");
  EXPECT_FALSE(json::parse(RangeRequestBody("/p/", "/p0", 0, 0)).contains("revision"));

  const json watch = json::parse(WatchRequestBody("/p/", "/p0", 43, true));
  EXPECT_EQ(Decode(watch["create_request"]["key"]), "/p/");
  EXPECT_EQ(watch["create_request"]["start_revision"], "43");
  EXPECT_EQ(watch["create_request"]["progress_notify"], true);

  EXPECT_EQ(Decode(json::parse(PutRequestBody("/k", "v"))["value"]), "v");
  EXPECT_EQ(json::parse(CompactionRequestBody(12))["revision"], "12");
}

// Answers copied from etcd 3.4.23's gateway.
TEST(EtcdGatewayTest, ParsesARangeAnswer) {
  const absl::StatusOr<EtcdRangeResponse> r = ParseRangeResponse(
      R"({"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952",)"
      R"("revision":"2","raft_term":"2"},"kvs":[{"key":"L2NvcmVvcy5jb20vbmV0d29yay9jb25maWc=",)"
      R"("create_revision":"2","mod_revision":"2","version":"1","value":"eyJOZXR3b3JrIjoiMTAuMjQ0LjAuMC8xNiIsIkJhY2tlbmQiOnsiVHlwZSI6InZ4bGFuIn19"}],"count":"1"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->revision, 2);
  EXPECT_FALSE(r->more);
  ASSERT_EQ(r->kvs.size(), 1u);
  EXPECT_EQ(r->kvs[0].key, "/coreos.com/network/config");
  EXPECT_EQ(r->kvs[0].value, R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}})");
  EXPECT_EQ(r->kvs[0].mod_revision, 2);

  // No match: no kvs at all.
  const auto empty = ParseRangeResponse(R"({"header":{"revision":"5"}})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->kvs.empty());
  EXPECT_EQ(ParseRangeResponse(R"({"header":{"revision":5},"more":true})")->more, true);
  EXPECT_FALSE(ParseRangeResponse(R"({"kvs":[{"key":"!!"}]})").ok());
  EXPECT_FALSE(ParseRangeResponse(R"({"header":{"revision":"x"}})").ok());
  EXPECT_FALSE(ParseRangeResponse("[]").ok());
}

TEST(EtcdGatewayTest, ParsesWatchResponses) {
  const auto created = ParseWatchResponse(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}})");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->revision, 2);
  EXPECT_FALSE(created->IsProgressNotify());

  const auto put = ParseWatchResponse(
      R"({"result":{"header":{"revision":"2"},"events":[{"kv":{"key":"L2NvcmVvcy5jb20vbmV0d29yay9jb25maWc=",)"
      R"("create_revision":"2","mod_revision":"2","version":"1","value":"e30="}}]}})");
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_EQ(put->events.size(), 1u);
  EXPECT_FALSE(put->events[0].is_delete);
  EXPECT_EQ(put->events[0].kv.value, "{}");

  const auto del = ParseWatchResponse(
      R"({"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"L2NvcmVvcy5jb20vbmV0d29yay9jb25maWc=","mod_revision":"3"}}]}})");
  ASSERT_TRUE(del.ok());
  EXPECT_TRUE(del->events[0].is_delete);
  EXPECT_EQ(del->events[0].kv.key, "/coreos.com/network/config");
  EXPECT_EQ(del->events[0].kv.mod_revision, 3);

  const auto progress = ParseWatchResponse(R"({"result":{"header":{"revision":"9"}}})");
  ASSERT_TRUE(progress.ok());
  EXPECT_TRUE(progress->IsProgressNotify());
  EXPECT_EQ(progress->revision, 9);

  const auto compacted = ParseWatchResponse(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"2"}})");
  ASSERT_TRUE(compacted.ok());
  EXPECT_TRUE(compacted->canceled);
  EXPECT_EQ(compacted->compact_revision, 2);

  const auto error = ParseWatchResponse(
      R"({"error":{"grpc_code":14,"http_code":503,"message":"transport is closing","http_status":"Service Unavailable"}})");
  EXPECT_EQ(error.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(error.status().message(), "etcd watch: transport is closing");

  EXPECT_FALSE(ParseWatchResponse(R"({"result":{"events":[{"type":"EXPIRE","kv":{}}]}})").ok());
  EXPECT_FALSE(ParseWatchResponse(R"({"result":{"events":[{}]}})").ok());
  EXPECT_FALSE(ParseWatchResponse(R"({"other":1})").ok());
}

TEST(EtcdGatewayTest, GatewayErrorsKeepTheGrpcCode) {
  const absl::Status compacted = GatewayError(
      400,
      R"({"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11})");
  EXPECT_EQ(compacted.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(compacted.message(),
            "etcd: etcdserver: mvcc: required revision has been compacted (HTTP 400)");
  const absl::Status html = GatewayError(404, "<html>not found</html>");
  EXPECT_EQ(html.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(html.message(), "etcd answered HTTP 404: <html>not found</html>");
}

// Bodies and answers as etcd 3.4.23's gateway sends them.
TEST(EtcdGatewayTest, AuthenticateBodyAndToken) {
  EXPECT_EQ(AuthenticateRequestBody("flannel", "p\"w"), R"({"name":"flannel","password":"p\"w"})");
  const auto token = ParseAuthenticateResponse(
      R"({"header":{"cluster_id":"1","member_id":"2","revision":"1","raft_term":"2"},"token":"NUjitnpSjuwXqVvl.13"})");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "NUjitnpSjuwXqVvl.13");
  EXPECT_FALSE(ParseAuthenticateResponse(R"({"header":{}})").ok());
  EXPECT_FALSE(ParseAuthenticateResponse(R"({"token":""})").ok());
  EXPECT_FALSE(ParseAuthenticateResponse(R"({"token":7})").ok());
  EXPECT_FALSE(ParseAuthenticateResponse("{\"token\":\"a\\r\\nX-Evil: 1\"}").ok());
  EXPECT_FALSE(ParseAuthenticateResponse(R"({"token":"a b"})").ok());

  const absl::Status invalid = GatewayError(
      401,
      R"({"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16})");
  EXPECT_EQ(invalid.code(), absl::StatusCode::kUnauthenticated);
  const auto canceled = ParseWatchResponse(
      R"({"result":{"header":{"revision":"2"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}})");
  ASSERT_TRUE(canceled.ok()) << canceled.status();
  EXPECT_TRUE(canceled->canceled);
  EXPECT_EQ(canceled->cancel_reason,
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token");
}

}  // namespace
}  // namespace sluice
