// The wire format of api::Message: one frame per message, a fixed 24-byte
// header then a payload, all little-endian (api/README.md draws the layout).
//
//   offset  size  field
//        0     4  magic          kMagic ("SLCE")
//        4     2  version        kVersion
//        6     2  type           MessageType
//        8     2  flags          0 (none defined in version 1)
//       10     2  reserved       0
//       12     4  payload_length bytes after the header
//       16     8  request_id     chosen by the client, echoed in the reply
//
// The payload is the message's fields in declaration order: integers at
// their width, bools as one byte 0/1, enums at their underlying width,
// IPv4 addresses as u32 (host order value), MACs as 6 bytes, strings and
// vectors as a u32 count then their bytes/elements. Every string and vector
// has a maximum (below); NodeSettings does not carry node.neighbors (the
// protocol ignores it: NeighborsReplace carries them).
//
// Errors. Decoding never throws, never reads outside the given bytes and
// never allocates more than the frame's own size justifies (a vector's count
// is checked against its maximum and against the bytes left before anything
// is reserved). Every error is absl::InvalidArgument with a message of three
// parts, "<object>: <field>: <what>", where <object> is "frame" for the
// header and the message type's name for the payload:
//   "frame: magic: 0x00000000, expected 0x45434c53 (\"SLCE\")"
//   "frame: version: 2 is not supported (this end speaks version 1)"
//   "ServicePortUpsert: port.cluster_ips: 70000 entries, at most 1024"
// ErrorFromStatus splits such a status into an api::Error reply.
// Encoding checks the same limits, so that nothing is sent that the peer
// would refuse: it fails with the same messages for a string or vector over
// its maximum, a string with a NUL byte, or a frame over kMaxMessageBytes.
// What the codec accepts is what can be represented; whether it makes sense
// (overlapping subnets, duplicate VIPs) is the dataplane's to decide.
//
// Concurrency: the functions are pure over caller-owned buffers and
// thread-safe; a FrameAssembler is one stream's state, used by one thread.
// No DPDK.
#ifndef SLUICE_API_CODEC_H_
#define SLUICE_API_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "api/messages.h"

namespace sluice::api {

inline constexpr size_t kFrameHeaderBytes = 24;
// The largest payload a frame may carry: kMaxMessageBytes bounds the frame.
inline constexpr uint32_t kMaxPayloadBytes = kMaxMessageBytes - kFrameHeaderBytes;

// Wire limits. Names are Kubernetes object names (DNS subdomains are at most
// 253 bytes); text is what people read (Hello.client, Error, Show.what).
inline constexpr uint32_t kMaxNameBytes = 253;
inline constexpr uint32_t kMaxTextBytes = 4096;
inline constexpr uint32_t kMaxAddressesPerList = 1024;   // cluster/external/LB IPs
inline constexpr uint32_t kMaxEndpointsPerSet = 0xffff;  // the tables' 16-bit counts
inline constexpr uint32_t kMaxNeighbors = 16384;
// JsonReply.json may fill the frame.
inline constexpr uint32_t kMaxJsonBytes = kMaxPayloadBytes - 4;

struct FrameHeader {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  MessageType type = MessageType::kOk;
  uint16_t flags = 0;
  uint16_t reserved = 0;
  uint32_t payload_length = 0;
  uint64_t request_id = 0;
};

struct Frame {
  uint64_t request_id = 0;
  Message message;
};

// The type tag of `m`'s alternative, and its name ("ServicePortUpsert";
// "type 99" for a value that is not a MessageType).
MessageType TypeOf(const Message& m);
std::string MessageTypeName(MessageType type);
// Whether `type` is one of the enumerators above.
bool IsKnownMessageType(uint16_t type);
// Messages that change the dataplane's state (SyncBegin .. NeighborsReplace):
// only a writer connection may send them.
bool IsWriteMessage(MessageType type);
// Messages a client may send (Hello, the writes, Show); the rest are replies.
bool IsRequestMessage(MessageType type);

// Appends the frame of `m` to `*out`. On error `*out` is unchanged.
// Errors: InvalidArgument as described above.
absl::Status EncodeFrame(const Message& m, uint64_t request_id, std::string* out);
absl::StatusOr<std::string> EncodeFrame(const Message& m, uint64_t request_id);

// Reads and checks the header at the start of `bytes` (which needs at least
// kFrameHeaderBytes): magic, version, flags, reserved and payload_length
// (at most kMaxPayloadBytes). The type is not checked here, so that a
// receiver can skip a frame of a type it does not know and answer it.
// Errors: InvalidArgument ("frame: ..."); FailedPrecondition when fewer than
// kFrameHeaderBytes bytes are given.
absl::StatusOr<FrameHeader> DecodeFrameHeader(absl::string_view bytes);

// Decodes exactly one whole frame: `bytes` must hold the header and exactly
// payload_length bytes after it (fewer: truncated; more: trailing bytes).
// Errors: InvalidArgument as described above, including an unknown type
// ("frame: type: 99 is not a message type").
absl::StatusOr<Frame> DecodeFrame(absl::string_view bytes);

// Decodes the payload of a message of `type` (the bytes after its header).
// Errors: InvalidArgument.
absl::StatusOr<Message> DecodePayload(MessageType type, absl::string_view payload);

// Cuts a byte stream (what a socket delivers: partial frames, several frames
// at once) into frames. A frame whose header is sound but whose type or
// payload is not is rejected alone: its length is known, the stream goes on.
// A header that is not sound (magic, version, flags, reserved, length) breaks
// the stream: nothing after it can be trusted, and every later Next() says
// kBroken again.
class FrameAssembler {
 public:
  enum class Kind {
    kNeedMore,  // no complete frame buffered yet
    kFrame,     // `frame` is the next message
    kRejected,  // the next frame was skipped: `error` says why, `request_id` is its id
    kBroken,    // `error` says why; the stream cannot continue
  };
  struct Item {
    Kind kind = Kind::kNeedMore;
    uint64_t request_id = 0;  // kFrame, kRejected; 0 for kBroken
    Frame frame;
    absl::Status error;
  };

  void Append(absl::string_view bytes);
  // Room for `n` more bytes at the end of the buffer, to read(2) into;
  // Commit(k) then keeps the first k of them (k <= n).
  char* Reserve(size_t n);
  void Commit(size_t n);

  Item Next();
  // Bytes held: a partial frame, or frames not taken yet.
  size_t buffered_bytes() const { return buffer_.size() - start_ - reserved_; }
  bool broken() const { return !broken_.ok(); }

 private:
  void Compact();

  std::string buffer_;
  size_t start_ = 0;     // first byte not yet consumed
  size_t reserved_ = 0;  // bytes at the end handed out by Reserve, not committed
  absl::Status broken_;
};

// The Error reply for a failed decode or encode: object, field and message
// taken from a "<object>: <field>: <what>" status message (a message not of
// that shape becomes Error{"message", "", status.message()}).
Error ErrorFromStatus(const absl::Status& status);

}  // namespace sluice::api

#endif  // SLUICE_API_CODEC_H_
