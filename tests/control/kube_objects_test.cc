// kube-proxy's and flannel's reading of Kubernetes objects (kube_objects.h),
// one rule per case, and flannel's subnet.env.
#include "control/kube_objects.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "control/cluster_file.h"
#include "control/sources/kube_source.h"

namespace sluice {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

json Slice(json endpoints) {
  return {{"metadata",
           {{"name", "web-abc"},
            {"namespace", "default"},
            {"labels", {{"kubernetes.io/service-name", "web"}}}}},
          {"addressType", "IPv4"},
          {"endpoints", std::move(endpoints)},
          {"ports", json::array({{{"name", "http"}, {"protocol", "TCP"}, {"port", 8080}}})}};
}

json Service() {
  return json::parse(R"({
    "metadata": {"name": "web", "namespace": "default", "resourceVersion": "10"},
    "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
             "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": 30080}]},
    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}})");
}

EndpointSliceSpec ReadSlice(const json& object, KubeReading reading = KubeReading::kKubeProxy) {
  EndpointSliceSpec slice;
  absl::StatusOr<ObjectUse> use = ReadEndpointSlice(object, reading, &slice);
  EXPECT_TRUE(use.ok()) << use.status();
  EXPECT_EQ(use.value_or(ObjectUse::kSkipped), ObjectUse::kUsed);
  return slice;
}

TEST(KubeObjectsTest, EndpointConditionsTakeKubeProxysNilDefaults) {
  const json object = Slice(json::parse(R"([
      {"addresses": ["10.244.1.5"]},
      {"addresses": ["10.244.1.6"], "conditions": {}},
      {"addresses": ["10.244.1.7"], "conditions": {"ready": false}},
      {"addresses": ["10.244.1.8"], "conditions": {"ready": false, "serving": true, "terminating": true}},
      {"addresses": ["10.244.1.9"], "conditions": {"ready": false, "serving": false}}])"));
  const EndpointSliceSpec slice = ReadSlice(object);
  ASSERT_EQ(slice.endpoints.size(), 5u);
  for (int i : {0, 1}) {  // ready nil = true, serving nil = true, terminating nil = false
    EXPECT_TRUE(slice.endpoints[i].ready) << i;
    EXPECT_TRUE(slice.endpoints[i].serving) << i;
    EXPECT_FALSE(slice.endpoints[i].terminating) << i;
  }
  // serving nil is true even when not ready (discovery/v1; kube-proxy's
  // `Serving == nil || *Serving`).
  EXPECT_FALSE(slice.endpoints[2].ready);
  EXPECT_TRUE(slice.endpoints[2].serving);
  EXPECT_FALSE(slice.endpoints[2].terminating);
  EXPECT_TRUE(slice.endpoints[3].serving);
  EXPECT_TRUE(slice.endpoints[3].terminating);
  EXPECT_FALSE(slice.endpoints[4].serving);

  // The cluster file keeps its own reading: serving absent = ready.
  const EndpointSliceSpec file = ReadSlice(object, KubeReading::kClusterFile);
  EXPECT_FALSE(file.endpoints[2].serving);
}

