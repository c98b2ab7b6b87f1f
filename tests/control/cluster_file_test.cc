// Tests for control/cluster_file.h: a full, valid cluster file parsed into
// the expected model; one table of malformed files, each with the message
// that must name the object and field; and robustness sweeps (every value
// replaced by every JSON type, every truncation) that must be rejected
// cleanly, never thrown.
#include "control/cluster_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---- fixture ---------------------------------------------------------------

constexpr char kNode[] = R"({
    "name": "node-228",
    "nodeIP": "10.10.100.228",
    "uplinkPrefixLength": 24,
    "gateway": "10.10.100.1",
    "uplinkMTU": 1450,
    "ports": {
      "uplink": {"mac": "02:00:0a:0a:64:e4"},
      "pods":   {"mac": "02:00:0A:F4:19:01"},
      "host":   {"mac": "02:00:00:00:00:e4", "peerMAC": "02:00:00:00:01:e4"}
    },
    "neighbors": [
      {"port": "uplink", "ip": "10.10.100.227", "mac": "02:00:0a:0a:64:e3"},
      {"port": "host", "ip": "169.254.0.1", "mac": "02:00:00:00:01:e4"}
    ]
  })";

constexpr char kNetworkConfig[] =
    R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":0,"DirectRouting":true}})";

constexpr char kKubernetes[] = R"({
  "apiVersion": "v1",
  "kind": "List",
  "metadata": {"resourceVersion": ""},
  "items": [
    {
      "apiVersion": "v1",
      "kind": "Service",
      "metadata": {"name": "web", "namespace": "default", "uid": "5b0c0d6e"},
      "spec": {
        "type": "NodePort",
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
        "ipFamilies": ["IPv4", "IPv6"],
        "externalIPs": ["192.0.2.10"],
        "externalTrafficPolicy": "Local",
        "internalTrafficPolicy": "Cluster",
        "ports": [
          {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
          {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": "dns", "nodePort": 30053}
        ],
        "selector": {"app": "web"},
        "sessionAffinity": "None"
      },
      "status": {"loadBalancer": {}}
    },
    {
      "apiVersion": "discovery.k8s.io/v1",
      "kind": "EndpointSlice",
      "metadata": {
        "name": "web-abcde",
        "namespace": "default",
        "labels": {
          "kubernetes.io/service-name": "web",
          "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"
        }
      },
      "addressType": "IPv4",
      "endpoints": [
        {"addresses": ["10.244.1.5"], "nodeName": "node-228",
         "conditions": {"ready": true, "serving": true, "terminating": false}},
        {"addresses": ["10.244.2.7"], "nodeName": "node-227",
         "conditions": {"ready": false, "serving": true, "terminating": true}},
        {"addresses": ["10.244.3.9"], "conditions": {}}
      ],
      "ports": [
        {"name": "http", "protocol": "TCP", "port": 8080},
        {"name": "dns", "protocol": "UDP", "port": 5353},
        {"name": "any", "protocol": "TCP", "port": null}
      ]
    },
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
     "data": {"ports": "not an array"}},
    {
      "apiVersion": "v1",
      "kind": "Service",
      "metadata": {"name": "db", "namespace": "prod"},
      "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
    },
    {
      "apiVersion": "v1",
      "kind": "Service",
      "metadata": {"name": "lb", "namespace": "prod"},
      "spec": {
        "type": "LoadBalancer",
        "clusterIPs": ["10.96.0.20"],
        "externalTrafficPolicy": "Global",
        "ports": [{"name": "https", "protocol": "SCTP", "port": 443, "nodePort": 31443}]
      },
      "status": {"loadBalancer": {"ingress": [
        {"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}, {"ip": "2001:db8::7"}]}}
    },
    {
      "apiVersion": "discovery.k8s.io/v1",
      "kind": "EndpointSlice",
      "metadata": {"name": "web-v6", "namespace": "default",
                   "labels": {"kubernetes.io/service-name": "web"}},
      "addressType": "IPv6",
      "endpoints": [{"addresses": ["fd00::5"]}]
    },
    {
      "apiVersion": "discovery.k8s.io/v1",
      "kind": "EndpointSlice",
      "metadata": {"name": "db-xyz", "namespace": "prod",
                   "labels": {"kubernetes.io/service-name": "db"}},
      "addressType": "IPv4",
      "endpoints": null,
      "ports": null
    }
  ]
})";

// How one etcd key/value pair is written in the file.
enum class KvForm {
  kBase64,       // etcdctl get -w json: key and value base64
  kPlainText,    // plain key, value a JSON string holding JSON text
  kPlainObject,  // plain key, value the JSON object itself
};

struct Kv {
  std::string key;
  std::string value;
  KvForm form;
};

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string Base64(std::string_view s) {
  std::string out;
  absl::Base64Escape(absl::string_view(s.data(), s.size()), &out);
  return out;
}

std::string LeaseValue(std::string_view public_ip, std::string_view vtep_mac) {
  return absl::StrCat(R"({"PublicIP":")", absl::string_view(public_ip.data(), public_ip.size()),
                      R"(","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,)",
                      R"("VtepMAC":")", absl::string_view(vtep_mac.data(), vtep_mac.size()),
                      R"("}})");
}

constexpr char kConfigKey[] = "/coreos.com/network/config";
constexpr char kLease1Key[] = "/coreos.com/network/subnets/10.244.1.0-24";
constexpr char kLease2Key[] = "/coreos.com/network/subnets/10.244.2.0-24";
constexpr char kLease3Key[] = "/coreos.com/network/subnets/10.244.3.0-24";

// Indexes into ClusterFileText::kvs.
enum : size_t { kConfigKv = 0, kLease1Kv = 1, kLease2Kv = 2, kLease3Kv = 3 };

// A cluster file as parts, so that a test can break one part and render.
struct ClusterFileText {
  std::string node = kNode;  // "" leaves the section out
  bool has_etcd = true;
  std::vector<Kv> kvs = {
      {kConfigKey, kNetworkConfig, KvForm::kBase64},
      {kLease1Key, LeaseValue("10.10.100.228", "a2:00:00:f4:01:00"), KvForm::kBase64},
      {kLease2Key, LeaseValue("10.10.100.227", "A2:00:00:F4:02:00"), KvForm::kPlainText},
      {kLease3Key, LeaseValue("10.10.200.5", "a2:00:00:f4:03:00"), KvForm::kPlainObject},
      // Not flannel's: ignored, whatever their values hold.
      {"/coreos.com/network/other", "not json at all", KvForm::kPlainText},
      {"/registry/minions/node-228", "\x01\x02 binary", KvForm::kBase64},
  };
  std::string kubernetes = kKubernetes;  // "" leaves the section out

