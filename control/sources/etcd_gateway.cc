#include "control/sources/etcd_gateway.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace sluice {
namespace {

// Values are read through get_ptr<>() after type checks and text is parsed
// with allow_exceptions=false: nothing here throws.
using json = nlohmann::json;

absl::string_view FromStd(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Base64(std::string_view s) { return absl::Base64Escape(FromStd(s)); }

absl::StatusOr<json> ParseObject(std::string_view text, absl::string_view what) {
  json doc = json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
  }
  return doc;
}

const json* Member(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

// A 64-bit integer, which the gateway writes as a decimal string; a plain
// number is taken too. Absent is 0 (proto3's default).
absl::Status GetInt64(const json& obj, const char* key, absl::string_view what, int64_t* out) {
  *out = 0;
  const json* v = Member(obj, key);
  if (v == nullptr) return absl::OkStatus();
  if (const auto* s = v->get_ptr<const json::string_t*>()) {
    if (absl::SimpleAtoi(*s, out)) return absl::OkStatus();
  } else if (const auto* u = v->get_ptr<const json::number_unsigned_t*>()) {
    if (*u <= static_cast<uint64_t>(INT64_MAX)) {
      *out = static_cast<int64_t>(*u);
      return absl::OkStatus();
    }
  } else if (const auto* i = v->get_ptr<const json::number_integer_t*>()) {
    *out = *i;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, ".", key, ": expected a 64-bit integer"));
}

absl::Status GetBool(const json& obj, const char* key, absl::string_view what, bool* out) {
  *out = false;
  const json* v = Member(obj, key);
  if (v == nullptr) return absl::OkStatus();
  const auto* b = v->get_ptr<const json::boolean_t*>();
  if (b == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(what, ".", key, ": expected a boolean"));
  *out = *b;
  return absl::OkStatus();
}

absl::Status GetBase64(const json& obj, const char* key, absl::string_view what, std::string* out) {
  out->clear();
  const json* v = Member(obj, key);
  if (v == nullptr) return absl::OkStatus();
  const auto* s = v->get_ptr<const json::string_t*>();
  if (s == nullptr || !absl::Base64Unescape(*s, out)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".", key, ": expected a base64 string"));
  }
  return absl::OkStatus();
}

absl::Status GetObject(const json& obj, const char* key, absl::string_view what, const json** out) {
  *out = Member(obj, key);
  if (*out != nullptr && !(*out)->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".", key, ": expected an object"));
  }
  return absl::OkStatus();
}

absl::Status ParseKv(const json& kv, absl::string_view what, EtcdKv* out) {
  if (!kv.is_object())
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected an object"));
  absl::Status status = GetBase64(kv, "key", what, &out->key);
  if (status.ok()) status = GetBase64(kv, "value", what, &out->value);
  if (status.ok()) status = GetInt64(kv, "mod_revision", what, &out->mod_revision);
  return status;
}

absl::Status HeaderRevision(const json& doc, absl::string_view what, int64_t* out) {
  const json* header = nullptr;
  absl::Status status = GetObject(doc, "header", what, &header);
  if (!status.ok()) return status;
  *out = 0;
  if (header == nullptr) return absl::OkStatus();
  return GetInt64(*header, "revision", absl::StrCat(what, ".header"), out);
}

// gRPC code numbers as the gateway sends them (google.rpc.Code).
absl::StatusCode FromGrpcCode(int64_t code) {
  if (code > 0 && code <= 16) return static_cast<absl::StatusCode>(code);
  return absl::StatusCode::kUnknown;
}

}  // namespace

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string RangeRequestBody(std::string_view key, std::string_view range_end, int64_t revision,
                             int64_t limit) {
  json body = {{"key", Base64(key)}, {"range_end", Base64(range_end)}};
  if (limit > 0) body["limit"] = absl::StrCat(limit);
  if (revision > 0) body["revision"] = absl::StrCat(revision);
  return body.dump();
}

std::string WatchRequestBody(std::string_view key, std::string_view range_end,
                             int64_t start_revision, bool progress_notify) {
  json create = {{"key", Base64(key)}, {"range_end", Base64(range_end)}};
  if (start_revision > 0) create["start_revision"] = absl::StrCat(start_revision);
  if (progress_notify) create["progress_notify"] = true;
  return json{{"create_request", std::move(create)}}.dump();
}

std::string PutRequestBody(std::string_view key, std::string_view value) {
  return json{{"key", Base64(key)}, {"value", Base64(value)}}.dump();
}

std::string DeleteRequestBody(std::string_view key) { return json{{"key", Base64(key)}}.dump(); }

std::string CompactionRequestBody(int64_t revision) {
  return json{{"revision", absl::StrCat(revision)}}.dump();
}

std::string AuthenticateRequestBody(std::string_view name, std::string_view password) {
  return json{{"name", name}, {"password", password}}.dump();
}

absl::StatusOr<std::string> ParseAuthenticateResponse(std::string_view body) {
  constexpr absl::string_view kWhat = "etcd authenticate answer";
  absl::StatusOr<json> doc = ParseObject(body, kWhat);
  if (!doc.ok()) return doc.status();
  const json* token = Member(*doc, "token");
  if (token == nullptr || !token->is_string() || token->get_ptr<const json::string_t*>()->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(kWhat, ": no token"));
  }
  const std::string& text = *token->get_ptr<const json::string_t*>();
  for (const char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(kWhat, ": token holds a byte a header cannot carry"));
    }
  }
  return text;
}

