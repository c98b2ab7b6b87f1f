#include "api/codec.h"

#include <array>
#include <cstring>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::api {
namespace {

// MessageType of each Message alternative, in the variant's order.
constexpr std::array<MessageType, std::variant_size_v<Message>> kTypeOfIndex = {
    MessageType::kHello,
    MessageType::kSyncBegin,
    MessageType::kSyncEnd,
    MessageType::kNodeSettings,
    MessageType::kLeaseUpsert,
    MessageType::kLeaseDelete,
    MessageType::kServicePortUpsert,
    MessageType::kServicePortDelete,
    MessageType::kEndpointSetReplace,
    MessageType::kNeighborsReplace,
    MessageType::kShow,
    MessageType::kHelloReply,
    MessageType::kOk,
    MessageType::kError,
    MessageType::kJsonReply,
};

const char* KnownTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "Hello";
    case MessageType::kSyncBegin:
      return "SyncBegin";
    case MessageType::kSyncEnd:
      return "SyncEnd";
    case MessageType::kNodeSettings:
      return "NodeSettings";
    case MessageType::kLeaseUpsert:
      return "LeaseUpsert";
    case MessageType::kLeaseDelete:
      return "LeaseDelete";
    case MessageType::kServicePortUpsert:
      return "ServicePortUpsert";
    case MessageType::kServicePortDelete:
      return "ServicePortDelete";
    case MessageType::kEndpointSetReplace:
      return "EndpointSetReplace";
    case MessageType::kNeighborsReplace:
      return "NeighborsReplace";
    case MessageType::kShow:
      return "Show";
    case MessageType::kHelloReply:
      return "HelloReply";
    case MessageType::kOk:
      return "Ok";
    case MessageType::kError:
      return "Error";
    case MessageType::kJsonReply:
      return "JsonReply";
  }
  return nullptr;
}