  std::string Render() const {
    std::vector<std::string> rendered;
    for (const Kv& kv : kvs) {
      switch (kv.form) {
        case KvForm::kBase64:
          rendered.push_back(absl::StrCat(R"({"key": ")", Base64(kv.key),
                                          R"(", "create_revision": 7, "mod_revision": 9, )",
                                          R"("version": 2, "value": ")", Base64(kv.value), "\"}"));
          break;
        case KvForm::kPlainText:
          rendered.push_back(absl::StrCat(R"({"key": )", JsonQuote(kv.key), R"(, "value": )",
                                          JsonQuote(kv.value), "}"));
          break;
        case KvForm::kPlainObject:
          rendered.push_back(
              absl::StrCat(R"({"key": )", JsonQuote(kv.key), R"(, "value": )", kv.value, "}"));
          break;
      }
    }
    std::vector<std::string> sections;
    if (!node.empty()) sections.push_back(absl::StrCat(R"("node": )", node));
    if (has_etcd) {
      sections.push_back(
          absl::StrCat(R"("etcd": {"header": {"cluster_id": 14841639068965178418, "revision": 9},)",
                       "\n  \"kvs\": [\n    ", absl::StrJoin(rendered, ",\n    "),
                       "\n  ], \"count\": ", kvs.size(), "}"));
    }
    if (!kubernetes.empty()) sections.push_back(absl::StrCat(R"("kubernetes": )", kubernetes));
    return absl::StrCat("{\n  ", absl::StrJoin(sections, ",\n  "), "\n}\n");
  }
};

// Replaces the one occurrence of `from` in `text`; a fixture edit that does
// not apply exactly once is a broken test.
void Edit(std::string& text, std::string_view from, std::string_view to) {
  const size_t at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos) {
    ADD_FAILURE() << "fixture edit: \"" << from << "\" does not occur exactly once";
    return;
  }
  text.replace(at, from.size(), to);
}

uint32_t Ip(std::string_view text) {
  absl::StatusOr<uint32_t> ip = ParseIpv4(text);
  EXPECT_TRUE(ip.ok()) << text;
  return ip.value_or(0);
}

MacAddress Mac(std::string_view text) {
  absl::StatusOr<MacAddress> mac = ParseMac(text);
  EXPECT_TRUE(mac.ok()) << text;
  return mac.value_or(MacAddress{});
}

// ---- the valid file ----------------------------------------------------------

TEST(ClusterFileTest, FullFileParsesIntoTheExpectedModel) {
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile(ClusterFileText().Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ClusterModel& m = *parsed;

  const NodeSpec& node = m.node;
  EXPECT_EQ(node.name, "node-228");
  EXPECT_EQ(node.node_ip, 0x0a0a64e4u);
  EXPECT_EQ(node.uplink_prefix_length, 24);
  EXPECT_EQ(node.gateway_ip, 0x0a0a6401u);
  EXPECT_EQ(node.uplink_mtu, 1450);
  EXPECT_EQ(node.uplink_mac, (MacAddress{0x02, 0x00, 0x0a, 0x0a, 0x64, 0xe4}));
  EXPECT_EQ(node.pods_mac, (MacAddress{0x02, 0x00, 0x0a, 0xf4, 0x19, 0x01}));
  EXPECT_TRUE(node.has_host_port);
  EXPECT_EQ(node.host_mac, Mac("02:00:00:00:00:e4"));
  EXPECT_EQ(node.host_peer_mac, Mac("02:00:00:00:01:e4"));
  ASSERT_EQ(node.neighbors.size(), 2u);
  EXPECT_EQ(node.neighbors[0].port, PortRole::kUplink);
  EXPECT_EQ(node.neighbors[0].ip, Ip("10.10.100.227"));
  EXPECT_EQ(node.neighbors[0].mac, Mac("02:00:0a:0a:64:e3"));
  EXPECT_EQ(node.neighbors[1].port, PortRole::kHost);
  EXPECT_EQ(node.neighbors[1].ip, Ip("169.254.0.1"));

  EXPECT_EQ(m.network.network.address, Ip("10.244.0.0"));
  EXPECT_EQ(m.network.network.length, 16);
  EXPECT_EQ(m.network.subnet_len, 24);
  EXPECT_EQ(m.network.backend_type, "vxlan");
  EXPECT_EQ(m.network.vni, 1u);
  EXPECT_EQ(m.network.port, 8472);  // "Port": 0 means the kernel default
  EXPECT_TRUE(m.network.direct_routing);

  ASSERT_EQ(m.leases.size(), 3u);  // the two foreign keys are ignored
  const struct {
    const char* subnet;
    const char* public_ip;
    const char* vtep_mac;
  } kLeases[] = {{"10.244.1.0", "10.10.100.228", "a2:00:00:f4:01:00"},
                 {"10.244.2.0", "10.10.100.227", "a2:00:00:f4:02:00"},
                 {"10.244.3.0", "10.10.200.5", "a2:00:00:f4:03:00"}};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(kLeases[i].subnet);
    EXPECT_EQ(m.leases[i].subnet.address, Ip(kLeases[i].subnet));
    EXPECT_EQ(m.leases[i].subnet.length, 24);
    EXPECT_EQ(m.leases[i].public_ip, Ip(kLeases[i].public_ip));
    EXPECT_EQ(m.leases[i].backend_type, "vxlan");
    EXPECT_EQ(m.leases[i].vni, 1u);
    EXPECT_EQ(m.leases[i].vtep_mac, Mac(kLeases[i].vtep_mac));
  }
  ASSERT_NE(m.LocalLease(), nullptr);
  EXPECT_EQ(m.LocalLease()->subnet.address, Ip("10.244.1.0"));

  ASSERT_EQ(m.services.size(), 3u);  // the ConfigMap is ignored
  const ServiceSpec& web = m.services[0];
  EXPECT_EQ(web.namespace_name, "default");
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.type, "NodePort");
  EXPECT_EQ(web.cluster_ips, std::vector<uint32_t>{Ip("10.96.0.10")});  // IPv6 skipped
  EXPECT_EQ(web.external_ips, std::vector<uint32_t>{Ip("192.0.2.10")});
  EXPECT_TRUE(web.load_balancer_ips.empty());
  EXPECT_EQ(web.external_traffic_policy, TrafficPolicy::kLocal);
  EXPECT_EQ(web.internal_traffic_policy, TrafficPolicy::kCluster);
  ASSERT_EQ(web.ports.size(), 2u);
  EXPECT_EQ(web.ports[0].name, "http");
  EXPECT_EQ(web.ports[0].protocol, L4Protocol::kTcp);
  EXPECT_EQ(web.ports[0].port, 80);
  EXPECT_EQ(web.ports[0].node_port, 30080);
  EXPECT_EQ(web.ports[1].name, "dns");
  EXPECT_EQ(web.ports[1].protocol, L4Protocol::kUdp);
  EXPECT_EQ(web.ports[1].port, 53);
  EXPECT_EQ(web.ports[1].node_port, 30053);

  const ServiceSpec& db = m.services[1];
  EXPECT_EQ(db.namespace_name, "prod");
  EXPECT_EQ(db.name, "db");
  EXPECT_EQ(db.type, "ClusterIP");      // default
  EXPECT_TRUE(db.cluster_ips.empty());  // headless
  ASSERT_EQ(db.ports.size(), 1u);
  EXPECT_EQ(db.ports[0].name, "");
  EXPECT_EQ(db.ports[0].protocol, L4Protocol::kTcp);  // default
  EXPECT_EQ(db.ports[0].port, 5432);
  EXPECT_EQ(db.ports[0].node_port, 0);
  EXPECT_EQ(db.external_traffic_policy, TrafficPolicy::kCluster);

  const ServiceSpec& lb = m.services[2];
  EXPECT_EQ(lb.type, "LoadBalancer");
  EXPECT_EQ(lb.cluster_ips, std::vector<uint32_t>{Ip("10.96.0.20")});
  EXPECT_EQ(lb.load_balancer_ips, std::vector<uint32_t>{Ip("203.0.113.7")});
  EXPECT_EQ(lb.external_traffic_policy, TrafficPolicy::kCluster);  // legacy "Global"
  ASSERT_EQ(lb.ports.size(), 1u);
  EXPECT_EQ(lb.ports[0].protocol, L4Protocol::kSctp);
  EXPECT_EQ(lb.ports[0].node_port, 31443);

  ASSERT_EQ(m.endpoint_slices.size(), 2u);  // the IPv6 slice is skipped
  const EndpointSliceSpec& slice = m.endpoint_slices[0];
  EXPECT_EQ(slice.namespace_name, "default");
  EXPECT_EQ(slice.name, "web-abcde");
  EXPECT_EQ(slice.service_name, "web");
  ASSERT_EQ(slice.endpoints.size(), 3u);
  EXPECT_EQ(slice.endpoints[0].ip, Ip("10.244.1.5"));
  EXPECT_TRUE(slice.endpoints[0].ready);
  EXPECT_TRUE(slice.endpoints[0].serving);
  EXPECT_FALSE(slice.endpoints[0].terminating);
  EXPECT_EQ(slice.endpoints[0].node_name, "node-228");
  EXPECT_EQ(slice.endpoints[1].ip, Ip("10.244.2.7"));
  EXPECT_FALSE(slice.endpoints[1].ready);
  EXPECT_TRUE(slice.endpoints[1].serving);
  EXPECT_TRUE(slice.endpoints[1].terminating);
  EXPECT_EQ(slice.endpoints[1].node_name, "node-227");
  EXPECT_EQ(slice.endpoints[2].ip, Ip("10.244.3.9"));
  EXPECT_TRUE(slice.endpoints[2].ready);  // absent conditions
  EXPECT_TRUE(slice.endpoints[2].serving);
  EXPECT_FALSE(slice.endpoints[2].terminating);
  EXPECT_EQ(slice.endpoints[2].node_name, "");
  ASSERT_EQ(slice.ports.size(), 2u);  // the port without a number is skipped
  EXPECT_EQ(slice.ports[0].name, "http");
  EXPECT_EQ(slice.ports[0].protocol, L4Protocol::kTcp);
  EXPECT_EQ(slice.ports[0].port, 8080);
  EXPECT_EQ(slice.ports[1].name, "dns");
  EXPECT_EQ(slice.ports[1].protocol, L4Protocol::kUdp);
  EXPECT_EQ(slice.ports[1].port, 5353);

  const EndpointSliceSpec& empty = m.endpoint_slices[1];
  EXPECT_EQ(empty.name, "db-xyz");
  EXPECT_EQ(empty.service_name, "db");
  EXPECT_TRUE(empty.endpoints.empty());  // "endpoints": null
  EXPECT_TRUE(empty.ports.empty());      // "ports": null
}