absl::StatusOr<EtcdRangeResponse> ParseRangeResponse(std::string_view body) {
  constexpr absl::string_view kWhat = "etcd range answer";
  absl::StatusOr<json> doc = ParseObject(body, kWhat);
  if (!doc.ok()) return doc.status();
  EtcdRangeResponse out;
  absl::Status status = HeaderRevision(*doc, kWhat, &out.revision);
  if (status.ok()) status = GetBool(*doc, "more", kWhat, &out.more);
  if (!status.ok()) return status;
  const json* kvs = Member(*doc, "kvs");
  if (kvs != nullptr && !kvs->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(kWhat, ".kvs: expected an array"));
  }
  for (size_t i = 0; kvs != nullptr && i < kvs->size(); ++i) {
    EtcdKv kv;
    status = ParseKv((*kvs)[i], absl::StrCat(kWhat, ".kvs[", i, "]"), &kv);
    if (!status.ok()) return status;
    out.kvs.push_back(std::move(kv));
  }
  return out;
}

absl::StatusOr<int64_t> ParseHeaderRevision(std::string_view body) {
  constexpr absl::string_view kWhat = "etcd answer";
  absl::StatusOr<json> doc = ParseObject(body, kWhat);
  if (!doc.ok()) return doc.status();
  int64_t revision = 0;
  absl::Status status = HeaderRevision(*doc, kWhat, &revision);
  if (!status.ok()) return status;
  return revision;
}

absl::StatusOr<EtcdWatchResponse> ParseWatchResponse(std::string_view object_text) {
  constexpr absl::string_view kWhat = "etcd watch response";
  absl::StatusOr<json> doc = ParseObject(object_text, kWhat);
  if (!doc.ok()) return doc.status();
  if (const json* error = Member(*doc, "error")) {
    // The gateway's stream error: {"error": {"grpc_code", "http_code", "message", ...}}.
    int64_t code = 0;
    std::string message = "stream error";
    if (error->is_object()) {
      (void)GetInt64(*error, "grpc_code", kWhat, &code);
      if (const json* m = Member(*error, "message"); m != nullptr && m->is_string()) {
        message = *m->get_ptr<const json::string_t*>();
      }
    }
    return absl::Status(FromGrpcCode(code), absl::StrCat("etcd watch: ", message));
  }
  const json* result = nullptr;
  absl::Status status = GetObject(*doc, "result", kWhat, &result);
  if (!status.ok()) return status;
  if (result == nullptr) return absl::InvalidArgumentError(absl::StrCat(kWhat, ": no result"));
  const std::string what = absl::StrCat(kWhat, ".result");
  EtcdWatchResponse out;
  status = HeaderRevision(*result, what, &out.revision);
  if (status.ok()) status = GetBool(*result, "created", what, &out.created);
  if (status.ok()) status = GetBool(*result, "canceled", what, &out.canceled);
  if (status.ok()) status = GetInt64(*result, "compact_revision", what, &out.compact_revision);
  if (!status.ok()) return status;
  if (const json* reason = Member(*result, "cancel_reason");
      reason != nullptr && reason->is_string()) {
    out.cancel_reason = *reason->get_ptr<const json::string_t*>();
  }
  const json* events = Member(*result, "events");
  if (events != nullptr && !events->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ".events: expected an array"));
  }
  for (size_t i = 0; events != nullptr && i < events->size(); ++i) {
    const json& e = (*events)[i];
    const std::string event_what = absl::StrCat(what, ".events[", i, "]");
    if (!e.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(event_what, ": expected an object"));
    }
    EtcdWatchEvent event;
    // mvccpb.Event.EventType: PUT = 0 (left out), DELETE = 1.
    if (const json* type = Member(e, "type")) {
      const auto* name = type->get_ptr<const json::string_t*>();
      if (name != nullptr && *name == "DELETE") {
        event.is_delete = true;
      } else if (name == nullptr || *name != "PUT") {
        return absl::InvalidArgumentError(
            absl::StrCat(event_what, ".type: expected PUT or DELETE"));
      }
    }
    const json* kv = Member(e, "kv");
    if (kv == nullptr) return absl::InvalidArgumentError(absl::StrCat(event_what, ": no kv"));
    status = ParseKv(*kv, absl::StrCat(event_what, ".kv"), &event.kv);
    if (!status.ok()) return status;
    out.events.push_back(std::move(event));
  }
  return out;
}

absl::Status GatewayError(long http_status, std::string_view body) {
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded() && doc.is_object()) {
    const json* message = Member(doc, "message");
    if (message == nullptr) message = Member(doc, "error");
    int64_t code = 0;
    if (message != nullptr && message->is_string() && GetInt64(doc, "code", "", &code).ok()) {
      return absl::Status(FromGrpcCode(code),
                          absl::StrCat("etcd: ", *message->get_ptr<const json::string_t*>(),
                                       " (HTTP ", http_status, ")"));
    }
  }
  constexpr size_t kMaxShown = 200;
  const std::string_view shown = body.substr(0, kMaxShown);
  return absl::UnavailableError(
      absl::StrCat("etcd answered HTTP ", http_status, ": ", absl::CHexEscape(FromStd(shown))));
}

}  // namespace sluice
