// Cuts a byte stream of concatenated JSON objects into the text of each
// top-level object, whatever the boundaries of the pieces it arrives in:
// etcd's JSON gateway sends a watch as one chunked HTTP response holding one
// object per watch response, separated by newlines, and the pieces libcurl
// hands over may end inside an object, inside a string, or hold several.
//
// It only finds where each object ends (braces outside strings, with string
// escapes honoured); the texts are parsed by the caller. Whitespace between
// objects is skipped.
//
// Errors: Feed returns InvalidArgument for a byte outside an object that is
// neither whitespace nor '{' (the stream is not a sequence of objects), and
// ResourceExhausted when one object grows past max_object_bytes. After an
// error the splitter must be Reset() before further use.
//
// Concurrency: a plain value; one thread at a time.
#ifndef SLUICE_CONTROL_SOURCES_JSON_STREAM_H_
#define SLUICE_CONTROL_SOURCES_JSON_STREAM_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace sluice {

class JsonObjectSplitter {
 public:
  explicit JsonObjectSplitter(size_t max_object_bytes) : max_object_bytes_(max_object_bytes) {}

  // Consumes `bytes`; appends every object completed by them to *objects, in
  // stream order. Bytes of an unfinished object are kept for the next call.
  absl::Status Feed(std::string_view bytes, std::vector<std::string>* objects);

  // Drops any partial object (a new stream starts).
  void Reset();

  // Bytes held of the unfinished object.
  size_t pending_bytes() const { return current_.size(); }

 private:
  size_t max_object_bytes_;
  std::string current_;  // the unfinished object, from its '{'
  size_t depth_ = 0;     // nesting of objects and arrays; 0 between objects
  bool in_string_ = false;
  bool escaped_ = false;  // the previous byte was a backslash inside a string
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_SOURCES_JSON_STREAM_H_