void ExpectSameFlannelState(const ClusterModel& a, const ClusterModel& b) {
  EXPECT_EQ(a.network.network.address, b.network.network.address);
  EXPECT_EQ(a.network.network.length, b.network.network.length);
  EXPECT_EQ(a.network.subnet_len, b.network.subnet_len);
  EXPECT_EQ(a.network.vni, b.network.vni);
  EXPECT_EQ(a.network.port, b.network.port);
  EXPECT_EQ(a.network.direct_routing, b.network.direct_routing);
  ASSERT_EQ(a.leases.size(), b.leases.size());
  for (size_t i = 0; i < a.leases.size(); ++i) {
    EXPECT_EQ(a.leases[i].subnet.address, b.leases[i].subnet.address);
    EXPECT_EQ(a.leases[i].subnet.length, b.leases[i].subnet.length);
    EXPECT_EQ(a.leases[i].public_ip, b.leases[i].public_ip);
    EXPECT_EQ(a.leases[i].vni, b.leases[i].vni);
    EXPECT_EQ(a.leases[i].vtep_mac, b.leases[i].vtep_mac);
  }
}

TEST(ClusterFileTest, EtcdBase64AndPlainFormsGiveTheSameModel) {
  absl::StatusOr<ClusterModel> mixed = ParseClusterFile(ClusterFileText().Render());
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  for (const KvForm form : {KvForm::kBase64, KvForm::kPlainText, KvForm::kPlainObject}) {
    SCOPED_TRACE(static_cast<int>(form));
    ClusterFileText file;
    file.kvs.resize(4);  // drop the foreign keys, whose values are not JSON
    for (Kv& kv : file.kvs) kv.form = form;
    absl::StatusOr<ClusterModel> uniform = ParseClusterFile(file.Render());
    ASSERT_TRUE(uniform.ok()) << uniform.status();
    ExpectSameFlannelState(*mixed, *uniform);
  }
}

TEST(ClusterFileTest, OptionalFieldsTakeTheirDefaults) {
  ClusterFileText file;
  file.node = R"({"name": "n1", "nodeIP": "192.168.1.11",
      "ports": {"uplink": {"mac": "02:00:00:00:00:01"}, "pods": {"mac": "02:00:00:00:00:02"}}})";
  file.kvs = {
      {kConfigKey, R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":7}})",
       KvForm::kPlainText},
      {kLease1Key, R"({"PublicIP":"192.168.1.11","BackendType":"vxlan",
                       "BackendData":{"VtepMAC":"02:00:00:00:00:03"}})",
       KvForm::kPlainObject},
  };
  file.kubernetes = R"({"kind": "List", "items": []})";
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->node.uplink_prefix_length, 24);
  EXPECT_EQ(m->node.gateway_ip, 0u);
  EXPECT_EQ(m->node.uplink_mtu, 1500);
  EXPECT_FALSE(m->node.has_host_port);
  EXPECT_TRUE(m->node.neighbors.empty());
  EXPECT_EQ(m->network.subnet_len, 24);
  EXPECT_EQ(m->network.vni, 7u);
  EXPECT_EQ(m->network.port, 8472);
  EXPECT_FALSE(m->network.direct_routing);
  ASSERT_EQ(m->leases.size(), 1u);
  EXPECT_EQ(m->leases[0].vni, 7u);  // a lease without VNI takes the network's
  EXPECT_TRUE(m->services.empty());
  EXPECT_TRUE(m->endpoint_slices.empty());
}

TEST(ClusterFileTest, SubnetLenFollowsFlannelForSmallNetworksAndExplicitPort) {
  ClusterFileText file;
  // A /26 network: flannel gives each host a /28 when SubnetLen is absent.
  file.kvs = {
      {kConfigKey, R"({"Network":"10.244.0.0/26","Backend":{"Type":"vxlan","Port":4789}})",
       KvForm::kPlainText},
      {"/coreos.com/network/subnets/10.244.0.16-28",
       LeaseValue("10.10.100.228", "02:00:00:00:00:03"), KvForm::kPlainText},
  };
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->network.subnet_len, 28);
  EXPECT_EQ(m->network.port, 4789);
  ASSERT_EQ(m->leases.size(), 1u);
  EXPECT_EQ(m->leases[0].subnet.address, Ip("10.244.0.16"));
  EXPECT_EQ(m->leases[0].subnet.length, 28);
}

TEST(ClusterFileTest, AnEndpointSliceWithoutTheServiceNameLabelIsSkipped) {
  ClusterFileText file;
  Edit(file.kubernetes, R"("kubernetes.io/service-name": "web",)", "");
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  for (const EndpointSliceSpec& s : m->endpoint_slices) EXPECT_NE(s.name, "web-abcde");
  absl::StatusOr<ClusterModel> full = ParseClusterFile(ClusterFileText().Render());
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(m->endpoint_slices.size() + 1, full->endpoint_slices.size());
}

