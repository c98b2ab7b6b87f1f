// Service table and flannel subnet map (LPM), as built by the control side
// from the example node's model. The neighbour table has its own test.
#include "control/table_builder.h"
#include "gtest/gtest.h"
#include "tests/fixtures/node_harness.h"

namespace sluice::testing {
namespace {

TEST(TablesTest, ServiceTableHoldsClusterIpAndNodePortEntries) {
  auto t = BuildTableSet(Node228Model(), 1);
  ASSERT_TRUE(t.ok()) << t.status();
  const ServiceTable& s = *(*t)->services;
  const ServiceEntry* cip = s.Lookup({Ip(Example::kSshClusterIp), 22, kProtoTcp, 0});
  ASSERT_NE(cip, nullptr);
  EXPECT_EQ(cip->kind, ServiceEntryKind::kClusterIp);
  EXPECT_EQ(cip->endpoints_count, 1);
  EXPECT_EQ(s.endpoint(cip->endpoints_begin).ip, Ip(Example::kSshPod));
  EXPECT_EQ(s.endpoint(cip->endpoints_begin).port, 22);
  EXPECT_EQ(cip->local_count, 0);  // the pod runs on node-227
  const ServiceEntry* np = s.Lookup({0, Example::kNodePort, kProtoTcp, 0});
  ASSERT_NE(np, nullptr);
  EXPECT_EQ(np->kind, ServiceEntryKind::kNodePort);
  EXPECT_TRUE(np->masquerade_external);
  EXPECT_EQ(s.name(np->name_index), "ai/tzp-pytorch-2:ssh");
  EXPECT_EQ(s.Lookup({0, Example::kNodePort, kProtoUdp, 0}), nullptr);
  const ServiceEntry* web = s.Lookup({Ip(Example::kWebClusterIp), 80, kProtoTcp, 0});
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->endpoints_count, 2);
  EXPECT_EQ(web->local_count, 1);
  EXPECT_EQ(s.endpoint(web->local_begin).ip, Ip(Example::kWeb1));
}

TEST(TablesTest, NotReadyEndpointsAreSkippedAndTerminatingOnesAreTheFallback) {
  ClusterModel m = Node228Model();
  EndpointSpec& web1 = m.endpoint_slices[1].endpoints[0];
  EndpointSpec& web2 = m.endpoint_slices[1].endpoints[1];
  web1.ready = false;
  auto t = BuildTableSet(m, 1);
  ASSERT_TRUE(t.ok());
  const ServiceEntry* e = (*t)->services->Lookup({Ip(Example::kWebClusterIp), 80, kProtoTcp, 0});
  ASSERT_EQ(e->endpoints_count, 1);
  EXPECT_EQ((*t)->services->endpoint(e->endpoints_begin).ip, Ip(Example::kWeb2));
  web2.ready = false;
  web2.serving = true;
  web2.terminating = true;
  web1.serving = false;
  t = BuildTableSet(m, 2);
  e = (*t)->services->Lookup({Ip(Example::kWebClusterIp), 80, kProtoTcp, 0});
  ASSERT_EQ(e->endpoints_count, 1);
  EXPECT_EQ((*t)->services->endpoint(e->endpoints_begin).ip, Ip(Example::kWeb2));
}

TEST(TablesTest, DuplicateServiceAddressIsRejectedWithBothNames) {
  ClusterModel m = Node228Model();
  ServiceSpec dup = m.services[1];
  dup.name = "web-copy";
  m.services.push_back(dup);
  auto t = BuildTableSet(m, 1);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("default/web:http"), std::string::npos);
  EXPECT_NE(t.status().message().find("default/web-copy:http"), std::string::npos);
}

TEST(TablesTest, SubnetMapFindsTheLeaseHolderByLongestPrefix) {
  auto t = BuildTableSet(Node228Model(), 1);
  ASSERT_TRUE(t.ok());
  const OverlayTable& o = *(*t)->overlay;
  const uint32_t p = o.PeerForAddress(Ip(Example::kSshPod));
  ASSERT_NE(p, OverlayTable::kNoPeer);
  EXPECT_EQ(o.peer(p).public_ip, Ip(Example::kNode227));
  EXPECT_EQ(o.peer(p).vtep_mac, Mac("0e:00:00:00:00:e3"));
  EXPECT_TRUE(o.peer(o.PeerForAddress(Ip("10.244.26.7"))).local);
  EXPECT_EQ(o.PeerForAddress(Ip("10.244.99.1")), OverlayTable::kNoPeer);
  EXPECT_EQ(o.PeerForPublicIp(Ip(Example::kNode226)), o.PeerForAddress(Ip("10.244.24.1")));
  EXPECT_EQ(o.PeerForPublicIp(Ip("10.10.100.99")), OverlayTable::kNoPeer);
  const NodeView& n = (*t)->node;
  EXPECT_EQ(n.vxlan_ip, Ip("10.244.26.0"));
  EXPECT_EQ(n.pods_gateway_ip, Ip("10.244.26.1"));
  EXPECT_EQ(n.vxlan_port, 8472);
}

}  // namespace
}  // namespace sluice::testing
