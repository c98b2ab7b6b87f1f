// control/model_messages.h: a ClusterModel as the protocol's objects. The
// gathering half of kube-proxy's endpoint handling (the union of a port's
// slices, target ports resolved by name and protocol, duplicates removed,
// conditions kept) and the Service ports kube-proxy proxies.
#include "control/model_messages.h"

#include "control/cluster_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

uint32_t Ip(const char* s) { return *ParseIpv4(s); }

EndpointSpec E(const char* ip, const char* node, bool ready = true, bool serving = true,
               bool terminating = false) {
  return {Ip(ip), ready, serving, terminating, node};
}

ClusterModel Model() {
  ClusterModel m;
  m.node.name = "node-228";
  m.node.node_ip = Ip("10.10.100.228");
  m.node.neighbors = {{PortRole::kUplink, Ip("10.10.100.1"), {2, 0, 0, 0, 0, 1}}};
  m.network.network = {Ip("10.244.0.0"), 16};
  m.network.vni = 7;
  m.leases = {{{Ip("10.244.25.0"), 24}, Ip("10.10.100.227"), "vxlan", 7, {0x0e, 0, 0, 0, 0, 0xe3}},
              {{Ip("10.244.26.0"), 24}, Ip("10.10.100.228"), "vxlan", 7, {0x0e, 0, 0, 0, 0, 0xe4}}};
  ServiceSpec web;
  web.namespace_name = "default";
  web.name = "web";
  web.type = "LoadBalancer";
  web.cluster_ips = {Ip("10.96.100.10")};
  web.external_ips = {Ip("192.0.2.10")};
  web.load_balancer_ips = {Ip("198.51.100.7")};
  web.external_traffic_policy = TrafficPolicy::kLocal;
  web.internal_traffic_policy = TrafficPolicy::kLocal;
  web.ports = {{"http", L4Protocol::kTcp, 80, 30080},
               {"dns", L4Protocol::kUdp, 53, 0},
               {"sig", L4Protocol::kSctp, 9, 0}};
  m.services.push_back(web);
  // Two slices of web: the http port's target is 8080 in one, 8081 in the
  // other (a rollout); one endpoint is listed in both.
  EndpointSliceSpec a;
  a.namespace_name = "default";
  a.name = "web-a";
  a.service_name = "web";
  a.endpoints = {E("10.244.26.20", "node-228"), E("10.244.25.30", "node-227", false, true, true)};
  a.ports = {{"http", L4Protocol::kTcp, 8080}, {"dns", L4Protocol::kUdp, 5353}};
  EndpointSliceSpec b;
  b.namespace_name = "default";
  b.name = "web-b";
  b.service_name = "web";
  b.endpoints = {E("10.244.26.20", "node-228", false), E("10.244.25.31", "node-227")};
  b.ports = {{"http", L4Protocol::kTcp, 8080}, {"http", L4Protocol::kUdp, 8080}};
  m.endpoint_slices = {a, b};
  // Not proxied: ExternalName, headless.
  ServiceSpec ext;
  ext.namespace_name = "default";
  ext.name = "ext";
  ext.type = "ExternalName";
  ext.ports = {{"", L4Protocol::kTcp, 443, 0}};
  m.services.push_back(ext);
  ServiceSpec headless;
  headless.namespace_name = "default";
  headless.name = "db";
  headless.type = "ClusterIP";
  headless.ports = {{"", L4Protocol::kTcp, 5432, 0}};
  m.services.push_back(headless);
  // A Service without slices.
  ServiceSpec lone;
  lone.namespace_name = "other";
  lone.name = "lone";
  lone.type = "ClusterIP";
  lone.cluster_ips = {Ip("10.96.7.7")};
  lone.ports = {{"", L4Protocol::kTcp, 80, 0}};
  m.services.push_back(lone);
  return m;
}