TEST(KubeObjectsTest, EndpointsCarryNodeNameZoneAndHints) {
  const EndpointSliceSpec slice = ReadSlice(Slice(json::parse(R"([
      {"addresses": ["10.244.1.5"], "nodeName": "node-228", "zone": "zone-a",
       "hints": {"forZones": [{"name": "zone-a"}, {"name": "zone-b"}],
                 "forNodes": [{"name": "node-228"}]}},
      {"addresses": ["10.244.2.5"]}])")));
  ASSERT_EQ(slice.endpoints.size(), 2u);
  EXPECT_EQ(slice.endpoints[0].node_name, "node-228");
  EXPECT_EQ(slice.endpoints[0].zone, "zone-a");
  EXPECT_THAT(slice.endpoints[0].hints_for_zones, ElementsAre("zone-a", "zone-b"));
  EXPECT_THAT(slice.endpoints[0].hints_for_nodes, ElementsAre("node-228"));
  EXPECT_EQ(slice.endpoints[1].node_name, "");
  EXPECT_EQ(slice.endpoints[1].zone, "");
  EXPECT_TRUE(slice.endpoints[1].hints_for_zones.empty());
  EXPECT_EQ(slice.service_name, "web");
  ASSERT_EQ(slice.ports.size(), 1u);
  EXPECT_EQ(slice.ports[0].port, 8080);
}

TEST(KubeObjectsTest, OnlyTheFirstAddressOfAnEndpointIsUsed) {
  const json object =
      Slice(json::parse(R"([{"addresses": ["10.244.1.5", "10.244.1.6"], "nodeName": "n"}])"));
  const EndpointSliceSpec slice = ReadSlice(object);
  ASSERT_EQ(slice.endpoints.size(), 1u);
  EXPECT_EQ(slice.endpoints[0].ip, Ip("10.244.1.5"));
  // (the cluster file has always given one endpoint per address)
  EXPECT_EQ(ReadSlice(object, KubeReading::kClusterFile).endpoints.size(), 2u);
}

TEST(KubeObjectsTest, SliceWithoutTheServiceNameLabelIsSkippedNotAnError) {
  json object = Slice(json::parse(R"([{"addresses": ["10.244.1.5"]}])"));
  object["metadata"]["labels"] = {{"endpointslice.kubernetes.io/managed-by", "someone-else"}};
  EndpointSliceSpec slice;
  absl::StatusOr<ObjectUse> use = ReadEndpointSlice(object, KubeReading::kKubeProxy, &slice);
  ASSERT_TRUE(use.ok()) << use.status();
  EXPECT_EQ(*use, ObjectUse::kSkipped);
  EXPECT_EQ(slice.name, "web-abc");  // names are set for skipped objects
  object["metadata"]["labels"]["kubernetes.io/service-name"] = "";
  use = ReadEndpointSlice(object, KubeReading::kKubeProxy, &slice);
  ASSERT_TRUE(use.ok()) << use.status();
  EXPECT_EQ(*use, ObjectUse::kSkipped);
  // The cluster file still rejects it (CLUSTER_FILE.md).
  use = ReadEndpointSlice(object, KubeReading::kClusterFile, &slice);
  EXPECT_FALSE(use.ok());
}

TEST(KubeObjectsTest, ObjectsOfAnotherProxyAreSkipped) {
  for (const char* label : {kServiceProxyNameLabel, kHeadlessLabel}) {
    json service = Service();
    service["metadata"]["labels"] = {{label, "other-proxy"}};
    ServiceSpec spec;
    absl::StatusOr<ObjectUse> use = ReadService(service, KubeReading::kKubeProxy, &spec);
    ASSERT_TRUE(use.ok()) << use.status();
    EXPECT_EQ(*use, ObjectUse::kSkipped) << label;
    EXPECT_EQ(spec.name, "web");
    // Even an empty value: kube-proxy's selector is "does not exist".
    service["metadata"]["labels"] = {{label, ""}};
    EXPECT_EQ(ReadService(service, KubeReading::kKubeProxy, &spec).value(), ObjectUse::kSkipped);

    json slice = Slice(json::parse(R"([{"addresses": ["10.244.1.5"]}])"));
    slice["metadata"]["labels"][label] = "other-proxy";
    EndpointSliceSpec slice_spec;
    EXPECT_EQ(ReadEndpointSlice(slice, KubeReading::kKubeProxy, &slice_spec).value(),
              ObjectUse::kSkipped);
  }
  ServiceSpec spec;
  EXPECT_EQ(ReadService(Service(), KubeReading::kKubeProxy, &spec).value(), ObjectUse::kUsed);
}

TEST(KubeObjectsTest, LoadBalancerIngressWithIpModeProxyIsNotDnated) {
  json service = Service();
  service["status"]["loadBalancer"]["ingress"] = json::parse(R"([
      {"ip": "203.0.113.7"}, {"ip": "203.0.113.8", "ipMode": "VIP"},
      {"ip": "203.0.113.9", "ipMode": "Proxy"}, {"hostname": "lb.example"}])");
  ServiceSpec spec;
  ASSERT_EQ(ReadService(service, KubeReading::kKubeProxy, &spec).value(), ObjectUse::kUsed);
  EXPECT_THAT(spec.load_balancer_ips, ElementsAre(Ip("203.0.113.7"), Ip("203.0.113.8")));
  EXPECT_THAT(spec.cluster_ips, ElementsAre(Ip("10.96.0.10")));
  ASSERT_EQ(spec.ports.size(), 1u);
  EXPECT_EQ(spec.ports[0].node_port, 30080);

  service["status"]["loadBalancer"]["ingress"][1]["ipMode"] = "Tunnel";
  absl::StatusOr<ObjectUse> use = ReadService(service, KubeReading::kKubeProxy, &spec);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().message(),
            "Service default/web: status.loadBalancer.ingress[1].ipMode: expected VIP or Proxy, "
            "got \"Tunnel\"");
}

