// One message of every api::Message alternative with non-trivial contents
// (every field away from its default), a field-by-field dump that does not
// go through the codec, and a hand-written little-endian byte builder for
// frames the encoder would refuse to make. Shared by the api tests.
#ifndef SLUICE_TESTS_API_SAMPLE_MESSAGES_H_
#define SLUICE_TESTS_API_SAMPLE_MESSAGES_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "api/messages.h"

namespace sluice::api::testing {

inline MacAddress Mac(uint8_t last) { return MacAddress{0x02, 0x42, 0xac, 0x11, 0x00, last}; }
inline constexpr uint32_t Ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

inline ServicePortKey WebKey() {
  return ServicePortKey{"default", "web", "http", L4Protocol::kUdp};
}

inline std::vector<Message> SampleMessages() {
  std::vector<Message> m;
  m.push_back(Hello{"sluice-control 0.1.0 (pid 1234)", true});
  m.push_back(SyncBegin{0x0102030405060708});
  m.push_back(SyncEnd{77});
  NodeSettings ns;
  ns.node.name = "node-228";
  ns.node.node_ip = Ip(10, 10, 100, 228);
  ns.node.uplink_prefix_length = 23;
  ns.node.gateway_ip = Ip(10, 10, 100, 1);
  ns.node.uplink_mtu = 9000;
  ns.node.uplink_mac = Mac(1);
  ns.node.pods_mac = Mac(2);
  ns.node.has_host_port = true;
  ns.node.host_mac = Mac(3);
  ns.node.host_peer_mac = Mac(4);
  ns.network.network = Ipv4Prefix{Ip(10, 244, 0, 0), 16};
  ns.network.subnet_len = 25;
  ns.network.backend_type = "vxlan-test";
  ns.network.vni = 4097;
  ns.network.port = 4789;
  ns.network.direct_routing = true;
  ns.local_port_lo = 40000;
  ns.local_port_hi = 50000;
  m.push_back(ns);
  m.push_back(LeaseUpsert{FlannelLease{Ipv4Prefix{Ip(10, 244, 25, 0), 24}, Ip(10, 10, 100, 227),
                                       "vxlan", 7, Mac(0x27)}});
  m.push_back(LeaseDelete{Ipv4Prefix{Ip(10, 244, 26, 0), 24}});
  ServicePort sp;
  sp.key = ServicePortKey{"kube-system", "sshd", "", L4Protocol::kSctp};
  sp.type = "LoadBalancer";
  sp.port = 22;
  sp.node_port = 8014;
  sp.cluster_ips = {Ip(10, 96, 0, 22), Ip(10, 96, 0, 23)};
  sp.external_ips = {Ip(192, 0, 2, 1)};
  sp.load_balancer_ips = {Ip(198, 51, 100, 7), Ip(198, 51, 100, 8), Ip(198, 51, 100, 9)};
  sp.external_traffic_policy = TrafficPolicy::kLocal;
  sp.internal_traffic_policy = TrafficPolicy::kLocal;
  sp.health_check_node_port = 31999;
  m.push_back(ServicePortUpsert{sp});
  m.push_back(ServicePortDelete{WebKey()});
  EndpointSetReplace es;
  es.key = WebKey();
  es.endpoints.push_back(Endpoint{Ip(10, 244, 25, 149), 8080, true, true, false, "node-227", "z1"});
  es.endpoints.push_back(Endpoint{Ip(10, 244, 26, 3), 8081, false, true, true, "node-228", ""});
  es.endpoints.push_back(Endpoint{Ip(10, 244, 27, 4), 8082, false, false, true, "", "z2"});
  m.push_back(es);
  m.push_back(NeighborsReplace{{NeighborEntry{PortRole::kUplink, Ip(10, 10, 100, 1), Mac(9)},
                                NeighborEntry{PortRole::kHost, Ip(169, 254, 0, 1), Mac(10)},
                                NeighborEntry{PortRole::kPods, Ip(10, 244, 1, 5), Mac(11)}}});
  m.push_back(Show{"conntrack", 17, Ip(10, 244, 25, 149), 53, 25});
  m.push_back(HelloReply{kVersion, 0xdeadbeefcafef00d, 41, true});
  m.push_back(Ok{123456789012345});
  m.push_back(
      Error{"Service default/web:http/TCP", "endpoints[3].ip", "0.0.0.0 is not a unicast address"});
  m.push_back(JsonReply{R"({"services":[{"name":"web","endpoints":3}]})"});
  return m;
}

// Every field, in a form a test failure prints readably.
inline std::string Dump(const MacAddress& a) {
  return absl::StrJoin(a, ":", [](std::string* out, uint8_t b) { absl::StrAppend(out, b); });
}
inline std::string Dump(const Ipv4Prefix& p) { return absl::StrCat(p.address, "/", p.length); }
inline std::string Dump(const ServicePortKey& k) {
  return absl::StrCat("key{", k.namespace_name, "|", k.service_name, "|", k.port_name, "|",
                      static_cast<int>(k.protocol), "}");
}
inline std::string Dump(const Message& msg) {
  struct Visitor {
    std::string operator()(const Hello& m) {
      return absl::StrCat("Hello{", m.client, ",", m.want_write, "}");
    }
    std::string operator()(const SyncBegin& m) { return absl::StrCat("SyncBegin{", m.epoch, "}"); }
    std::string operator()(const SyncEnd& m) { return absl::StrCat("SyncEnd{", m.epoch, "}"); }
    std::string operator()(const NodeSettings& m) {
      const NodeSpec& n = m.node;
      const FlannelNetworkConfig& c = m.network;
      return absl::StrCat(
          "NodeSettings{", n.name, ",", n.node_ip, ",", n.uplink_prefix_length, ",", n.gateway_ip,
          ",", n.uplink_mtu, ",", Dump(n.uplink_mac), ",", Dump(n.pods_mac), ",", n.has_host_port,
          ",", Dump(n.host_mac), ",", Dump(n.host_peer_mac), ",neighbors=", n.neighbors.size(), ";",
          Dump(c.network), ",", c.subnet_len, ",", c.backend_type, ",", c.vni, ",", c.port, ",",
          c.direct_routing, ";", m.local_port_lo, "-", m.local_port_hi, "}");
    }
    std::string operator()(const LeaseUpsert& m) {
      const FlannelLease& l = m.lease;
      return absl::StrCat("LeaseUpsert{", Dump(l.subnet), ",", l.public_ip, ",", l.backend_type,
                          ",", l.vni, ",", Dump(l.vtep_mac), "}");
    }
    std::string operator()(const LeaseDelete& m) {
      return absl::StrCat("LeaseDelete{", Dump(m.subnet), "}");
    }
    std::string operator()(const ServicePortUpsert& m) {
      const ServicePort& p = m.port;
      return absl::StrCat(
          "ServicePortUpsert{", Dump(p.key), ",", p.type, ",", p.port, ",", p.node_port, ",[",
          absl::StrJoin(p.cluster_ips, " "), "],[", absl::StrJoin(p.external_ips, " "), "],[",
          absl::StrJoin(p.load_balancer_ips, " "), "],",
          static_cast<int>(p.external_traffic_policy), ",",
          static_cast<int>(p.internal_traffic_policy), ",", p.health_check_node_port, "}");
    }
    std::string operator()(const ServicePortDelete& m) {
      return absl::StrCat("ServicePortDelete{", Dump(m.key), "}");
    }
    std::string operator()(const EndpointSetReplace& m) {
      std::string s = absl::StrCat("EndpointSetReplace{", Dump(m.key));
      for (const Endpoint& e : m.endpoints)
        absl::StrAppend(&s, ",(", e.ip, ":", e.port, ",", e.ready, e.serving, e.terminating, ",",
                        e.node_name, ",", e.zone, ")");
      return s + "}";
    }
    std::string operator()(const NeighborsReplace& m) {
      std::string s = "NeighborsReplace{";
      for (const NeighborEntry& n : m.neighbors)
        absl::StrAppend(&s, "(", static_cast<int>(n.port), ",", n.ip, ",", Dump(n.mac), ")");
      return s + "}";
    }
    std::string operator()(const Show& m) {
      return absl::StrCat("Show{", m.what, ",", m.protocol, ",", m.address, ",", m.port, ",",
                          m.limit, "}");
    }
    std::string operator()(const HelloReply& m) {
      return absl::StrCat("HelloReply{", m.version, ",", m.instance, ",", m.last_epoch, ",",
                          m.writer, "}");
    }
    std::string operator()(const Ok& m) { return absl::StrCat("Ok{", m.generation, "}"); }
    std::string operator()(const Error& m) {
      return absl::StrCat("Error{", m.object, "|", m.field, "|", m.message, "}");
    }
    std::string operator()(const JsonReply& m) { return absl::StrCat("JsonReply{", m.json, "}"); }
  };
  return std::visit(Visitor{}, msg);
}

// Little-endian bytes written by hand, independently of the codec.
class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Le(v, 1); }
  Bytes& U16(uint16_t v) { return Le(v, 2); }
  Bytes& U32(uint32_t v) { return Le(v, 4); }
  Bytes& U64(uint64_t v) { return Le(v, 8); }
  Bytes& Str(const std::string& s) {
    U32(static_cast<uint32_t>(s.size()));
    s_ += s;
    return *this;
  }
  Bytes& Raw(const std::string& s) {
    s_ += s;
    return *this;
  }
  Bytes& Mac6(const MacAddress& m) {
    s_.append(reinterpret_cast<const char*>(m.data()), m.size());
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  Bytes& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s_ += static_cast<char>((v >> (8 * i)) & 0xff);
    return *this;
  }
  std::string s_;
};

// A version-1 frame around `payload`, by hand.
inline std::string HandFrame(uint16_t type, const std::string& payload, uint64_t request_id = 1,
                             uint32_t magic = kMagic, uint16_t version = kVersion,
                             uint16_t flags = 0, uint16_t reserved = 0) {
  return Bytes()
      .U32(magic)
      .U16(version)
      .U16(type)
      .U16(flags)
      .U16(reserved)
      .U32(static_cast<uint32_t>(payload.size()))
      .U64(request_id)
      .Raw(payload)
      .str();
}

}  // namespace sluice::api::testing

#endif  // SLUICE_TESTS_API_SAMPLE_MESSAGES_H_
