#include "control/kube_fields.h"

#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "control/cluster_file.h"  // ParseIpv4, ParseMac

namespace sluice::kube_fields {
namespace {

// Collects nlohmann's parse error through the SAX interface (no exceptions).
class ParseErrorRecorder {
 public:
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(json::string_t&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& ex) {
    message_ = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    if (const size_t end = message_.find("] ");
        !message_.empty() && message_[0] == '[' && end != std::string::npos) {
      message_.erase(0, end + 2);
    }
    return false;
  }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

}  // namespace

Loc Loc::Child(absl::string_view key) const {
  Loc child = *this;
  if (!child.field_.empty()) child.field_ += '.';
  child.field_.append(key.data(), key.size());
  return child;
}

Loc Loc::Key(absl::string_view key) const {
  Loc child = *this;
  absl::StrAppend(&child.field_, "[\"", key, "\"]");
  return child;
}

Loc Loc::Index(size_t i) const {
  Loc child = *this;
  absl::StrAppend(&child.field_, "[", i, "]");
  return child;
}

absl::Status Loc::Error(absl::string_view message) const {
  if (field_.empty()) return absl::InvalidArgumentError(absl::StrCat(object_, ": ", message));
  return absl::InvalidArgumentError(absl::StrCat(object_, ": ", field_, ": ", message));
}

std::string Quote(absl::string_view s) {
  constexpr size_t kMaxShown = 64;
  if (s.size() > kMaxShown) {
    return absl::StrCat("\"", absl::CHexEscape(s.substr(0, kMaxShown)), "\"...");
  }
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string Describe(const json& v) {
  if (const auto* s = v.get_ptr<const json::string_t*>()) return "string " + Quote(*s);
  if (const auto* b = v.get_ptr<const json::boolean_t*>()) return *b ? "true" : "false";
  // Unsigned first: get_ptr<number_integer_t*> also answers for unsigned values.
  if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) return absl::StrCat(*u);
  if (const auto* i = v.get_ptr<const json::number_integer_t*>()) return absl::StrCat(*i);
  if (const auto* f = v.get_ptr<const json::number_float_t*>()) return absl::StrCat(*f);
  return v.type_name();  // object, array, null
}

absl::Status TypeError(const Loc& loc, absl::string_view expected, const json& got) {
  return loc.Error(absl::StrCat("expected ", expected, ", got ", Describe(got)));
}

absl::StatusOr<json> ParseJson(absl::string_view text, const Loc& loc) {
  json doc = json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!doc.is_discarded()) return doc;
  ParseErrorRecorder recorder;
  json::sax_parse(text.begin(), text.end(), &recorder);
  if (recorder.message().empty()) return loc.Error("not valid JSON");
  return loc.Error(absl::StrCat("not valid JSON: ", recorder.message()));
}

const json* Member(const json& obj, absl::string_view key) {
  const auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status Find(const json& obj, const Loc& loc, absl::string_view key, Need need,
                  const json** out) {
  *out = Member(obj, key);
  if (*out == nullptr && need == Need::kRequired) return loc.Child(key).Error("missing");
  return absl::OkStatus();
}

absl::Status GetObject(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       const json** out) {
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, out));
  if (*out != nullptr && !(*out)->is_object()) return TypeError(loc.Child(key), "object", **out);
  return absl::OkStatus();
}

absl::Status GetArray(const json& obj, const Loc& loc, absl::string_view key, Need need,
                      const json** out) {
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, out));
  if (*out != nullptr && !(*out)->is_array()) return TypeError(loc.Child(key), "array", **out);
  return absl::OkStatus();
}

absl::Status AsString(const json& v, const Loc& loc, std::string* out) {
  const auto* s = v.get_ptr<const json::string_t*>();
  if (s == nullptr) return TypeError(loc, "string", v);
  *out = *s;
  return absl::OkStatus();
}

absl::Status AsObject(const json& v, const Loc& loc) {
  if (!v.is_object()) return TypeError(loc, "object", v);
  return absl::OkStatus();
}

absl::Status GetString(const json& obj, const Loc& loc, absl::string_view key, Need need,
                       std::string* out, bool* present) {
  const json* v = nullptr;
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return absl::OkStatus();
  return AsString(*v, loc.Child(key), out);
}

absl::Status GetBool(const json& obj, const Loc& loc, absl::string_view key, bool* out,
                     bool* present) {
  const json* v = Member(obj, key);
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return absl::OkStatus();
  const auto* b = v->get_ptr<const json::boolean_t*>();
  if (b == nullptr) return TypeError(loc.Child(key), "boolean", *v);
  *out = *b;
  return absl::OkStatus();
}

absl::Status AsInt(const json& v, const Loc& loc, int64_t min, int64_t max, int64_t* out) {
  int64_t value = 0;
  // Unsigned first: get_ptr<number_integer_t*> also answers for unsigned
  // values, reading 2^64-1 as -1.
  if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) {
    if (*u > static_cast<uint64_t>(max)) {
      return loc.Error(absl::StrCat("must be ", min, "..", max, ", got ", *u));
    }
    value = static_cast<int64_t>(*u);
  } else if (const auto* i = v.get_ptr<const json::number_integer_t*>()) {
    value = *i;
  } else {
    return TypeError(loc, "integer", v);
  }
  if (value < min || value > max) {
    return loc.Error(absl::StrCat("must be ", min, "..", max, ", got ", value));
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status GetInt(const json& obj, const Loc& loc, absl::string_view key, Need need, int64_t min,
                    int64_t max, int64_t* out, bool* present) {
  const json* v = nullptr;
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return absl::OkStatus();
  return AsInt(*v, loc.Child(key), min, max, out);
}

absl::Status AsIpv4(const json& v, const Loc& loc, uint32_t* out) {
  std::string text;
  SLUICE_RETURN_IF_ERROR(AsString(v, loc, &text));
  absl::StatusOr<uint32_t> ip = ParseIpv4(text);
  if (!ip.ok()) return loc.Error(ip.status().message());
  *out = *ip;
  return absl::OkStatus();
}

absl::Status GetIpv4(const json& obj, const Loc& loc, absl::string_view key, Need need,
                     uint32_t* out) {
  const json* v = nullptr;
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (v == nullptr) return absl::OkStatus();
  return AsIpv4(*v, loc.Child(key), out);
}

absl::Status GetStationMac(const json& obj, const Loc& loc, absl::string_view key, Need need,
                           MacAddress* out) {
  const json* v = nullptr;
  SLUICE_RETURN_IF_ERROR(Find(obj, loc, key, need, &v));
  if (v == nullptr) return absl::OkStatus();
  const Loc field = loc.Child(key);
  std::string text;
  SLUICE_RETURN_IF_ERROR(AsString(*v, field, &text));
  absl::StatusOr<MacAddress> mac = ParseMac(text);
  if (!mac.ok()) return field.Error(mac.status().message());
  const bool all_zero = *mac == MacAddress{};
  if (((*mac)[0] & 0x01) != 0 || all_zero) {
    return field.Error(absl::StrCat("must be a unicast MAC, got ", Quote(text)));
  }
  *out = *mac;
  return absl::OkStatus();
}

}  // namespace sluice::kube_fields