TEST(KubeObjectsTest, Ipv6FamiliesAreSkipped) {
  json service = Service();
  service["spec"]["clusterIPs"] = {"fd00::10", "10.96.0.10"};
  service["spec"]["externalIPs"] = {"2001:db8::1", "192.0.2.1"};
  ServiceSpec spec;
  ASSERT_EQ(ReadService(service, KubeReading::kKubeProxy, &spec).value(), ObjectUse::kUsed);
  EXPECT_THAT(spec.cluster_ips, ElementsAre(Ip("10.96.0.10")));
  EXPECT_THAT(spec.external_ips, ElementsAre(Ip("192.0.2.1")));

  json slice = Slice(json::parse(R"([{"addresses": ["fd00::5"]}])"));
  slice["addressType"] = "IPv6";
  EndpointSliceSpec slice_spec;
  EXPECT_EQ(ReadEndpointSlice(slice, KubeReading::kKubeProxy, &slice_spec).value(),
            ObjectUse::kSkipped);
}

TEST(KubeObjectsTest, SlicePortWithoutANameIsIgnored) {
  json slice = Slice(json::parse(R"([{"addresses": ["10.244.1.5"]}])"));
  slice["ports"] = json::parse(R"([{"protocol": "TCP", "port": 8080},
                                   {"name": "", "protocol": "UDP", "port": 53}])");
  const EndpointSliceSpec spec = ReadSlice(slice);
  ASSERT_EQ(spec.ports.size(), 1u);  // nil name ignored, "" is the unnamed port
  EXPECT_EQ(spec.ports[0].port, 53);
  EXPECT_EQ(spec.ports[0].protocol, L4Protocol::kUdp);
}

TEST(KubeObjectsTest, AMalformedObjectNamesTheObjectAndTheField) {
  json service = Service();
  service["spec"]["ports"][0]["port"] = 70000;
  ServiceSpec spec;
  absl::StatusOr<ObjectUse> use = ReadService(service, KubeReading::kKubeProxy, &spec);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(use.status().message(),
            "Service default/web: spec.ports[0].port: must be 1..65535, got 70000");

  json slice = Slice(json::parse(R"([{"addresses": ["10.244.1.5"], "zone": 3}])"));
  EndpointSliceSpec slice_spec;
  use = ReadEndpointSlice(slice, KubeReading::kKubeProxy, &slice_spec);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().message(),
            "EndpointSlice default/web-abc: endpoints[0].zone: expected string, got 3");

  use = ReadService(json::parse(R"({"metadata": {"namespace": "x"}})"), KubeReading::kKubeProxy,
                    &spec);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().message(), "Service: metadata.name: missing");
}

// ---- Nodes -> flannel leases --------------------------------------------------------

json Node(const char* name, const char* pod_cidr, const char* mac) {
  json node = {{"metadata",
                {{"name", name},
                 {"annotations",
                  {{"flannel.alpha.coreos.com/kube-subnet-manager", "true"},
                   {"flannel.alpha.coreos.com/backend-type", "vxlan"},
                   {"flannel.alpha.coreos.com/public-ip", "10.10.100.227"},
                   {"flannel.alpha.coreos.com/backend-data",
                    std::string(R"({"VNI":1,"VtepMAC":")") + mac + "\"}"}}}}},
               {"spec", {{"podCIDR", pod_cidr}}}};
  return node;
}