// Little-endian loads and stores, byte by byte: no alignment assumed, and
// the same bytes on any host.
template <class T>
T LoadLe(const char* p) {
  static_assert(std::is_unsigned_v<T>);
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= T{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}
template <class T>
void StoreLe(char* p, T v) {
  static_assert(std::is_unsigned_v<T>);
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
template <class T>
void AppendLe(std::string* out, T v) {
  char b[sizeof(T)];
  StoreLe(b, v);
  out->append(b, sizeof(T));
}

// Enumerations on the wire, with the values each may take.
bool ValidProtocol(uint8_t v) {
  return v == static_cast<uint8_t>(L4Protocol::kTcp) ||
         v == static_cast<uint8_t>(L4Protocol::kUdp) ||
         v == static_cast<uint8_t>(L4Protocol::kSctp);
}
constexpr const char kProtocolValues[] = "a protocol (6 TCP, 17 UDP, 132 SCTP)";
bool ValidTrafficPolicy(uint8_t v) { return v <= static_cast<uint8_t>(TrafficPolicy::kLocal); }
constexpr const char kTrafficPolicyValues[] = "a traffic policy (0 Cluster, 1 Local)";
bool ValidPortRole(uint8_t v) { return v < kPortRoleCount; }
constexpr const char kPortRoleValues[] = "a port (0 uplink, 1 pods, 2 host)";

// The field being read or written, kept as a small stack of names and
// indices so that a path string is only built for an error message.
class FieldPath {
 public:
  void PushName(const char* name) { parts_[Next()] = {name, -1}; }
  void PushIndex(size_t index) { parts_[Next()] = {nullptr, static_cast<int64_t>(index)}; }
  void Pop() { --depth_; }

  // The path with `leaf` appended (when not null): "port.key.protocol",
  // "endpoints[3].ip".
  std::string Format(const char* leaf) const {
    std::string s;
    for (size_t i = 0; i < depth_ && i < kMaxDepth; ++i) {
      if (parts_[i].name != nullptr) {
        if (!s.empty()) s += '.';
        s += parts_[i].name;
      } else {
        absl::StrAppend(&s, "[", parts_[i].index, "]");
      }
    }
    if (leaf != nullptr) {
      if (!s.empty()) s += '.';
      s += leaf;
    }
    return s;
  }

 private:
  static constexpr size_t kMaxDepth = 8;  // the deepest message nests 4
  struct Part {
    const char* name;
    int64_t index;
  };
  size_t Next() { return depth_ < kMaxDepth ? depth_++ : (++depth_, kMaxDepth - 1); }
  std::array<Part, kMaxDepth> parts_{};
  size_t depth_ = 0;
};

// What the reader and the writer share: the message's name, the path, the
// first error, and the checks both apply so that the writer never emits
// what the reader refuses.
class Archive {
 public:
  explicit Archive(const char* object) : object_(object) {}
  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }

  void PushName(const char* name) { path_.PushName(name); }
  void PushIndex(size_t index) { path_.PushIndex(index); }
  void Pop() { path_.Pop(); }

  template <class... Args>
  void Fail(const char* leaf, const absl::FormatSpec<Args...>& format, const Args&... args) {
    if (!status_.ok()) return;
    status_ = absl::InvalidArgumentError(
        absl::StrCat(object_, ": ", path_.Format(leaf), ": ", absl::StrFormat(format, args...)));
  }

 protected:
  bool CheckString(const char* name, absl::string_view s, uint32_t max) {
    if (s.size() > max) {
      Fail(name, "%u bytes, at most %u", s.size(), max);
      return false;
    }
    if (const void* nul = std::memchr(s.data(), '\0', s.size()); nul != nullptr) {
      Fail(name, "contains a NUL byte at offset %d", static_cast<const char*>(nul) - s.data());
      return false;
    }
    return true;
  }
  bool CheckCount(const char* name, size_t count, uint32_t max) {
    if (count > max) {
      Fail(name, "%u entries, at most %u", count, max);
      return false;
    }
    return true;
  }
  bool CheckMax(const char* name, uint64_t v, uint64_t max) {
    if (v > max) {
      Fail(name, "%u is out of range (at most %u)", v, max);
      return false;
    }
    return true;
  }
  bool CheckEnum(const char* name, uint8_t v, bool (*valid)(uint8_t), const char* values) {
    if (!valid(v)) {
      Fail(name, "%u is not %s", v, values);
      return false;
    }
    return true;
  }

 private:
  const char* object_;
  FieldPath path_;
  absl::Status status_;
};

// Appends fields to a string.
class Writer : public Archive {
 public:
  static constexpr bool kWriting = true;
  Writer(const char* object, std::string* out) : Archive(object), out_(out) {}

  template <class T>
  void Int(const char* /*name*/, const T& v) {
    if (ok()) AppendLe(out_, v);
  }
  void Bool(const char* name, const bool& v) { Int<uint8_t>(name, v ? 1 : 0); }
  void Bounded(const char* name, const uint8_t& v, uint8_t max) {
    if (CheckMax(name, v, max)) Int(name, v);
  }
  template <class E>
  void Enum(const char* name, const E& e, bool (*valid)(uint8_t), const char* values) {
    static_assert(sizeof(E) == 1);
    const auto v = static_cast<uint8_t>(e);
    if (CheckEnum(name, v, valid, values)) Int(name, v);
  }
  void Mac(const char* /*name*/, const MacAddress& mac) {
    if (ok()) out_->append(reinterpret_cast<const char*>(mac.data()), mac.size());
  }
  void String(const char* name, const std::string& s, uint32_t max) {
    if (!CheckString(name, s, max)) return;
    Int(name, static_cast<uint32_t>(s.size()));
    if (ok()) out_->append(s);
  }
  template <class T, class F>
  void Vector(const char* name, const std::vector<T>& v, uint32_t max, uint32_t /*min_bytes*/,
              F&& element) {
    if (!CheckCount(name, v.size(), max)) return;
    Int(name, static_cast<uint32_t>(v.size()));
    PushName(name);
    for (size_t i = 0; i < v.size() && ok(); ++i) {
      PushIndex(i);
      element(v[i]);
      Pop();
    }
    Pop();
  }

 private:
  std::string* out_;
};

// Reads fields from a bounded span; after the first error every read is a
// no-op that leaves its target as it was.
class Reader : public Archive {
 public:
  static constexpr bool kWriting = false;
  Reader(const char* object, absl::string_view in)
      : Archive(object), p_(in.data()), end_(in.data() + in.size()) {}

  size_t left() const { return static_cast<size_t>(end_ - p_); }

  template <class T>
  void Int(const char* name, T& v) {
    if (!Need(name, sizeof(T))) return;
    v = LoadLe<T>(p_);
    p_ += sizeof(T);
  }
  void Bool(const char* name, bool& v) {
    uint8_t b = 0;
    Int(name, b);
    if (!ok()) return;
    if (b > 1) return Fail(name, "%u is not a boolean (0 or 1)", b);
    v = b == 1;
  }
  void Bounded(const char* name, uint8_t& v, uint8_t max) {
    uint8_t b = 0;
    Int(name, b);
    if (ok() && CheckMax(name, b, max)) v = b;
  }
  template <class E>
  void Enum(const char* name, E& e, bool (*valid)(uint8_t), const char* values) {
    static_assert(sizeof(E) == 1);
    uint8_t b = 0;
    Int(name, b);
    if (ok() && CheckEnum(name, b, valid, values)) e = static_cast<E>(b);
  }
  void Mac(const char* name, MacAddress& mac) {
    if (!Need(name, mac.size())) return;
    std::memcpy(mac.data(), p_, mac.size());
    p_ += mac.size();
  }
  void String(const char* name, std::string& s, uint32_t max) {
    uint32_t n = 0;
    Int(name, n);
    if (!ok()) return;
    if (n > max) return Fail(name, "%u bytes, at most %u", n, max);
    if (!Need(name, n)) return;
    const absl::string_view bytes(p_, n);
    if (!CheckString(name, bytes, max)) return;
    s.assign(bytes.data(), bytes.size());
    p_ += n;
  }
  // `min_bytes` is the smallest encoding of one element: a count the bytes
  // left cannot hold is refused before anything is allocated.
  template <class T, class F>
  void Vector(const char* name, std::vector<T>& v, uint32_t max, uint32_t min_bytes, F&& element) {
    uint32_t n = 0;
    Int(name, n);
    if (!ok() || !CheckCount(name, n, max)) return;
    if (uint64_t{n} * min_bytes > left())
      return Fail(name, "truncated: %u entries need at least %u bytes, %u left", n,
                  uint64_t{n} * min_bytes, left());
    std::vector<T> read(n);
    PushName(name);
    for (uint32_t i = 0; i < n && ok(); ++i) {
      PushIndex(i);
      element(read[i]);
      Pop();
    }
    Pop();
    if (ok()) v = std::move(read);
  }

 private:
  bool Need(const char* name, size_t n) {
    if (!ok()) return false;
    if (left() < n) {
      Fail(name, "truncated: needs %u bytes, %u left", n, left());
      return false;
    }
    return true;
  }

  const char* p_;
  const char* end_;
};

// One description per type, shared by the writer (const objects) and the
// reader: the wire order is the order of the calls below.
template <class A, class T>
using Ref = std::conditional_t<A::kWriting, const T&, T&>;

// Scoped path component for a nested object.
template <class A>
class Nest {
 public:
  Nest(A& a, const char* name) : a_(a) { a_.PushName(name); }
  ~Nest() { a_.Pop(); }
  Nest(const Nest&) = delete;
  Nest& operator=(const Nest&) = delete;

 private:
  A& a_;
};

template <class A>
void DescribePrefix(A& a, const char* name, Ref<A, Ipv4Prefix> p) {
  Nest<A> n(a, name);
  a.Int("address", p.address);
  a.Bounded("length", p.length, 32);
}

template <class A>
void DescribeNodeSpec(A& a, Ref<A, NodeSpec> n) {
  Nest<A> nest(a, "node");
  a.String("name", n.name, kMaxNameBytes);
  a.Int("node_ip", n.node_ip);
  a.Bounded("uplink_prefix_length", n.uplink_prefix_length, 32);
  a.Int("gateway_ip", n.gateway_ip);
  a.Int("uplink_mtu", n.uplink_mtu);
  a.Mac("uplink_mac", n.uplink_mac);
  a.Mac("pods_mac", n.pods_mac);
  a.Bool("has_host_port", n.has_host_port);
  a.Mac("host_mac", n.host_mac);
  a.Mac("host_peer_mac", n.host_peer_mac);
  // node.neighbors is not on the wire: NeighborsReplace carries them.
}

template <class A>
void DescribeNetwork(A& a, Ref<A, FlannelNetworkConfig> c) {
  Nest<A> nest(a, "network");
  DescribePrefix(a, "network", c.network);
  a.Bounded("subnet_len", c.subnet_len, 32);
  a.String("backend_type", c.backend_type, kMaxNameBytes);
  a.Int("vni", c.vni);
  a.Int("port", c.port);
  a.Bool("direct_routing", c.direct_routing);
}

template <class A>
void DescribeLease(A& a, Ref<A, FlannelLease> l) {
  Nest<A> nest(a, "lease");
  DescribePrefix(a, "subnet", l.subnet);
  a.Int("public_ip", l.public_ip);
  a.String("backend_type", l.backend_type, kMaxNameBytes);
  a.Int("vni", l.vni);
  a.Mac("vtep_mac", l.vtep_mac);
}

template <class A>
void DescribeKey(A& a, Ref<A, ServicePortKey> k) {
  Nest<A> nest(a, "key");
  a.String("namespace_name", k.namespace_name, kMaxNameBytes);
  a.String("service_name", k.service_name, kMaxNameBytes);
  a.String("port_name", k.port_name, kMaxNameBytes);
  a.Enum("protocol", k.protocol, ValidProtocol, kProtocolValues);
}

template <class A>
void DescribeAddresses(A& a, const char* name, Ref<A, std::vector<uint32_t>> v) {
  a.Vector(name, v, kMaxAddressesPerList, 4, [&a](auto& ip) { a.Int(nullptr, ip); });
}

template <class A>
void DescribeServicePort(A& a, Ref<A, ServicePort> p) {
  Nest<A> nest(a, "port");
  DescribeKey(a, p.key);
  a.String("type", p.type, kMaxNameBytes);
  a.Int("port", p.port);
  a.Int("node_port", p.node_port);
  DescribeAddresses(a, "cluster_ips", p.cluster_ips);
  DescribeAddresses(a, "external_ips", p.external_ips);
  DescribeAddresses(a, "load_balancer_ips", p.load_balancer_ips);
  a.Enum("external_traffic_policy", p.external_traffic_policy, ValidTrafficPolicy,
         kTrafficPolicyValues);
  a.Enum("internal_traffic_policy", p.internal_traffic_policy, ValidTrafficPolicy,
         kTrafficPolicyValues);
  a.Int("health_check_node_port", p.health_check_node_port);
}

// ip, port, three flags, two empty strings.
constexpr uint32_t kMinEndpointBytes = 4 + 2 + 3 + 4 + 4;
template <class A>
void DescribeEndpoint(A& a, Ref<A, Endpoint> e) {
  a.Int("ip", e.ip);
  a.Int("port", e.port);
  a.Bool("ready", e.ready);
  a.Bool("serving", e.serving);
  a.Bool("terminating", e.terminating);
  a.String("node_name", e.node_name, kMaxNameBytes);
  a.String("zone", e.zone, kMaxNameBytes);
}

constexpr uint32_t kMinNeighborBytes = 1 + 4 + 6;
template <class A>
void DescribeNeighbor(A& a, Ref<A, NeighborEntry> n) {
  a.Enum("port", n.port, ValidPortRole, kPortRoleValues);
  a.Int("ip", n.ip);
  a.Mac("mac", n.mac);
}

// The payload of each message.
template <class A>
void Describe(A& a, Ref<A, Hello> m) {
  a.String("client", m.client, kMaxTextBytes);
  a.Bool("want_write", m.want_write);
}
template <class A>
void Describe(A& a, Ref<A, SyncBegin> m) {
  a.Int("epoch", m.epoch);
}
template <class A>
void Describe(A& a, Ref<A, SyncEnd> m) {
  a.Int("epoch", m.epoch);
}
template <class A>
void Describe(A& a, Ref<A, NodeSettings> m) {
  DescribeNodeSpec(a, m.node);
  DescribeNetwork(a, m.network);
  a.Int("local_port_lo", m.local_port_lo);
  a.Int("local_port_hi", m.local_port_hi);
}
template <class A>
void Describe(A& a, Ref<A, LeaseUpsert> m) {
  DescribeLease(a, m.lease);
}
template <class A>
void Describe(A& a, Ref<A, LeaseDelete> m) {
  DescribePrefix(a, "subnet", m.subnet);
}
template <class A>
void Describe(A& a, Ref<A, ServicePortUpsert> m) {
  DescribeServicePort(a, m.port);
}
template <class A>
void Describe(A& a, Ref<A, ServicePortDelete> m) {
  DescribeKey(a, m.key);
}
template <class A>
void Describe(A& a, Ref<A, EndpointSetReplace> m) {
  DescribeKey(a, m.key);
  a.Vector("endpoints", m.endpoints, kMaxEndpointsPerSet, kMinEndpointBytes,
           [&a](auto& e) { DescribeEndpoint(a, e); });
}
template <class A>
void Describe(A& a, Ref<A, NeighborsReplace> m) {
  a.Vector("neighbors", m.neighbors, kMaxNeighbors, kMinNeighborBytes,
           [&a](auto& n) { DescribeNeighbor(a, n); });
}
template <class A>
void Describe(A& a, Ref<A, Show> m) {
  a.String("what", m.what, kMaxTextBytes);
  a.Int("protocol", m.protocol);
  a.Int("address", m.address);
  a.Int("port", m.port);
  a.Int("limit", m.limit);
}
template <class A>
void Describe(A& a, Ref<A, HelloReply> m) {
  a.Int("version", m.version);
  a.Int("instance", m.instance);
  a.Int("last_epoch", m.last_epoch);
  a.Bool("writer", m.writer);
}
template <class A>
void Describe(A& a, Ref<A, Ok> m) {
  a.Int("generation", m.generation);
}
template <class A>
void Describe(A& a, Ref<A, Error> m) {
  a.String("object", m.object, kMaxTextBytes);
  a.String("field", m.field, kMaxTextBytes);
  a.String("message", m.message, kMaxTextBytes);
}
template <class A>
void Describe(A& a, Ref<A, JsonReply> m) {
  a.String("json", m.json, kMaxJsonBytes);
}

void StoreHeader(char* p, const FrameHeader& h) {
  StoreLe(p + 0, h.magic);
  StoreLe(p + 4, h.version);
  StoreLe(p + 6, static_cast<uint16_t>(h.type));
  StoreLe(p + 8, h.flags);
  StoreLe(p + 10, h.reserved);
  StoreLe(p + 12, h.payload_length);
  StoreLe(p + 16, h.request_id);
}

template <class T>
absl::StatusOr<Message> DecodeAs(MessageType type, absl::string_view payload) {
  Reader r(KnownTypeName(type), payload);
  T m;
  Describe<Reader>(r, m);
  if (r.ok() && r.left() != 0)
    r.Fail("payload", "%u trailing bytes after the last field", r.left());
  if (!r.ok()) return r.status();
  return Message(std::move(m));
}

}  // namespace

