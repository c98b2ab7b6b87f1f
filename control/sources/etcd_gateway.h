// etcd v3's JSON gateway (grpc-gateway in front of the KV and Watch services,
// as in etcd 3.4: POST /v3/kv/range, /v3/watch, ...): request bodies and the
// decoding of its answers. Keys and values travel base64-encoded; 64-bit
// integers are JSON strings ("revision": "42"); fields at their default value
// are left out (a PUT event has no "type", only a DELETE has "type":
// "DELETE"; "created", "canceled", "more" appear only when true).
//
// A watch stream is one HTTP response carrying one JSON object per watch
// response: {"result": {"header": {...}, "created": true}} when the watch
// starts, {"result": {"header": {...}, "events": [...]}} for changes, an
// empty {"result": {"header": {...}}} as a progress notification, and
// {"result": {..., "canceled": true, "compact_revision": "N"}} when the
// requested revision was compacted away. A failed stream may end with
// {"error": {"grpc_code": N, "message": "..."}}.
//
// Authentication (etcd's v3 users): /v3/auth/authenticate with a name and a
// password answers {"token": "..."}; later requests carry the raw token as
// their "Authorization" header. A token etcd no longer knows (it restarted;
// simple tokens also expire) is refused with code 16, "etcdserver: invalid
// auth token" (HTTP 401), or, for a watch, a watch response "created" and
// "canceled" at once whose cancel_reason says "code = Unauthenticated"; a
// wrong name or password is code 3 (HTTP 400), "authentication failed,
// invalid user ID or password"; authenticating where auth is off is code 9
// (HTTP 412), "authentication is not enabled".
//
// Errors: the Parse functions return InvalidArgument for text that is not
// what the gateway sends (not JSON, a field of the wrong type, bad base64),
// and GatewayError turns an error answer into the status of its gRPC code
// (code 11, "required revision has been compacted", becomes OutOfRange).
//
// Concurrency: pure functions; any thread. No I/O here (etcd_source.h does
// it).
#ifndef SLUICE_CONTROL_SOURCES_ETCD_GATEWAY_H_
#define SLUICE_CONTROL_SOURCES_ETCD_GATEWAY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

// One key-value, key and value decoded from base64.
struct EtcdKv {
  std::string key;
  std::string value;  // empty for a DELETE event
  int64_t mod_revision = 0;
};

struct EtcdRangeResponse {
  int64_t revision = 0;  // the store's revision the range was read at
  std::vector<EtcdKv> kvs;
  bool more = false;  // a limit cut the answer; more keys follow the last one
};

struct EtcdWatchEvent {
  bool is_delete = false;
  EtcdKv kv;
};

struct EtcdWatchResponse {
  int64_t revision = 0;  // header.revision
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // non-zero: the start revision was compacted
  std::string cancel_reason;
  std::vector<EtcdWatchEvent> events;

  // No events and no state change: a progress notification, meaning every
  // change up to `revision` has been sent.
  bool IsProgressNotify() const { return events.empty() && !created && !canceled; }
};

// The end of the range holding every key that starts with `prefix` (the
// prefix with its last byte incremented, as etcdctl --prefix does); "\0" (all
// keys) when the prefix is empty or all 0xff.
std::string PrefixRangeEnd(std::string_view prefix);

// {"key", "range_end", "limit", "revision" (0: the current one)}, base64 where
// etcd wants it.
std::string RangeRequestBody(std::string_view key, std::string_view range_end, int64_t revision,
                             int64_t limit);

// {"create_request": {"key", "range_end", "start_revision", "progress_notify"}}.
std::string WatchRequestBody(std::string_view key, std::string_view range_end,
                             int64_t start_revision, bool progress_notify);

// {"key", "value"} for /v3/kv/put, {"key"} for /v3/kv/deleterange and
// {"revision"} for /v3/kv/compaction.
std::string PutRequestBody(std::string_view key, std::string_view value);
std::string DeleteRequestBody(std::string_view key);
std::string CompactionRequestBody(int64_t revision);

// {"name", "password"} for /v3/auth/authenticate (plain strings, not base64).
std::string AuthenticateRequestBody(std::string_view name, std::string_view password);

// The answer of /v3/kv/range (HTTP 200).
absl::StatusOr<EtcdRangeResponse> ParseRangeResponse(std::string_view body);

// header.revision of any KV answer (put, deleterange, compaction).
absl::StatusOr<int64_t> ParseHeaderRevision(std::string_view body);

// The token of an /v3/auth/authenticate answer (HTTP 200), sent as the
// "Authorization" header of later requests. InvalidArgument when there is
// none, or when it holds bytes a header cannot carry (controls, spaces).
absl::StatusOr<std::string> ParseAuthenticateResponse(std::string_view body);

// One object of a watch stream. An {"error": ...} object gives the status of
// its gRPC code with the gateway's message.
absl::StatusOr<EtcdWatchResponse> ParseWatchResponse(std::string_view object_text);

// An answer with an HTTP status other than 200, as a status: the gateway's
// {"error", "message", "code"} when the body has it, else the HTTP status
// with the start of the body.
absl::Status GatewayError(long http_status, std::string_view body);

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_ETCD_GATEWAY_H_
