// Kubernetes policy against the rules it mirrors (kube-proxy's iptables
// chains and flannel's FLANNEL-POSTRTG), on node-228's view of the example
// cluster: cluster network 10.244.0.0/16, this node's pods 10.244.26.0/24.
#include "dataplane/policy/kube_policy.h"

#include "gtest/gtest.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

NodeView Node228() {
  NodeView n;
  n.node_ip = Ip("10.10.100.228");
  n.cluster_net = Ip("10.244.0.0");
  n.cluster_mask = PrefixMask(16);
  n.pod_net = Ip("10.244.26.0");
  n.pod_mask = PrefixMask(24);
  n.vxlan_ip = Ip("10.244.26.0");
  n.pods_gateway_ip = Ip("10.244.26.1");
  return n;
}

// A set of 3 endpoints, 1 of them local (its header is all the policy reads).
EndpointSet ThreeEndpointsOneLocal(uint8_t flags) {
  EndpointSet e;
  e.all_count = 3;
  e.local_count = 1;
  e.flags = flags;
  return e;
}

TEST(KubePolicyTest, ClusterIpMarksOnlyOffClusterSources) {
  const NodeView n = Node228();
  const ServiceEntryKind cip = ServiceEntryKind::kClusterIp;
  EndpointSet e = ThreeEndpointsOneLocal(EndpointSet::kMasqueradeExternal);
  // -A KUBE-SVC-... -d clusterIP ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ
  EXPECT_EQ(ChooseEndpoints(n, e, cip, Ip("10.244.25.3")).masquerade, MasqueradeReason::kNone);
  EXPECT_EQ(ChooseEndpoints(n, e, cip, Ip("172.100.0.6")).masquerade,
            MasqueradeReason::kOffClusterToClusterIp);
  EXPECT_EQ(ChooseEndpoints(n, e, cip, Ip("10.244.25.3")).begin, 0u);
  EXPECT_EQ(ChooseEndpoints(n, e, cip, Ip("10.244.25.3")).count, 3u);
  e.flags |= EndpointSet::kInternalLocalOnly;  // internalTrafficPolicy Local
  const EndpointChoice c = ChooseEndpoints(n, e, cip, Ip("10.244.25.3"));
  EXPECT_EQ(c.begin, 3u);  // the local subset follows the cluster-wide one
  EXPECT_EQ(c.count, 1u);
  EXPECT_EQ(c.set, EndpointSubset::kLocalInternal);
}

TEST(KubePolicyTest, ExternalTrafficPolicies) {
  const NodeView n = Node228();
  for (ServiceEntryKind k : {ServiceEntryKind::kNodePort, ServiceEntryKind::kExternalIp,
                             ServiceEntryKind::kLoadBalancerIp}) {
    EndpointSet e = ThreeEndpointsOneLocal(EndpointSet::kMasqueradeExternal);
    // Cluster: KUBE-EXT-... -j KUBE-MARK-MASQ, for every source.
    EXPECT_EQ(ChooseEndpoints(n, e, k, Ip("172.100.0.6")).masquerade,
              MasqueradeReason::kExternalPolicyCluster);
    EXPECT_EQ(ChooseEndpoints(n, e, k, Ip("10.244.25.3")).masquerade,
              MasqueradeReason::kExternalPolicyCluster);
    // Local: external clients keep their address and get local endpoints;
    // pod traffic ("-s clusterCIDR -j KUBE-SVC") gets all, unmarked.
    e.flags = EndpointSet::kExternalLocalOnly;
    EndpointChoice c = ChooseEndpoints(n, e, k, Ip("172.100.0.6"));
    EXPECT_EQ(c.masquerade, MasqueradeReason::kNone);
    EXPECT_EQ(c.begin, 3u);
    EXPECT_EQ(c.count, 1u);
    EXPECT_EQ(c.set, EndpointSubset::kLocalExternal);
    c = ChooseEndpoints(n, e, k, Ip("10.244.25.3"));
    EXPECT_EQ(c.masquerade, MasqueradeReason::kNone);
    EXPECT_EQ(c.count, 3u);
    // The node itself (-m addrtype --src-type LOCAL): all endpoints, marked.
    c = ChooseEndpoints(n, e, k, Ip("10.10.100.228"));
    EXPECT_EQ(c.masquerade, MasqueradeReason::kNodeToExternalLocal);
    EXPECT_EQ(c.count, 3u);
    EXPECT_EQ(c.set, EndpointSubset::kAll);
  }
  EXPECT_TRUE(IsHairpin(Ip("10.244.26.20"), Ip("10.244.26.20")));  // KUBE-SEP -s endpoint
  EXPECT_FALSE(IsHairpin(Ip("10.244.26.21"), Ip("10.244.26.20")));
}