TEST(KubeObjectsTest, NodeAnnotationsGiveALeaseAsEtcdWould) {
  NodeLeaseReading reading;
  reading.network.network = {Ip("10.244.0.0"), 16};
  FlannelLease lease;
  std::string name;
  json node = Node("node-227", "10.244.25.0/24", "aa:bb:cc:dd:ee:01");
  ASSERT_EQ(ReadNodeLease(node, reading, &lease, &name).value(), ObjectUse::kUsed);
  EXPECT_EQ(name, "node-227");
  EXPECT_EQ(FormatIpv4Prefix(lease.subnet), "10.244.25.0/24");
  EXPECT_EQ(lease.public_ip, Ip("10.10.100.227"));
  EXPECT_EQ(lease.backend_type, "vxlan");
  EXPECT_EQ(lease.vni, 1u);
  EXPECT_EQ(FormatMac(lease.vtep_mac), "aa:bb:cc:dd:ee:01");

  // podCIDRs (dual stack): its IPv4 entry wins over podCIDR.
  node["spec"]["podCIDRs"] = {"fd00:10:244:19::/64", "10.244.26.0/24"};
  ASSERT_EQ(ReadNodeLease(node, reading, &lease, &name).value(), ObjectUse::kUsed);
  EXPECT_EQ(FormatIpv4Prefix(lease.subnet), "10.244.26.0/24");

  // An older flannel writes no VNI: the network's.
  reading.network.vni = 7;
  node["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"] =
      R"({"VtepMAC":"aa:bb:cc:dd:ee:02"})";
  ASSERT_EQ(ReadNodeLease(node, reading, &lease, &name).value(), ObjectUse::kUsed);
  EXPECT_EQ(lease.vni, 7u);

  // Another annotation prefix (flanneld --kube-annotation-prefix).
  NodeLeaseReading other = reading;
  other.annotation_prefix = "example.com";
  EXPECT_EQ(ReadNodeLease(node, other, &lease, &name).value(), ObjectUse::kSkipped);
}

TEST(KubeObjectsTest, ANodeFlannelHasNotRegisteredIsSkipped) {
  NodeLeaseReading reading;
  FlannelLease lease;
  std::string name;
  json node = Node("node-9", "10.244.9.0/24", "aa:bb:cc:dd:ee:09");
  node["metadata"]["annotations"].erase("flannel.alpha.coreos.com/kube-subnet-manager");
  EXPECT_EQ(ReadNodeLease(node, reading, &lease, &name).value(), ObjectUse::kSkipped);
  node["metadata"]["annotations"]["flannel.alpha.coreos.com/kube-subnet-manager"] = "false";
  EXPECT_EQ(ReadNodeLease(node, reading, &lease, &name).value(), ObjectUse::kSkipped);
  json bare = {{"metadata", {{"name", "node-10"}}}, {"spec", json::object()}};
  EXPECT_EQ(ReadNodeLease(bare, reading, &lease, &name).value(), ObjectUse::kSkipped);
}

TEST(KubeObjectsTest, MalformedNodeAnnotationsAreNamed) {
  NodeLeaseReading reading;
  reading.network.network = {Ip("10.244.0.0"), 16};
  FlannelLease lease;
  std::string name;
  const auto error = [&](const json& node) {
    absl::StatusOr<ObjectUse> use = ReadNodeLease(node, reading, &lease, &name);
    return use.ok() ? std::string("ok") : std::string(use.status().message());
  };
  const char* kData = "flannel.alpha.coreos.com/backend-data";
  json node = Node("n1", "10.244.1.0/24", "01:00:5e:00:00:01");
  EXPECT_EQ(error(node), std::string("Node n1: metadata.annotations[\"") + kData +
                             "\"].VtepMAC: must be a unicast MAC, got \"01:00:5e:00:00:01\"");
  node = Node("n1", "10.244.1.0/24", "aa:bb:cc:dd:ee:01");
  node["metadata"]["annotations"][kData] = "{not json";
  EXPECT_THAT(error(node), HasSubstr(std::string("Node n1: metadata.annotations[\"") + kData +
                                     "\"]: not valid JSON"));
  node = Node("n1", "10.244.1.0/24", "aa:bb:cc:dd:ee:01");
  node["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-type"] = "host-gw";
  EXPECT_EQ(error(node),
            "Node n1: metadata.annotations[\"flannel.alpha.coreos.com/backend-type\"]: only vxlan "
            "is supported, got \"host-gw\"");
  node = Node("n1", "10.244.1.0/24", "aa:bb:cc:dd:ee:01");
  node["metadata"]["annotations"].erase("flannel.alpha.coreos.com/public-ip");
  EXPECT_EQ(error(node),
            "Node n1: metadata.annotations[\"flannel.alpha.coreos.com/public-ip\"]: missing");
  node = Node("n1", "10.245.1.0/24", "aa:bb:cc:dd:ee:01");
  EXPECT_EQ(error(node), "Node n1: spec.podCIDR: 10.245.1.0/24 is outside Network 10.244.0.0/16");
  node = Node("n1", "10.244.1.5/24", "aa:bb:cc:dd:ee:01");
  EXPECT_EQ(error(node), "Node n1: spec.podCIDR: 10.244.1.5/24 has host bits set");
  node = Node("n1", "10.244.1.0/24", "aa:bb:cc:dd:ee:01");
  node["spec"].erase("podCIDR");
  EXPECT_EQ(error(node), "Node n1: spec.podCIDR: missing");
}