TEST(ClusterFileTest, NetworkHostBitsAreDroppedAsFlannelDoes) {
  ClusterFileText file;
  Edit(file.kvs[kConfigKv].value, "10.244.0.0/16", "10.244.9.9/16");
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->network.network.address, Ip("10.244.0.0"));
}

TEST(ClusterFileTest, ClusterIpIsUsedWhenClusterIpsIsAbsent) {
  ClusterFileText file;
  Edit(file.kubernetes, R"("clusterIPs": ["10.96.0.10", "fd00:10:96::a"],)", "");
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->services[0].cluster_ips, std::vector<uint32_t>{Ip("10.96.0.10")});
}

TEST(ClusterFileTest, ServingDefaultsToReady) {
  ClusterFileText file;
  Edit(file.kubernetes, R"("conditions": {"ready": false, "serving": true, "terminating": true})",
       R"("conditions": {"ready": false})");
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  const EndpointSpec& e = m->endpoint_slices[0].endpoints[1];
  EXPECT_FALSE(e.ready);
  EXPECT_FALSE(e.serving);
  EXPECT_FALSE(e.terminating);
}

TEST(ClusterFileTest, EndpointWithSeveralAddressesGivesOneEndpointEach) {
  ClusterFileText file;
  Edit(file.kubernetes, R"(["10.244.1.5"])", R"(["10.244.1.5", "10.244.1.6"])");
  absl::StatusOr<ClusterModel> m = ParseClusterFile(file.Render());
  ASSERT_TRUE(m.ok()) << m.status();
  const auto& endpoints = m->endpoint_slices[0].endpoints;
  ASSERT_EQ(endpoints.size(), 4u);
  EXPECT_EQ(endpoints[0].ip, Ip("10.244.1.5"));
  EXPECT_EQ(endpoints[1].ip, Ip("10.244.1.6"));
  EXPECT_EQ(endpoints[1].node_name, "node-228");
}

// ---- malformed files ---------------------------------------------------------

struct ErrorCase {
  const char* name;  // the test's name
  std::function<void(ClusterFileText&)> mutate;
  const char* message;  // must occur in the error message
};

