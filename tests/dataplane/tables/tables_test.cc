// The Service directory and the flannel subnet map (LPM), as the control
// side fills them from the example node's model. The neighbour table, the
// directory's own mechanics and the Service programmer have their own tests.
#include "control/table_builder.h"
#include "gtest/gtest.h"
#include "tests/fixtures/node_harness.h"

namespace sluice::testing {
namespace {

TEST(TablesTest, ServiceDirectoryHoldsClusterIpAndNodePortKeys) {
  NodeHarness node(Node228Model());
  const ServiceDirectory& s = node.directory();
  EXPECT_EQ(s.key_count(), 3u);  // ssh ClusterIP + NodePort, web
  EXPECT_EQ(s.slot_count(), 2u);
  const ServiceRef cip = s.Lookup({Ip(Example::kSshClusterIp), 22, kProtoTcp, 0});
  ASSERT_NE(cip, kNoService);
  EXPECT_EQ(ServiceKindOf(cip), ServiceEntryKind::kClusterIp);
  const EndpointSet& ssh = s.Endpoints(cip);
  EXPECT_EQ(ssh.all_count, 1u);
  EXPECT_EQ(ssh.endpoints()[0].ip, Ip(Example::kSshPod));
  EXPECT_EQ(ssh.endpoints()[0].port, 22);
  EXPECT_EQ(ssh.local_count, 0u);  // the pod runs on node-227
  const ServiceRef np = s.Lookup({0, Example::kNodePort, kProtoTcp, 0});
  ASSERT_NE(np, kNoService);
  EXPECT_EQ(ServiceKindOf(np), ServiceEntryKind::kNodePort);
  EXPECT_EQ(ServiceSlotOf(np), ServiceSlotOf(cip));  // one Service port, two keys
  EXPECT_TRUE(s.Endpoints(np).flags & EndpointSet::kMasqueradeExternal);
  EXPECT_EQ(s.name(ServiceSlotOf(np)), "ai/tzp-pytorch-2:ssh");
  EXPECT_EQ(s.Lookup({0, Example::kNodePort, kProtoUdp, 0}), kNoService);
  const ServiceRef web = s.Lookup({Ip(Example::kWebClusterIp), 80, kProtoTcp, 0});
  ASSERT_NE(web, kNoService);
  const EndpointSet& w = s.Endpoints(web);
  EXPECT_EQ(w.all_count, 2u);
  EXPECT_EQ(w.local_count, 1u);
  EXPECT_EQ(w.endpoints()[w.all_count].ip, Ip(Example::kWeb1));
}

TEST(TablesTest, NotReadyEndpointsAreSkippedAndTerminatingOnesAreTheFallback) {
  ClusterModel m = Node228Model();
  NodeHarness node(m);
  EndpointSpec& web1 = m.endpoint_slices[1].endpoints[0];
  EndpointSpec& web2 = m.endpoint_slices[1].endpoints[1];
  const ServiceKey key{Ip(Example::kWebClusterIp), 80, kProtoTcp, 0};
  web1.ready = false;
  node.Reload(m);
  const EndpointSet* e = &node.directory().Endpoints(node.directory().Lookup(key));
  ASSERT_EQ(e->all_count, 1u);
  EXPECT_EQ(e->endpoints()[0].ip, Ip(Example::kWeb2));
  web2.ready = false;
  web2.serving = true;
  web2.terminating = true;
  web1.serving = false;
  node.Reload(m);
  e = &node.directory().Endpoints(node.directory().Lookup(key));
  ASSERT_EQ(e->all_count, 1u);
  EXPECT_EQ(e->endpoints()[0].ip, Ip(Example::kWeb2));
}

TEST(TablesTest, DuplicateServiceAddressIsRejectedWithBothNames) {
  ClusterModel m = Node228Model();
  NodeHarness node(m);
  ServiceSpec dup = m.services[1];
  dup.name = "web-copy";
  m.services.push_back(dup);
  const absl::Status s = node.TryReload(m);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("default/web:http"), std::string::npos) << s;
  EXPECT_NE(s.message().find("default/web-copy:http"), std::string::npos) << s;
}

TEST(TablesTest, SubnetMapFindsTheLeaseHolderByLongestPrefix) {
  NodeHarness node(Node228Model());
  const TableSet* t = &node.tables();
  const OverlayTable& o = *t->overlay;
  const uint32_t p = o.PeerForAddress(Ip(Example::kSshPod));
  ASSERT_NE(p, OverlayTable::kNoPeer);
  EXPECT_EQ(o.peer(p).public_ip, Ip(Example::kNode227));
  EXPECT_EQ(o.peer(p).vtep_mac, Mac("0e:00:00:00:00:e3"));
  EXPECT_TRUE(o.peer(o.PeerForAddress(Ip("10.244.26.7"))).local);
  EXPECT_EQ(o.PeerForAddress(Ip("10.244.99.1")), OverlayTable::kNoPeer);
  EXPECT_EQ(o.PeerForPublicIp(Ip(Example::kNode226)), o.PeerForAddress(Ip("10.244.24.1")));
  EXPECT_EQ(o.PeerForPublicIp(Ip("10.10.100.99")), OverlayTable::kNoPeer);
  const NodeView& n = t->node;
  EXPECT_EQ(n.vxlan_ip, Ip("10.244.26.0"));
  EXPECT_EQ(n.pods_gateway_ip, Ip("10.244.26.1"));
  EXPECT_EQ(n.vxlan_port, 8472);
}

}  // namespace
}  // namespace sluice::testing