MessageType TypeOf(const Message& m) { return kTypeOfIndex[m.index()]; }

std::string MessageTypeName(MessageType type) {
  const char* name = KnownTypeName(type);
  return name != nullptr ? name : absl::StrCat("type ", static_cast<uint16_t>(type));
}

bool IsKnownMessageType(uint16_t type) {
  return KnownTypeName(static_cast<MessageType>(type)) != nullptr;
}

bool IsWriteMessage(MessageType type) {
  const auto t = static_cast<uint16_t>(type);
  return t >= static_cast<uint16_t>(MessageType::kSyncBegin) &&
         t <= static_cast<uint16_t>(MessageType::kNeighborsReplace);
}

bool IsRequestMessage(MessageType type) {
  return type == MessageType::kHello || type == MessageType::kShow || IsWriteMessage(type);
}

absl::Status EncodeFrame(const Message& m, uint64_t request_id, std::string* out) {
  const size_t start = out->size();
  const MessageType type = TypeOf(m);
  out->resize(start + kFrameHeaderBytes);
  Writer w(KnownTypeName(type), out);
  std::visit([&w](const auto& msg) { Describe<Writer>(w, msg); }, m);
  const size_t payload = out->size() - start - kFrameHeaderBytes;
  if (w.ok() && payload > kMaxPayloadBytes)
    w.Fail("payload", "%u bytes, at most %u", payload, kMaxPayloadBytes);
  if (!w.ok()) {
    out->resize(start);
    return w.status();
  }
  FrameHeader h;
  h.type = type;
  h.payload_length = static_cast<uint32_t>(payload);
  h.request_id = request_id;
  StoreHeader(out->data() + start, h);
  return absl::OkStatus();
}

