// Reading fields of a parsed JSON document with errors that say where: the
// object a value belongs to and the field path inside it, as the cluster file
// reports them ("etcd key /coreos.com/network/config: Backend.VNI: must be
// 0..16777215, got 16777216"). Used by the flannel value parsers
// (flannel_values.h) and the live sources under sources/.
//
// control/cluster_file.cc reads its node and etcd parts with these too, and
// the Kubernetes readers (kube_objects.h) and kubeconfig files
// (sources/kube_client.h) theirs.
//
// Errors: every reader returns absl::InvalidArgumentError("<object>: <field>:
// <what>") on a missing required field, a wrong type or a bad value; absent
// optional fields are not errors and leave the output untouched. JSON null
// counts as absent (Kubernetes prints empty lists as null).
//
// Concurrency: pure functions over values the caller owns; any thread. They
// never throw: values are read through get_ptr<>() after a type check and text
// is parsed with allow_exceptions=false.
#ifndef SLUICE_CONTROL_JSON_FIELDS_H_
#define SLUICE_CONTROL_JSON_FIELDS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "dataplane/common/types.h"  // MacAddress

// Returns the status of `expr` when it is an error.
#define SLUICE_JSON_RETURN_IF_ERROR(expr)                      \
  do {                                                         \
    absl::Status sluice_json_status_ = (expr);                 \
    if (!sluice_json_status_.ok()) return sluice_json_status_; \
  } while (0)

namespace sluice {
namespace json_fields {

using json = nlohmann::json;

// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view); public APIs speak std::string_view.
inline absl::string_view FromStd(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Where a value sits, for error messages: the object it belongs to ("node",
// "etcd key /coreos.com/network/config") and the field path inside it
// ("Backend.VNI"; empty for the object itself).
class Loc {
 public:
  explicit Loc(std::string object) : object_(std::move(object)) {}

  Loc Child(absl::string_view key) const {
    Loc child = *this;
    if (!child.field_.empty()) child.field_ += '.';
    child.field_.append(key.data(), key.size());
    return child;
  }
  // For keys holding dots, such as label names: labels["kubernetes.io/x"].
  Loc Key(absl::string_view key) const {
    Loc child = *this;
    absl::StrAppend(&child.field_, "[\"", key, "\"]");
    return child;
  }
  Loc Index(size_t i) const {
    Loc child = *this;
    absl::StrAppend(&child.field_, "[", i, "]");
    return child;
  }

  absl::Status Error(absl::string_view message) const {
    if (field_.empty()) return absl::InvalidArgumentError(absl::StrCat(object_, ": ", message));
    return absl::InvalidArgumentError(absl::StrCat(object_, ": ", field_, ": ", message));
  }

 private:
  std::string object_;
  std::string field_;
};

// A string from the input, quoted and C-escaped for a message, cut after 64
// bytes.
std::string Quote(absl::string_view s);

// What a value is, for "expected X, got Y" messages ("string \"x\"", "42",
// "object"). Never calls dump(), which throws on invalid UTF-8.
std::string Describe(const json& v);

absl::Status TypeError(const Loc& loc, absl::string_view expected, const json& got);

// Parses JSON text. On failure: "<loc>: not valid JSON: parse error at line
// 3, column 1: syntax error while parsing object - ...".
absl::StatusOr<json> ParseJson(absl::string_view text, const Loc& loc);

enum class Need { kOptional, kRequired };

// The member `key` of object `obj`; nullptr when absent or null. `obj` must be
// an object.
const json* Member(const json& obj, absl::string_view key);

// *out is nullptr when the field is absent, an error when it is required.
absl::Status Find(const json& obj, const Loc& loc, absl::string_view key, Need need,
                  const json** out);
absl::Status GetObject(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       const json** out);
absl::Status GetArray(const json& obj, const Loc& loc, absl::string_view key, Need need,
                      const json** out);

// One value (an array element, say) checked on its own.
absl::Status AsString(const json& v, const Loc& loc, std::string* out);
absl::Status AsObject(const json& v, const Loc& loc);
// An integer in [min, max]; numbers with a fraction or exponent are not
// integers here, as in the Kubernetes API.
absl::Status AsInt(const json& v, const Loc& loc, int64_t min, int64_t max, int64_t* out);
// A strict dotted quad (cluster_file.h's ParseIpv4).
absl::Status AsIpv4(const json& v, const Loc& loc, uint32_t* out);

// Fields of an object; each leaves *out untouched when the field is absent
// and sets *present when given.
absl::Status GetString(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       std::string* out, bool* present = nullptr);
absl::Status GetBool(const json& obj, const Loc& loc, absl::string_view key, bool* out,
                     bool* present = nullptr);
absl::Status GetInt(const json& obj, const Loc& loc, absl::string_view key, Need need, int64_t min,
                    int64_t max, int64_t* out, bool* present = nullptr);
absl::Status GetIpv4(const json& obj, const Loc& loc, absl::string_view key, Need need,
                     uint32_t* out);
// A MAC a station may own or be reached at: not multicast, not all zeros.
absl::Status GetStationMac(const json& obj, const Loc& loc, absl::string_view key, Need need,
                           MacAddress* out);

}  // namespace json_fields
}  // namespace sluice

#endif  // SLUICE_CONTROL_JSON_FIELDS_H_
