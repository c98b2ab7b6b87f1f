#include "control/sources/json_stream.h"

#include "absl/strings/str_cat.h"

namespace sluice {

absl::Status JsonObjectSplitter::Feed(std::string_view bytes, std::vector<std::string>* objects) {
  size_t start = 0;  // where the unfinished object's bytes begin in `bytes`
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (depth_ == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{') {
        return absl::InvalidArgumentError(
            absl::StrCat("expected a JSON object, got byte 0x",
                         absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2)));
      }
      start = i;
      depth_ = 1;
      continue;
    }
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if ((c == '}' || c == ']') && --depth_ == 0) {
      current_.append(bytes.data() + start, i + 1 - start);
      objects->push_back(std::move(current_));
      current_.clear();
    }
  }
  if (depth_ > 0) current_.append(bytes.data() + start, bytes.size() - start);
  if (current_.size() > max_object_bytes_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a JSON object in the stream exceeds ", max_object_bytes_, " bytes"));
  }
  return absl::OkStatus();
}

void JsonObjectSplitter::Reset() {
  current_.clear();
  depth_ = 0;
  in_string_ = false;
  escaped_ = false;
}

}  // namespace sluice
