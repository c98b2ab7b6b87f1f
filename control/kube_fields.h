// Typed reads of fields out of nlohmann::json values, with errors that name
// the object and the field ("Service default/web: spec.ports[0].port: must be
// 1..65535, got 70000"), for the readers of Kubernetes objects
// (kube_objects.h) and kubeconfig files (sources/kube_client.h).
//
// A second set of the readers in json_fields.h (which the cluster file and
// the flannel values use), written in parallel; the two are to become one.
//
// Errors: every function returns absl::OkStatus or InvalidArgument whose
// message is "<object>: <field>: <what>"; nothing throws (values are read
// through get_ptr<>, JSON is parsed with allow_exceptions=false), although
// the project builds with exceptions on.
//
// Concurrency: pure functions over the values they are given; any thread.
// Control side only.
#ifndef SLUICE_CONTROL_KUBE_FIELDS_H_
#define SLUICE_CONTROL_KUBE_FIELDS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dataplane/common/types.h"  // MacAddress

#define SLUICE_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    absl::Status sluice_status_ = (expr);            \
    if (!sluice_status_.ok()) return sluice_status_; \
  } while (0)

namespace sluice::kube_fields {

using json = nlohmann::json;

// Debian's Abseil has its own absl::string_view (not std::string_view).
inline absl::string_view FromStd(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Where a value sits: the object it belongs to ("Service default/web") and
// the field path inside it ("spec.ports[0].port"; empty for the object).
class Loc {
 public:
  explicit Loc(std::string object) : object_(std::move(object)) {}

  Loc Child(absl::string_view key) const;
  // For keys holding dots, such as label names: labels["kubernetes.io/x"].
  Loc Key(absl::string_view key) const;
  Loc Index(size_t i) const;

  absl::Status Error(absl::string_view message) const;

 private:
  std::string object_;
  std::string field_;
};

// A string quoted and escaped for a message, cut when long.
std::string Quote(absl::string_view s);
// What a value is, for "expected X, got Y" messages (never dump(), which
// throws on invalid UTF-8).
std::string Describe(const json& v);
absl::Status TypeError(const Loc& loc, absl::string_view expected, const json& got);

// Parses JSON text; on failure the error carries nlohmann's position and
// reason after "not valid JSON: ".
absl::StatusOr<json> ParseJson(absl::string_view text, const Loc& loc);

enum class Need { kOptional, kRequired };

// The member `key` of object `obj`; nullptr when absent or null (Kubernetes
// prints empty lists and unset pointers as null). `obj` must be an object.
const json* Member(const json& obj, absl::string_view key);

// *out is nullptr when the field is absent, an error when it is required.
absl::Status Find(const json& obj, const Loc& loc, absl::string_view key, Need need,
                  const json** out);
absl::Status GetObject(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       const json** out);
absl::Status GetArray(const json& obj, const Loc& loc, absl::string_view key, Need need,
                      const json** out);

absl::Status AsString(const json& v, const Loc& loc, std::string* out);
absl::Status AsObject(const json& v, const Loc& loc);
// An integer in [min, max]; numbers with a fraction or exponent are not
// integers, as in the Kubernetes API.
absl::Status AsInt(const json& v, const Loc& loc, int64_t min, int64_t max, int64_t* out);
absl::Status AsIpv4(const json& v, const Loc& loc, uint32_t* out);

// These leave *out untouched when the field is absent; *present says which.
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

}  // namespace sluice::kube_fields

#endif  // SLUICE_CONTROL_KUBE_FIELDS_H_