absl::StatusOr<std::string> EncodeFrame(const Message& m, uint64_t request_id) {
  std::string out;
  if (absl::Status s = EncodeFrame(m, request_id, &out); !s.ok()) return s;
  return out;
}

absl::StatusOr<FrameHeader> DecodeFrameHeader(absl::string_view bytes) {
  if (bytes.size() < kFrameHeaderBytes)
    return absl::FailedPreconditionError(
        absl::StrFormat("frame: header: %u of %u bytes", bytes.size(), kFrameHeaderBytes));
  const char* p = bytes.data();
  FrameHeader h;
  h.magic = LoadLe<uint32_t>(p + 0);
  h.version = LoadLe<uint16_t>(p + 4);
  h.type = static_cast<MessageType>(LoadLe<uint16_t>(p + 6));
  h.flags = LoadLe<uint16_t>(p + 8);
  h.reserved = LoadLe<uint16_t>(p + 10);
  h.payload_length = LoadLe<uint32_t>(p + 12);
  h.request_id = LoadLe<uint64_t>(p + 16);
  if (h.magic != kMagic)
    return absl::InvalidArgumentError(
        absl::StrFormat("frame: magic: 0x%08x, expected 0x%08x (\"SLCE\")", h.magic, kMagic));
  if (h.version != kVersion)
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame: version: %u is not supported (this end speaks version %u)", h.version, kVersion));
  if (h.flags != 0)
    return absl::InvalidArgumentError(
        absl::StrFormat("frame: flags: 0x%04x, none are defined in version %u", h.flags, kVersion));
  if (h.reserved != 0)
    return absl::InvalidArgumentError(
        absl::StrFormat("frame: reserved: 0x%04x, must be 0", h.reserved));
  if (h.payload_length > kMaxPayloadBytes)
    return absl::InvalidArgumentError(absl::StrFormat("frame: payload_length: %u bytes, at most %u",
                                                      h.payload_length, kMaxPayloadBytes));
  return h;
}