TEST(KubePolicyTest, FlannelPostroutingRulesInOrder) {
  const NodeView n = Node228();
  const Egress out = Egress::kUplink;
  // RETURN -s podCIDR -d clusterCIDR
  EXPECT_FALSE(FlannelMasquerades(n, Ip("10.244.26.5"), Ip("10.244.25.5"), Egress::kVxlan));
  // RETURN -s clusterCIDR -d podCIDR; RETURN ! -s clusterCIDR -d podCIDR
  EXPECT_FALSE(FlannelMasquerades(n, Ip("10.244.25.5"), Ip("10.244.26.5"), Egress::kPods));
  EXPECT_FALSE(FlannelMasquerades(n, Ip("172.100.0.6"), Ip("10.244.26.5"), Egress::kPods));
  // MASQUERADE -s clusterCIDR ! -d 224.0.0.0/4
  EXPECT_TRUE(FlannelMasquerades(n, Ip("10.244.26.5"), Ip("93.184.216.34"), out));
  EXPECT_FALSE(FlannelMasquerades(n, Ip("10.244.26.5"), Ip("224.0.0.251"), out));
  // MASQUERADE ! -s clusterCIDR -d clusterCIDR
  EXPECT_TRUE(FlannelMasquerades(n, Ip("172.100.0.6"), Ip("10.244.25.5"), Egress::kVxlan));
  EXPECT_FALSE(FlannelMasquerades(n, Ip("172.100.0.6"), Ip("93.184.216.34"), out));
  // POSTROUTING never sees what the node itself receives.
  EXPECT_FALSE(FlannelMasquerades(n, Ip("10.244.26.5"), Ip("10.10.100.228"), Egress::kHost));
  // An outside client reaching a pod directly is tracked so that the pod's
  // replies (-s podCIDR ! -d clusterCIDR) are not masqueraded.
  EXPECT_TRUE(TrackedWithoutNat(n, Ip("172.100.0.6"), Ip("10.244.26.5"), Egress::kPods));
  EXPECT_FALSE(TrackedWithoutNat(n, Ip("10.244.26.5"), Ip("10.244.25.5"), Egress::kVxlan));
}

TEST(KubePolicyTest, MasqueradeUsesTheEgressDevicesAddress) {
  const NodeView n = Node228();
  EXPECT_EQ(MasqueradeAddress(n, Egress::kVxlan), Ip("10.244.26.0"));  // flannel.1
  EXPECT_EQ(MasqueradeAddress(n, Egress::kPods), Ip("10.244.26.1"));   // cni0
  EXPECT_EQ(MasqueradeAddress(n, Egress::kUplink), Ip("10.10.100.228"));
}

TEST(KubePolicyTest, MasqueradePortsKeepTheClassAndAvoidTheEphemeralRange) {
  NodeView n = Node228();
  PortSpan s[2];
  ASSERT_EQ(MasqueradePortSpans(n, kProtoTcp, 40000, s), 2);
  EXPECT_EQ(s[0].lo, 1024u);
  EXPECT_EQ(s[0].hi, 32767u);
  EXPECT_EQ(s[1].lo, 61000u);
  EXPECT_EQ(s[1].hi, 65535u);
  ASSERT_EQ(MasqueradePortSpans(n, kProtoUdp, 53, s), 1);
  EXPECT_EQ(s[0].lo, 1u);
  EXPECT_EQ(s[0].hi, 511u);
  ASSERT_EQ(MasqueradePortSpans(n, kProtoTcp, 700, s), 1);
  EXPECT_EQ(s[0].lo, 600u);
  EXPECT_EQ(s[0].hi, 1023u);
  // ICMP identifiers take the high class whatever their value.
  ASSERT_EQ(MasqueradePortSpans(n, kProtoIcmp, 7, s), 2);
  EXPECT_EQ(s[0].lo, 1024u);
  // A kernel whose ephemeral range covers the top of the class.
  n.local_port_lo = 10000;
  n.local_port_hi = 65535;
  ASSERT_EQ(MasqueradePortSpans(n, kProtoTcp, 40000, s), 1);
  EXPECT_EQ(s[0].lo, 1024u);
  EXPECT_EQ(s[0].hi, 9999u);
}

TEST(KubePolicyTest, MartianDestinations) {
  NodeView n = Node228();
  n.uplink_net_mask = PrefixMask(24);
  for (const char* ip : {"0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.1", "239.255.255.250",
                         "240.0.0.1", "254.1.2.3", "255.255.255.255", "10.10.100.255", "10.244.26.255", "10.244.255.255"})
    EXPECT_TRUE(IsMartianDestination(n, Ip(ip))) << ip;
  for (const char* ip :
       {"10.10.100.1", "10.244.26.20", "10.244.25.255", "93.184.216.34", "10.10.100.228"})
    EXPECT_FALSE(IsMartianDestination(n, Ip(ip))) << ip;
}

}  // namespace
}  // namespace sluice::testing