std::vector<ErrorCase> ErrorCases() {
  using F = ClusterFileText&;
  return {
      // Whole document.
      {"MissingNode", [](F f) { f.node.clear(); }, "node: missing"},
      {"MissingEtcd", [](F f) { f.has_etcd = false; }, "etcd: missing"},
      {"MissingKubernetes", [](F f) { f.kubernetes.clear(); }, "kubernetes: missing"},
      {"NodeIsNotAnObject", [](F f) { f.node = R"(["node-228"])"; },
       "node: expected object, got array"},

      // node
      {"MissingNodeName", [](F f) { Edit(f.node, R"("name": "node-228",)", ""); },
       "node: name: missing"},
      {"MissingNodeIp", [](F f) { Edit(f.node, R"("nodeIP": "10.10.100.228",)", ""); },
       "node: nodeIP: missing"},
      {"BadNodeIp", [](F f) { Edit(f.node, R"("10.10.100.228")", R"("10.10.100.300")"); },
       R"(node: nodeIP: malformed IPv4 address "10.10.100.300")"},
      {"NodeIpWithLeadingZero",
       [](F f) { Edit(f.node, R"("10.10.100.228")", R"("10.10.100.028")"); },
       R"(node: nodeIP: malformed IPv4 address "10.10.100.028")"},
      {"NodeIpIsANumber", [](F f) { Edit(f.node, R"("10.10.100.228")", "168453348"); },
       "node: nodeIP: expected string, got 168453348"},
      {"BadGateway", [](F f) { Edit(f.node, R"("10.10.100.1")", R"("10.10.100")"); },
       R"(node: gateway: malformed IPv4 address "10.10.100")"},
      {"GatewayIsTheNodeItself",
       [](F f) { Edit(f.node, R"("10.10.100.1")", R"("10.10.100.228")"); },
       "node: gateway: must differ from nodeIP"},
      {"UplinkPrefixLengthOutOfRange",
       [](F f) { Edit(f.node, R"("uplinkPrefixLength": 24)", R"("uplinkPrefixLength": 33)"); },
       "node: uplinkPrefixLength: must be 0..32, got 33"},
      {"UplinkMtuTooSmall", [](F f) { Edit(f.node, "1450", "100"); },
       "node: uplinkMTU: must be 576..9216, got 100"},
      {"UplinkMtuIsAString", [](F f) { Edit(f.node, "1450", R"("1450")"); },
       R"(node: uplinkMTU: expected integer, got string "1450")"},
      {"MissingPorts", [](F f) { Edit(f.node, R"("ports": {)", R"("portz": {)"); },
       "node: ports: missing"},
      {"MissingUplinkMac", [](F f) { Edit(f.node, R"({"mac": "02:00:0a:0a:64:e4"})", "{}"); },
       "node: ports.uplink.mac: missing"},
      {"MissingPodsPort",
       [](F f) { Edit(f.node, R"("pods":   {"mac": "02:00:0A:F4:19:01"},)", ""); },
       "node: ports.pods: missing"},
      {"BadPodsMac", [](F f) { Edit(f.node, "02:00:0A:F4:19:01", "02:00:0a:f4:19"); },
       R"(node: ports.pods.mac: malformed MAC "02:00:0a:f4:19")"},
      {"MulticastUplinkMac", [](F f) { Edit(f.node, "02:00:0a:0a:64:e4", "01:00:5e:00:00:01"); },
       R"(node: ports.uplink.mac: must be a unicast MAC, got "01:00:5e:00:00:01")"},
      {"AllZeroPodsMac", [](F f) { Edit(f.node, "02:00:0A:F4:19:01", "00:00:00:00:00:00"); },
       "node: ports.pods.mac: must be a unicast MAC"},
      {"MisspeltPortName", [](F f) { Edit(f.node, R"("host":   {)", R"("hots":   {)"); },
       "node: ports.hots: unknown port; expected uplink, pods or host"},
      {"HostPortWithoutPeerMac",
       [](F f) { Edit(f.node, R"(, "peerMAC": "02:00:00:00:01:e4")", ""); },
       "node: ports.host.peerMAC: missing"},
      {"NeighborsIsAString",
       [](F f) { Edit(f.node, R"("neighbors": [)", R"("neighbors": "10.10.100.227", "old": [)"); },
       R"(node: neighbors: expected array, got string "10.10.100.227")"},
      {"NeighborOnUnknownPort",
       [](F f) { Edit(f.node, R"("port": "uplink")", R"("port": "wan")"); },
       R"(node: neighbors[0].port: expected "uplink", "pods" or "host", got "wan")"},
      {"NeighborWithoutMac",
       [](F f) {
         Edit(f.node, R"("ip": "169.254.0.1", "mac": "02:00:00:00:01:e4")",
              R"("ip": "169.254.0.1")");
       },
       "node: neighbors[1].mac: missing"},
      {"NeighborListedTwice",
       [](F f) {
         Edit(f.node, R"("port": "host", "ip": "169.254.0.1")",
              R"("port": "uplink", "ip": "10.10.100.227")");
       },
       "node: neighbors[1]: duplicates neighbors[0] (uplink 10.10.100.227)"},
      {"NeighborOnAbsentHostPort",
       [](F f) {
         Edit(f.node, R"(,
      "host":   {"mac": "02:00:00:00:00:e4", "peerMAC": "02:00:00:00:01:e4"})",
              "");
       },
       R"(node: neighbors[1].port: "host", but node.ports.host is absent)"},

      // etcd structure
      {"KvsIsAnObject",
       [](F f) {
         f.has_etcd = false;
         f.node += R"(, "etcd": {"kvs": {"key": "/coreos.com/network/config"}})";
       },
       "etcd: kvs: expected array, got object"},
      {"KeyIsNeitherPlainNorBase64",
       [](F f) { f.kvs[kLease3Kv].key = "coreos.com/network/subnets/10.244.3.0-24"; },
       R"(etcd: kvs[3].key: neither a plain key starting with "/" nor base64)"},
      {"KeyIsANumber",
       [](F f) {
         f.kvs.resize(1);
         f.node += R"(, "etcd": {"kvs": [{"key": 42, "value": "x"}]})";
         f.has_etcd = false;
       },
       "etcd: kvs[0].key: expected string, got 42"},
      {"NoKvs", [](F f) { f.kvs.clear(); }, "etcd key /coreos.com/network/config: missing"},
      {"ConfigListedTwice", [](F f) { f.kvs.push_back(f.kvs[kConfigKv]); },
       "etcd key /coreos.com/network/config: listed twice (etcd.kvs[0] and etcd.kvs[6])"},

      // network config
      {"ConfigValueIsNotJson",
       [](F f) {
         f.kvs[kConfigKv].value = R"({"Network":"10.244.0.0/16")";
         f.kvs[kConfigKv].form = KvForm::kPlainText;
       },
       "etcd key /coreos.com/network/config: value: not valid JSON: parse error at line 1"},
      {"ConfigValueIsNotBase64",
       [](F f) {
         f.kvs[kConfigKv].form = KvForm::kPlainText;
         f.kvs[kConfigKv].key = Base64(kConfigKey);  // base64 key, plain value
       },
       "etcd key /coreos.com/network/config: value: malformed base64"},
      {"ConfigValueIsAnArray",
       [](F f) {
         f.kvs[kConfigKv].value = R"(["10.244.0.0/16"])";
         f.kvs[kConfigKv].form = KvForm::kPlainObject;
       },
       "etcd key /coreos.com/network/config: value: expected string or object, got array"},
      {"MissingNetwork",
       [](F f) { Edit(f.kvs[kConfigKv].value, R"("Network":"10.244.0.0/16",)", ""); },
       "etcd key /coreos.com/network/config: Network: missing"},
      {"MalformedNetwork", [](F f) { Edit(f.kvs[kConfigKv].value, "/16", "/33"); },
       R"(etcd key /coreos.com/network/config: Network: malformed IPv4 prefix "10.244.0.0/33")"},
      {"NetworkTooSmall", [](F f) { Edit(f.kvs[kConfigKv].value, "/16", "/29"); },
       "etcd key /coreos.com/network/config: Network: too small"},
      {"SubnetLenTooShort",
       [](F f) { Edit(f.kvs[kConfigKv].value, R"("Backend")", R"("SubnetLen":17,"Backend")"); },
       "etcd key /coreos.com/network/config: SubnetLen: must be at least Network's length + 2 "
       "(18), got 17"},
      {"NonVxlanBackend", [](F f) { Edit(f.kvs[kConfigKv].value, R"("vxlan")", R"("host-gw")"); },
       R"(etcd key /coreos.com/network/config: Backend.Type: only vxlan is supported, got "host-gw")"},
      {"AbsentBackendMeansUdp",
       [](F f) { f.kvs[kConfigKv].value = R"({"Network":"10.244.0.0/16"})"; },
       "etcd key /coreos.com/network/config: Backend: missing; flannel then uses the udp "
       "backend, only vxlan is supported"},
      {"BackendWithoutType", [](F f) { Edit(f.kvs[kConfigKv].value, R"("Type":"vxlan",)", ""); },
       "etcd key /coreos.com/network/config: Backend.Type: missing; flannel's default is udp"},
      {"VniOutOfRange",
       [](F f) { Edit(f.kvs[kConfigKv].value, R"("VNI":1)", R"("VNI":16777216)"); },
       "etcd key /coreos.com/network/config: Backend.VNI: must be 0..16777215, got 16777216"},
      {"VniBeyondInt64",
       [](F f) { Edit(f.kvs[kConfigKv].value, R"("VNI":1)", R"("VNI":18446744073709551615)"); },
       "etcd key /coreos.com/network/config: Backend.VNI: must be 0..16777215, got "
       "18446744073709551615"},
      {"PortOutOfRange", [](F f) { Edit(f.kvs[kConfigKv].value, R"("Port":0)", R"("Port":-1)"); },
       "etcd key /coreos.com/network/config: Backend.Port: must be 0..65535, got -1"},
      {"DirectRoutingIsAString", [](F f) { Edit(f.kvs[kConfigKv].value, "true", R"("yes")"); },
       R"(Backend.DirectRouting: expected boolean, got string "yes")"},

      // leases
      {"LeaseOutsideNetwork",
       [](F f) { f.kvs[kLease2Kv].key = "/coreos.com/network/subnets/10.245.2.0-24"; },
       "etcd key /coreos.com/network/subnets/10.245.2.0-24: lease subnet 10.245.2.0/24 is "
       "outside Network 10.244.0.0/16"},
      {"LeaseWiderThanNetwork",
       [](F f) { f.kvs[kLease2Kv].key = "/coreos.com/network/subnets/10.0.0.0-8"; },
       "lease subnet 10.0.0.0/8 is outside Network 10.244.0.0/16"},
      {"LeaseWithHostBits",
       [](F f) { f.kvs[kLease2Kv].key = "/coreos.com/network/subnets/10.244.2.1-24"; },
       "etcd key /coreos.com/network/subnets/10.244.2.1-24: lease subnet 10.244.2.1/24 has host "
       "bits set"},
      {"MalformedLeaseKey",
       [](F f) { f.kvs[kLease2Kv].key = "/coreos.com/network/subnets/10.244.2.0_24"; },
       "etcd key /coreos.com/network/subnets/10.244.2.0_24: malformed lease key, expected "
       "/coreos.com/network/subnets/<a.b.c.d>-<prefix length>"},
      {"DuplicatedLease",
       [](F f) {
         f.kvs.push_back(f.kvs[kLease2Kv]);
         f.kvs.back().form = KvForm::kBase64;
       },
       "etcd key /coreos.com/network/subnets/10.244.2.0-24: duplicates the lease at "
       "/coreos.com/network/subnets/10.244.2.0-24 (etcd.kvs[2])"},
      {"OverlappingLease",
       [](F f) {
         f.kvs.push_back({"/coreos.com/network/subnets/10.244.0.0-22",
                          LeaseValue("10.10.100.9", "02:00:00:00:00:09"), KvForm::kPlainText});
       },
       "etcd key /coreos.com/network/subnets/10.244.0.0-22: overlaps the lease at "
       "/coreos.com/network/subnets/10.244.1.0-24 (etcd.kvs[1])"},
      {"LeaseWithoutPublicIp",
       [](F f) { Edit(f.kvs[kLease2Kv].value, R"("PublicIP":"10.10.100.227",)", ""); },
       "etcd key /coreos.com/network/subnets/10.244.2.0-24: PublicIP: missing"},
      {"LeaseWithBadPublicIp",
       [](F f) { Edit(f.kvs[kLease3Kv].value, "10.10.200.5", "10.10.200.5.1"); },
       R"(etcd key /coreos.com/network/subnets/10.244.3.0-24: PublicIP: malformed IPv4 address "10.10.200.5.1")"},
      {"LeaseWithUdpBackend", [](F f) { Edit(f.kvs[kLease2Kv].value, R"("vxlan")", R"("udp")"); },
       R"(etcd key /coreos.com/network/subnets/10.244.2.0-24: BackendType: only vxlan is supported, got "udp")"},
      {"LeaseWithoutBackendData",
       [](F f) {
         f.kvs[kLease2Kv].value = R"({"PublicIP":"10.10.100.227","BackendType":"vxlan"})";
       },
       "etcd key /coreos.com/network/subnets/10.244.2.0-24: BackendData: missing"},
      {"LeaseWithoutVtepMac",
       [](F f) { Edit(f.kvs[kLease2Kv].value, R"(,"VtepMAC":"A2:00:00:F4:02:00")", ""); },
       "etcd key /coreos.com/network/subnets/10.244.2.0-24: BackendData.VtepMAC: missing"},
      {"LeaseWithMalformedVtepMac",  // base64 form: the message names the decoded key
       [](F f) { Edit(f.kvs[kLease1Kv].value, "a2:00:00:f4:01:00", "zz"); },
       R"(etcd key /coreos.com/network/subnets/10.244.1.0-24: BackendData.VtepMAC: malformed MAC "zz")"},
      {"LeaseValueIsTruncatedJson", [](F f) { f.kvs[kLease2Kv].value.pop_back(); },
       "etcd key /coreos.com/network/subnets/10.244.2.0-24: value: not valid JSON"},
      {"NoLocalLease", [](F f) { Edit(f.kvs[kLease1Kv].value, "10.10.100.228", "10.10.100.229"); },
       "node: nodeIP: 10.10.100.228 is the PublicIP of no flannel lease"},
      {"TwoLocalLeases",
       [](F f) { Edit(f.kvs[kLease2Kv].value, "10.10.100.227", "10.10.100.228"); },
       "node: nodeIP: 10.10.100.228 is the PublicIP of 2 flannel leases (10.244.1.0/24, "
       "10.244.2.0/24); expected exactly one"},

      // kubernetes list
      {"KubernetesIsNotAList",
       [](F f) { Edit(f.kubernetes, R"("kind": "List")", R"("kind": "ServiceList")"); },
       R"(kubernetes: kind: expected "List", got "ServiceList")"},
      {"ItemsIsAString", [](F f) { f.kubernetes = R"({"kind": "List", "items": "web"})"; },
       R"(kubernetes: items: expected array, got string "web")"},
      {"ItemIsAString", [](F f) { f.kubernetes = R"({"kind": "List", "items": ["web"]})"; },
       R"(kubernetes.items[0]: expected object, got string "web")"},
      {"ItemWithoutKind", [](F f) { Edit(f.kubernetes, R"("kind": "ConfigMap", )", ""); },
       "kubernetes.items[2]: kind: missing"},

      // Service
      {"ServiceWithoutName",
       [](F f) { Edit(f.kubernetes, R"("name": "web", "namespace": "default", )", ""); },
       "kubernetes.items[0] (Service): metadata.name: missing"},
      {"ServiceWithoutSpec",
       [](F f) { Edit(f.kubernetes, R"("spec": {"clusterIP": "None", )", R"("x": {)"); },
       "kubernetes.items[3] (Service prod/db): spec: missing"},
      {"ServicePortOutOfRange",
       [](F f) { Edit(f.kubernetes, R"("port": 80,)", R"("port": 70000,)"); },
       "kubernetes.items[0] (Service default/web): spec.ports[0].port: must be 1..65535, got "
       "70000"},
      {"ServicePortZero", [](F f) { Edit(f.kubernetes, R"("port": 5432)", R"("port": 0)"); },
       "kubernetes.items[3] (Service prod/db): spec.ports[0].port: must be 1..65535, got 0"},
      {"ServicePortMissing", [](F f) { Edit(f.kubernetes, R"({"port": 5432})", "{}"); },
       "kubernetes.items[3] (Service prod/db): spec.ports[0].port: missing"},
      {"ServicePortIsAString",
       [](F f) { Edit(f.kubernetes, R"("port": 80,)", R"("port": "80",)"); },
       R"(kubernetes.items[0] (Service default/web): spec.ports[0].port: expected integer, got string "80")"},
      {"ServicePortIsAFraction",
       [](F f) { Edit(f.kubernetes, R"("port": 80,)", R"("port": 80.5,)"); },
       "spec.ports[0].port: expected integer, got 80.5"},
      {"NodePortOutOfRange", [](F f) { Edit(f.kubernetes, "30080", "70000"); },
       "kubernetes.items[0] (Service default/web): spec.ports[0].nodePort: must be 0..65535, got "
       "70000"},
      {"NodePortOnClusterIpService",
       [](F f) { Edit(f.kubernetes, R"({"port": 5432})", R"({"port": 5432, "nodePort": 30432})"); },
       "kubernetes.items[3] (Service prod/db): spec.ports[0].nodePort: may not be used when type "
       "is ClusterIP"},
      {"UnknownProtocol",
       [](F f) {
         Edit(f.kubernetes, R"("protocol": "UDP", "port": 53,)",
              R"("protocol": "ICMP", "port": 53,)");
       },
       R"(kubernetes.items[0] (Service default/web): spec.ports[1].protocol: expected TCP, UDP or SCTP, got "ICMP")"},
      {"PortsIsAnObject",
       [](F f) {
         Edit(f.kubernetes, R"("ports": [{"port": 5432}])", R"("ports": {"port": 5432})");
       },
       "kubernetes.items[3] (Service prod/db): spec.ports: expected array, got object"},
      {"ServicePortListedTwice",
       [](F f) {
         Edit(f.kubernetes, R"([{"port": 5432}])", R"([{"port": 5432}, {"port": 5432}])");
       },
       "kubernetes.items[3] (Service prod/db): spec.ports[1]: duplicates spec.ports[0] (5432/TCP)"},
      {"UnknownServiceType", [](F f) { Edit(f.kubernetes, R"("NodePort")", R"("Ingress")"); },
       R"(kubernetes.items[0] (Service default/web): spec.type: expected ClusterIP, NodePort, LoadBalancer or ExternalName, got "Ingress")"},
      {"BadClusterIp", [](F f) { Edit(f.kubernetes, R"(["10.96.0.10", )", R"(["10.96.0.999", )"); },
       R"(kubernetes.items[0] (Service default/web): spec.clusterIPs[0]: malformed IPv4 address "10.96.0.999")"},
      {"BadClusterIpWithoutClusterIps",
       [](F f) {
         Edit(f.kubernetes, R"("clusterIPs": ["10.96.0.10", "fd00:10:96::a"],)", "");
         Edit(f.kubernetes, R"("clusterIP": "10.96.0.10")", R"("clusterIP": "10.96.0.")");
       },
       R"(kubernetes.items[0] (Service default/web): spec.clusterIP: malformed IPv4 address "10.96.0.")"},
      {"ClusterIpsIsAString",
       [](F f) { Edit(f.kubernetes, R"(["10.96.0.20"])", R"("10.96.0.20")"); },
       R"(kubernetes.items[4] (Service prod/lb): spec.clusterIPs: expected array, got string "10.96.0.20")"},
      {"BadExternalIp", [](F f) { Edit(f.kubernetes, "192.0.2.10", "192.0.2.x"); },
       R"(spec.externalIPs[0]: malformed IPv4 address "192.0.2.x")"},
      {"BadLoadBalancerIp", [](F f) { Edit(f.kubernetes, "203.0.113.7", "203.0.113.777"); },
       R"(kubernetes.items[4] (Service prod/lb): status.loadBalancer.ingress[0].ip: malformed IPv4 address "203.0.113.777")"},
      {"UnknownTrafficPolicy", [](F f) { Edit(f.kubernetes, R"("Local")", R"("Nearest")"); },
       R"(kubernetes.items[0] (Service default/web): spec.externalTrafficPolicy: expected Cluster or Local, got "Nearest")"},
      {"UnknownInternalTrafficPolicy",
       [](F f) {
         Edit(f.kubernetes, R"("internalTrafficPolicy": "Cluster")",
              R"("internalTrafficPolicy": "Topology")");
       },
       R"(spec.internalTrafficPolicy: expected Cluster or Local, got "Topology")"},
      {"ServiceListedTwice",
       [](F f) {
         Edit(f.kubernetes, R"("name": "lb", "namespace": "prod")",
              R"("name": "db", "namespace": "prod")");
       },
       "kubernetes.items[4] (Service prod/db): duplicates kubernetes.items[3]"},
      {"ClusterIpOfTwoServices", [](F f) { Edit(f.kubernetes, "10.96.0.20", "10.96.0.10"); },
       "kubernetes.items[4] (Service prod/lb): spec.clusterIPs[0]: 10.96.0.10 is already the "
       "cluster IP of Service default/web"},
      {"NodePortOfTwoServices",
       [](F f) {
         Edit(f.kubernetes, R"("protocol": "SCTP", "port": 443, "nodePort": 31443)",
              R"("protocol": "TCP", "port": 443, "nodePort": 30080)");
       },
       "kubernetes.items[4] (Service prod/lb): spec.ports[0].nodePort: 30080/TCP is already "
       "used by Service default/web"},

      // EndpointSlice
      {"SliceWithoutAddressType",
       [](F f) {
         Edit(f.kubernetes, R"("addressType": "IPv4",
      "endpoints": [)",
              R"("endpoints": [)");
       },
       "kubernetes.items[1] (EndpointSlice default/web-abcde): addressType: missing"},
      {"SliceWithUnknownAddressType",
       [](F f) {
         Edit(f.kubernetes, R"("addressType": "IPv4",
      "endpoints": [)",
              R"("addressType": "IPv5", "endpoints": [)");
       },
       R"(addressType: expected IPv4, IPv6 or FQDN, got "IPv5")"},
      {"SliceWithBadAddress", [](F f) { Edit(f.kubernetes, "10.244.2.7", "10.244.2.7/32"); },
       R"(kubernetes.items[1] (EndpointSlice default/web-abcde): endpoints[1].addresses[0]: malformed IPv4 address "10.244.2.7/32")"},
      {"SliceAddressesIsAString",
       [](F f) { Edit(f.kubernetes, R"(["10.244.1.5"])", R"("10.244.1.5")"); },
       R"(kubernetes.items[1] (EndpointSlice default/web-abcde): endpoints[0].addresses: expected array, got string "10.244.1.5")"},
      {"SliceEndpointWithoutAddresses",
       [](F f) { Edit(f.kubernetes, R"("addresses": ["10.244.3.9"], )", ""); },
       "kubernetes.items[1] (EndpointSlice default/web-abcde): endpoints[2].addresses: missing"},
      {"SliceReadyIsAString",
       [](F f) { Edit(f.kubernetes, R"({"ready": true,)", R"({"ready": "true",)"); },
       R"(endpoints[0].conditions.ready: expected boolean, got string "true")"},
      {"SliceNodeNameIsANumber",
       [](F f) { Edit(f.kubernetes, R"("nodeName": "node-227")", R"("nodeName": 227)"); },
       "endpoints[1].nodeName: expected string, got 227"},
      {"SlicePortZero", [](F f) { Edit(f.kubernetes, R"("port": 5353)", R"("port": 0)"); },
       "kubernetes.items[1] (EndpointSlice default/web-abcde): ports[1].port: must be 1..65535, "
       "got 0"},
      {"SlicePortIsAString",
       [](F f) { Edit(f.kubernetes, R"("port": 8080})", R"("port": "http"})"); },
       R"(ports[0].port: expected integer, got string "http")"},
      {"SliceListedTwice",
       [](F f) { Edit(f.kubernetes, R"("name": "web-v6")", R"("name": "web-abcde")"); },
       "kubernetes.items[5] (EndpointSlice default/web-abcde): duplicates kubernetes.items[1]"},
  };
}

class MalformedClusterFileTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(MalformedClusterFileTest, IsRejectedWithAMessageNamingObjectAndField) {
  ClusterFileText file;
  GetParam().mutate(file);
  const std::string text = file.Render();
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile(text);
  ASSERT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(GetParam().message)) << text;
}

INSTANTIATE_TEST_SUITE_P(Cases, MalformedClusterFileTest, ::testing::ValuesIn(ErrorCases()),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ClusterFileTest, NotJsonIsRejected) {
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile("node: {name: node-228}");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(parsed.status().message()),
      StartsWith("cluster file: not valid JSON: parse error at line 1, column 2: syntax error"));
}

TEST(ClusterFileTest, TruncatedJsonIsRejectedWithItsPosition) {
  const std::string text = ClusterFileText().Render();
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile(text.substr(0, text.size() / 2));
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("cluster file: not valid JSON: parse error at line"));
}

TEST(ClusterFileTest, TrailingTextAfterTheDocumentIsRejected) {
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile(ClusterFileText().Render() + "{}");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("cluster file: not valid JSON"));
}

TEST(ClusterFileTest, EmptyTextAndNonObjectDocumentsAreRejected) {
  for (const char* text : {"", "   ", "null", "[]", "\"node\"", "42"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<ClusterModel> parsed = ParseClusterFile(text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_THAT(std::string(parsed.status().message()), StartsWith("cluster file: "));
  }
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile("[1]");
  EXPECT_EQ(std::string(parsed.status().message()),
            "cluster file: expected a JSON object, got array");
}

// ---- robustness ----------------------------------------------------------------

using Json = nlohmann::json;

void CollectPointers(const Json& value, const Json::json_pointer& at,
                     std::vector<Json::json_pointer>* out) {
  out->push_back(at);
  if (value.is_object()) {
    for (const auto& [key, child] : value.items()) CollectPointers(child, at / key, out);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) CollectPointers(value[i], at / i, out);
  }
}

bool NamesASection(std::string_view message) {
  for (const char* prefix :
       {"node: ", "etcd: ", "etcd key ", "kubernetes: ", "kubernetes.items[", "cluster file: "}) {
    if (message.substr(0, std::string_view(prefix).size()) == prefix) return true;
  }
  return false;
}

// Replaces every value of the document (etcd values as objects, so their
// fields are reached too) by values of every JSON type. Each result must be
// a model or an InvalidArgument naming a section; never an exception, a
// crash or another code.
TEST(ClusterFileRobustnessTest, EveryValueReplacedByEveryTypeIsHandled) {
  ClusterFileText file;
  file.kvs.resize(4);
  for (Kv& kv : file.kvs) kv.form = KvForm::kPlainObject;
  const Json doc = Json::parse(file.Render());
  std::vector<Json::json_pointer> pointers;
  CollectPointers(doc, Json::json_pointer(), &pointers);
  ASSERT_GT(pointers.size(), 150u);

  const std::vector<Json> replacements = {nullptr, true, -1, 70000,         18446744073709551615ull,
                                          1.5,     "x",  "", Json::array(), Json::object()};
  int rejected = 0;
  int accepted = 0;
  for (const Json::json_pointer& pointer : pointers) {
    if (pointer.empty()) continue;
    for (const Json& replacement : replacements) {
      Json mutated = doc;
      mutated[pointer] = replacement;
      absl::StatusOr<ClusterModel> parsed;
      EXPECT_NO_THROW(parsed = ParseClusterFile(mutated.dump()))
          << pointer.to_string() << " = " << replacement.dump();
      if (parsed.ok()) {
        ++accepted;
        continue;
      }
      ++rejected;
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(NamesASection(std::string(parsed.status().message())))
          << pointer.to_string() << " = " << replacement.dump() << ": " << parsed.status();
    }
  }
  // Most replacements break a required field or a type; ignored fields
  // (uid, selector, ...) and optional ones set to null still parse.
  EXPECT_GT(rejected, accepted);
  EXPECT_GT(accepted, 0);
}

TEST(ClusterFileRobustnessTest, EveryTruncationIsRejectedAsNotJson) {
  const std::string text = ClusterFileText().Render();
  const size_t last_brace = text.rfind('}');
  for (size_t cut = 0; cut < last_brace; cut += 11) {
    absl::StatusOr<ClusterModel> parsed = ParseClusterFile(text.substr(0, cut));
    ASSERT_FALSE(parsed.ok()) << cut;
    EXPECT_THAT(std::string(parsed.status().message()), StartsWith("cluster file: not valid JSON"))
        << cut;
  }
}

TEST(ClusterFileRobustnessTest, DeepNestingIsRejectedWithoutCrashing) {
  const std::string deep =
      absl::StrCat(R"({"node": )", std::string(100000, '['), std::string(100000, ']'), "}");
  absl::StatusOr<ClusterModel> parsed = ParseClusterFile(deep);
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()),
              HasSubstr("node: expected object, got array"));
}