absl::StatusOr<Message> DecodePayload(MessageType type, absl::string_view payload) {
  switch (type) {
    case MessageType::kHello:
      return DecodeAs<Hello>(type, payload);
    case MessageType::kSyncBegin:
      return DecodeAs<SyncBegin>(type, payload);
    case MessageType::kSyncEnd:
      return DecodeAs<SyncEnd>(type, payload);
    case MessageType::kNodeSettings:
      return DecodeAs<NodeSettings>(type, payload);
    case MessageType::kLeaseUpsert:
      return DecodeAs<LeaseUpsert>(type, payload);
    case MessageType::kLeaseDelete:
      return DecodeAs<LeaseDelete>(type, payload);
    case MessageType::kServicePortUpsert:
      return DecodeAs<ServicePortUpsert>(type, payload);
    case MessageType::kServicePortDelete:
      return DecodeAs<ServicePortDelete>(type, payload);
    case MessageType::kEndpointSetReplace:
      return DecodeAs<EndpointSetReplace>(type, payload);
    case MessageType::kNeighborsReplace:
      return DecodeAs<NeighborsReplace>(type, payload);
    case MessageType::kShow:
      return DecodeAs<Show>(type, payload);
    case MessageType::kHelloReply:
      return DecodeAs<HelloReply>(type, payload);
    case MessageType::kOk:
      return DecodeAs<Ok>(type, payload);
    case MessageType::kError:
      return DecodeAs<Error>(type, payload);
    case MessageType::kJsonReply:
      return DecodeAs<JsonReply>(type, payload);
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("frame: type: %u is not a message type", static_cast<uint16_t>(type)));
}