TEST(ModelMessagesTest, ProxiedServicePortsWithTheirFieldsOneEndpointSetEach) {
  const ModelMessages m = MessagesFromModel(Model());
  ASSERT_EQ(m.ports.size(), 3u);  // web http, web dns, other/lone
  ASSERT_EQ(m.endpoints.size(), 3u);
  EXPECT_EQ(api::FormatServicePortKey(m.ports[0].key), "default/web:http/TCP");
  EXPECT_EQ(api::FormatServicePortKey(m.ports[1].key), "default/web:dns/UDP");
  EXPECT_EQ(api::FormatServicePortKey(m.ports[2].key), "other/lone/TCP");
  const api::ServicePort& http = m.ports[0];
  EXPECT_EQ(http.type, "LoadBalancer");
  EXPECT_EQ(http.port, 80);
  EXPECT_EQ(http.node_port, 30080);
  EXPECT_EQ(http.cluster_ips, std::vector<uint32_t>{Ip("10.96.100.10")});
  EXPECT_EQ(http.external_ips, std::vector<uint32_t>{Ip("192.0.2.10")});
  EXPECT_EQ(http.load_balancer_ips, std::vector<uint32_t>{Ip("198.51.100.7")});
  EXPECT_EQ(http.external_traffic_policy, TrafficPolicy::kLocal);
  EXPECT_EQ(http.internal_traffic_policy, TrafficPolicy::kLocal);
  for (size_t i = 0; i < m.ports.size(); ++i)
    EXPECT_EQ(api::FormatServicePortKey(m.endpoints[i].key),
              api::FormatServicePortKey(m.ports[i].key));
  EXPECT_TRUE(m.endpoints[2].endpoints.empty());
}

TEST(ModelMessagesTest, EndpointsAreTheUnionOfTheSlicesByPortNameAndProtocol) {
  const ModelMessages m = MessagesFromModel(Model());
  const std::vector<api::Endpoint>& http = m.endpoints[0].endpoints;
  // Slice a's two, then slice b's new one; 10.244.26.20:8080 once, with
  // slice a's conditions (the first listing wins).
  ASSERT_EQ(http.size(), 3u);
  EXPECT_EQ(http[0].ip, Ip("10.244.26.20"));
  EXPECT_EQ(http[0].port, 8080);
  EXPECT_TRUE(http[0].ready);
  EXPECT_EQ(http[0].node_name, "node-228");
  EXPECT_EQ(http[1].ip, Ip("10.244.25.30"));
  EXPECT_FALSE(http[1].ready);
  EXPECT_TRUE(http[1].serving);
  EXPECT_TRUE(http[1].terminating);
  EXPECT_EQ(http[2].ip, Ip("10.244.25.31"));
  // dns resolves to 5353 in slice a only (slice b's UDP port is "http").
  const std::vector<api::Endpoint>& dns = m.endpoints[1].endpoints;
  ASSERT_EQ(dns.size(), 2u);
  EXPECT_EQ(dns[0].port, 5353);
  EXPECT_EQ(dns[1].port, 5353);
}

TEST(ModelMessagesTest, NodeSettingsLeasesAndNeighboursComeAsTheyAre) {
  const ClusterModel model = Model();
  const ModelMessages m = MessagesFromModel(model);
  EXPECT_EQ(m.node.node.name, "node-228");
  EXPECT_EQ(m.node.node.node_ip, Ip("10.10.100.228"));
  EXPECT_TRUE(m.node.node.neighbors.empty());  // they travel in NeighborsReplace
  EXPECT_EQ(m.node.network.vni, 7u);
  EXPECT_EQ(m.node.local_port_lo, 32768);
  ASSERT_EQ(m.neighbors.neighbors.size(), 1u);
  EXPECT_EQ(m.neighbors.neighbors[0].ip, Ip("10.10.100.1"));
  ASSERT_EQ(m.leases.size(), 2u);
  EXPECT_EQ(m.leases[1].lease.subnet.address, Ip("10.244.26.0"));
  EXPECT_EQ(m.leases[1].lease.public_ip, Ip("10.10.100.228"));
}

// The example cluster file, end to end: parser, then messages.
TEST(ModelMessagesTest, TheExampleClusterFileGivesTheNodePortServiceAndItsPod) {
  auto model = LoadClusterFile(std::string(SLUICE_SOURCE_ROOT) + "/examples/cluster/node-228.json");
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelMessages m = MessagesFromModel(*model);
  bool found = false;
  for (size_t i = 0; i < m.ports.size(); ++i) {
    if (m.ports[i].node_port != 8014) continue;
    found = true;
    EXPECT_EQ(api::FormatServicePortKey(m.ports[i].key), "ai/tzp-pytorch-2:ssh/TCP");
    ASSERT_FALSE(m.endpoints[i].endpoints.empty());
    EXPECT_EQ(m.endpoints[i].endpoints[0].ip, Ip("10.244.25.149"));
    EXPECT_EQ(m.endpoints[i].endpoints[0].port, 22);
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace sluice