// ---- LoadClusterFile -------------------------------------------------------------

TEST(LoadClusterFileTest, ReadsAFile) {
  const std::string path = ::testing::TempDir() + "/cluster_file_test_valid.json";
  const std::string text = ClusterFileText().Render();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(text.data(), 1, text.size(), f), text.size());
  std::fclose(f);
  absl::StatusOr<ClusterModel> loaded = LoadClusterFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->node.name, "node-228");
  EXPECT_EQ(loaded->leases.size(), 3u);
  std::remove(path.c_str());
}

TEST(LoadClusterFileTest, MissingFileIsNotFoundAndNamesThePath) {
  const std::string path = ::testing::TempDir() + "/no/such/cluster.json";
  absl::StatusOr<ClusterModel> loaded = LoadClusterFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
}

TEST(LoadClusterFileTest, DirectoryIsRejectedAndNamesThePath) {
  const std::string path = ::testing::TempDir();
  absl::StatusOr<ClusterModel> loaded = LoadClusterFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(path));
}

TEST(LoadClusterFileTest, BadContentIsInvalidArgumentPrefixedWithThePath) {
  const std::string path = ::testing::TempDir() + "/cluster_file_test_bad.json";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"node": 1})", f);
  std::fclose(f);
  absl::StatusOr<ClusterModel> loaded = LoadClusterFile(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(loaded.status().message()), path + ": node: expected object, got 1");
  std::remove(path.c_str());
}