absl::StatusOr<Frame> DecodeFrame(absl::string_view bytes) {
  if (bytes.size() < kFrameHeaderBytes)
    return absl::InvalidArgumentError(absl::StrFormat("frame: header: truncated: %u of %u bytes",
                                                      bytes.size(), kFrameHeaderBytes));
  absl::StatusOr<FrameHeader> h = DecodeFrameHeader(bytes);
  if (!h.ok()) return h.status();
  if (!IsKnownMessageType(static_cast<uint16_t>(h->type)))
    return absl::InvalidArgumentError(
        absl::StrFormat("frame: type: %u is not a message type", static_cast<uint16_t>(h->type)));
  const size_t have = bytes.size() - kFrameHeaderBytes;
  if (have < h->payload_length)
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: payload: truncated: %u of %u bytes", KnownTypeName(h->type), have, h->payload_length));
  if (have > h->payload_length)
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: payload: %u trailing bytes after the frame", KnownTypeName(h->type),
                        have - h->payload_length));
  absl::StatusOr<Message> m = DecodePayload(h->type, bytes.substr(kFrameHeaderBytes));
  if (!m.ok()) return m.status();
  return Frame{h->request_id, *std::move(m)};
}

void FrameAssembler::Compact() {
  // Consumed bytes are dropped once they are half the buffer: each byte is
  // moved at most once on average.
  if (start_ > 0 && start_ * 2 >= buffer_.size()) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
}