// ---- subnet.env -------------------------------------------------------------------

TEST(FlannelSubnetEnvTest, ReadsWhatFlanneldWrites) {
  absl::StatusOr<FlannelSubnetEnv> env = ParseFlannelSubnetEnv(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.25.1/24\nFLANNEL_MTU=1450\n"
      "FLANNEL_IPMASQ=true\n");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(FormatIpv4Prefix(env->network.network), "10.244.0.0/16");
  EXPECT_EQ(env->network.subnet_len, 24);
  EXPECT_EQ(FormatIpv4Prefix(env->subnet), "10.244.25.0/24");
  EXPECT_EQ(env->subnet_gateway, Ip("10.244.25.1"));
  EXPECT_EQ(env->mtu, 1450);
  EXPECT_TRUE(env->ip_masq);

  env = ParseFlannelSubnetEnv(
      "# written by "
      "flanneld\r\n\r\nFLANNEL_NETWORK=10.244.0.0/16\r\nFLANNEL_SUBNET=10.244.3.1/24\r\n"
      "FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_MTU=8950\nFLANNEL_IPMASQ=false");
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(env->mtu, 8950);
  EXPECT_FALSE(env->ip_masq);
}

TEST(FlannelSubnetEnvTest, RejectsWhatFlanneldNeverWrites) {
  const std::string good_rest = "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
  const auto error = [](const std::string& text) {
    absl::StatusOr<FlannelSubnetEnv> env = ParseFlannelSubnetEnv(text);
    return env.ok() ? std::string("ok") : std::string(env.status().message());
  };
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\n" + good_rest),
            "subnet.env: FLANNEL_SUBNET: missing");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET 10.244.1.1/24\n" + good_rest),
            "subnet.env line 2: expected KEY=VALUE");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.245.1.1/24\n" + good_rest),
            "subnet.env: FLANNEL_SUBNET: 10.245.1.1/24 is outside FLANNEL_NETWORK 10.244.0.0/16");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n" + good_rest),
            "subnet.env: FLANNEL_NETWORK: malformed IPv4 prefix \"10.244.0/16\"");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=big\n"
                  "FLANNEL_IPMASQ=true\n"),
            "subnet.env: FLANNEL_MTU: expected 68..65535, got \"big\"");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n"
                  "FLANNEL_IPMASQ=yes\n"),
            "subnet.env: FLANNEL_IPMASQ: expected true or false, got \"yes\"");
  EXPECT_EQ(error("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_NETWORK=10.244.0.0/16\n"),
            "subnet.env line 2: FLANNEL_NETWORK given twice");
}

TEST(FlannelSubnetEnvTest, LoadNamesTheFile) {
  absl::StatusOr<FlannelSubnetEnv> env = LoadFlannelSubnetEnv("/nonexistent/subnet.env");
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(env.status().message(), HasSubstr("/nonexistent/subnet.env"));
}

}  // namespace
}  // namespace sluice