// ---- address helpers ---------------------------------------------------------------

TEST(Ipv4Test, ParsesStrictDottedQuadsInHostOrder) {
  EXPECT_EQ(ParseIpv4("0.0.0.0").value(), 0u);
  EXPECT_EQ(ParseIpv4("255.255.255.255").value(), 0xffffffffu);
  EXPECT_EQ(ParseIpv4("10.244.1.0").value(), 0x0af40100u);
  EXPECT_EQ(ParseIpv4("192.168.1.11").value(), 0xc0a8010bu);
  for (const char* bad : {"", "1", "1.2.3", "1.2.3.4.", ".1.2.3", "1.2.3.4.5", "256.1.1.1",
                          "1.2.3.-4", "01.2.3.4", "1.2.3.00", "1.2.3.4 ", " 1.2.3.4", "1..3.4",
                          "1.2.3.4/24", "a.b.c.d", "1.2.3.1234", "::1", "1.2.3.+4"}) {
    absl::StatusOr<uint32_t> ip = ParseIpv4(bad);
    EXPECT_FALSE(ip.ok()) << '"' << bad << '"';
    EXPECT_EQ(ip.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(std::string(ParseIpv4("1.2.3").status().message()),
            R"(malformed IPv4 address "1.2.3")");
}

TEST(Ipv4Test, FormatsWhatItParses) {
  for (const char* text : {"0.0.0.0", "10.244.1.0", "192.168.1.11", "255.255.255.255"}) {
    EXPECT_EQ(FormatIpv4(ParseIpv4(text).value()), text);
  }
}

TEST(Ipv4PrefixTest, ParsesAndFormats) {
  absl::StatusOr<Ipv4Prefix> prefix = ParseIpv4Prefix("10.244.0.0/16");
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->address, 0x0af40000u);
  EXPECT_EQ(prefix->length, 16);
  EXPECT_EQ(FormatIpv4Prefix(*prefix), "10.244.0.0/16");
  EXPECT_EQ(ParseIpv4Prefix("0.0.0.0/0").value().length, 0);
  EXPECT_EQ(ParseIpv4Prefix("1.2.3.4/32").value().length, 32);
  for (const char* bad : {"10.244.0.0", "10.244.0.0/", "10.244.0.0/33", "10.244.0.0/016",
                          "10.244.0.0/1a", "10.244.0/16", "/16", "10.244.0.0/16/1"}) {
    EXPECT_FALSE(ParseIpv4Prefix(bad).ok()) << bad;
  }
}

TEST(MacTest, ParsesEitherCaseAndFormatsLowerCase) {
  absl::StatusOr<MacAddress> mac = ParseMac("AA:bb:Cc:0d:E0:ff");
  ASSERT_TRUE(mac.ok());
  EXPECT_EQ(*mac, (MacAddress{0xaa, 0xbb, 0xcc, 0x0d, 0xe0, 0xff}));
  EXPECT_EQ(FormatMac(*mac), "aa:bb:cc:0d:e0:ff");
  for (const char* bad :
       {"", "zz", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff",
        "aa:bb:cc:dd:ee:f", "aa:bb:cc:dd:ee:fg", "a:bb:cc:dd:ee:ff0", " aa:bb:cc:dd:ee:f"}) {
    absl::StatusOr<MacAddress> parsed = ParseMac(bad);
    EXPECT_FALSE(parsed.ok()) << '"' << bad << '"';
  }
  EXPECT_EQ(std::string(ParseMac("zz").status().message()), R"(malformed MAC "zz")");
}

}  // namespace
}  // namespace sluice