void FrameAssembler::Append(absl::string_view bytes) {
  Commit(0);
  Compact();
  buffer_.append(bytes.data(), bytes.size());
}

char* FrameAssembler::Reserve(size_t n) {
  Commit(0);
  Compact();
  buffer_.resize(buffer_.size() + n);
  reserved_ = n;
  return buffer_.data() + buffer_.size() - n;
}

void FrameAssembler::Commit(size_t n) {
  if (n > reserved_) n = reserved_;
  buffer_.resize(buffer_.size() - reserved_ + n);
  reserved_ = 0;
}

FrameAssembler::Item FrameAssembler::Next() {
  Item item;
  if (!broken_.ok()) {
    item.kind = Kind::kBroken;
    item.error = broken_;
    return item;
  }
  const absl::string_view view(buffer_.data() + start_, buffer_.size() - reserved_ - start_);
  if (view.size() < kFrameHeaderBytes) {
    // A wrong magic or version is told as soon as its bytes are here (a
    // stray HTTP request is refused without waiting for 24 bytes): the rest
    // of a zero header is valid.
    char probe[kFrameHeaderBytes] = {};
    StoreLe(probe, kMagic);
    StoreLe(probe + 4, kVersion);
    std::memcpy(probe, view.data(), view.size() < 6 ? view.size() : 6);
    if (absl::StatusOr<FrameHeader> h = DecodeFrameHeader(absl::string_view(probe, sizeof(probe)));
        !h.ok()) {
      broken_ = h.status();
      item.kind = Kind::kBroken;
      item.error = broken_;
    }
    return item;
  }
  absl::StatusOr<FrameHeader> h = DecodeFrameHeader(view);
  if (!h.ok()) {
    broken_ = h.status();
    item.kind = Kind::kBroken;
    item.error = broken_;
    return item;
  }
  const size_t total = kFrameHeaderBytes + h->payload_length;
  if (view.size() < total) return item;
  start_ += total;
  item.request_id = h->request_id;
  if (!IsKnownMessageType(static_cast<uint16_t>(h->type))) {
    item.kind = Kind::kRejected;
    item.error = absl::InvalidArgumentError(
        absl::StrFormat("frame: type: %u is not a message type", static_cast<uint16_t>(h->type)));
    return item;
  }
  absl::StatusOr<Message> m =
      DecodePayload(h->type, view.substr(kFrameHeaderBytes, h->payload_length));
  if (!m.ok()) {
    item.kind = Kind::kRejected;
    item.error = m.status();
    return item;
  }
  item.kind = Kind::kFrame;
  item.frame = Frame{h->request_id, *std::move(m)};
  return item;
}

Error ErrorFromStatus(const absl::Status& status) {
  const absl::string_view text = status.message();
  const size_t first = text.find(": ");
  if (first != absl::string_view::npos) {
    const size_t second = text.find(": ", first + 2);
    if (second != absl::string_view::npos)
      return Error{std::string(text.substr(0, first)),
                   std::string(text.substr(first + 2, second - first - 2)),
                   std::string(text.substr(second + 2))};
  }
  return Error{"message", "", std::string(text)};
}

}  // namespace sluice::api
