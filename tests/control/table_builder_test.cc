// control/table_builder.h: a reload is all or nothing (generation, static
// neighbours and Services together), and counts or values the tables cannot
// hold are rejected with the object and field named, never truncated.
#include "control/table_builder.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/node_harness.h"

namespace sluice::testing {
namespace {

using ::testing::HasSubstr;

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tb_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
    auto publisher = TablePublisher::Create(qsbr_);
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = *std::move(publisher);
    NeighborTable::Config nc;
    nc.qsbr = qsbr_;
    nc.static_capacity = 4;  // node-228's model has exactly 4
    auto t = NeighborTable::Create(nc);
    ASSERT_TRUE(t.ok()) << t.status();
    neighbors_ = *std::move(t);
    ServiceDirectory::Config sc;
    sc.qsbr = qsbr_;
    sc.service_ports = 64;
    sc.keys = 128;
    auto d = ServiceDirectory::Create(sc);
    ASSERT_TRUE(d.ok()) << d.status();
    directory_ = *std::move(d);
    ServiceProgrammer::Config pc;
    pc.node_name = "node-228";
    services_ =
        std::make_unique<ServiceProgrammer>(pc, directory_.get(), nullptr, publisher_.get());
    ASSERT_TRUE(Reload(Node228Model()).ok());
  }
  void TearDown() override {
    services_.reset();
    directory_.reset();
    publisher_.reset();
    neighbors_.reset();
    rte_free(qsbr_);
  }
  absl::Status Reload(const ClusterModel& m) {
    auto prepared = PrepareReload(m, *publisher_, *neighbors_, *services_);
    if (!prepared.ok()) return prepared.status();
    return CommitReload(*std::move(prepared), *neighbors_, *publisher_, *services_);
  }
  // The endpoint set behind a key, or null.
  const EndpointSet* EndpointsOf(const ServiceKey& key) {
    const ServiceRef r = directory_->Lookup(key);
    return r == kNoService ? nullptr : &directory_->Endpoints(r);
  }
  bool Has(PortRole port, const char* ip, MacAddress* mac = nullptr) {
    MacAddress m;
    return neighbors_->Lookup(port, Ip(ip), mac != nullptr ? mac : &m);
  }

  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<TablePublisher> publisher_;
  std::unique_ptr<NeighborTable> neighbors_;
  std::unique_ptr<ServiceDirectory> directory_;
  std::unique_ptr<ServiceProgrammer> services_;
};

TEST_F(ReloadTest, AModelWhoseStaticNeighboursDoNotFitChangesNothing) {
  const TableSet* before = publisher_->Current();
  ClusterModel m = Node228Model();
  m.services.pop_back();  // the tables would change too
  m.node.neighbors[0].mac = Mac("02:00:00:00:00:99");
  m.node.neighbors.push_back({PortRole::kPods, Ip(Example::kWeb2), Mac("0a:58:0a:f4:19:1e")});
  const absl::Status s = Reload(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "node: neighbors: 5 static neighbours, but the neighbour table reserves room for 4");
  EXPECT_EQ(publisher_->Current(), before);
  EXPECT_EQ(directory_->key_count(), 3u);  // ssh ClusterIP + NodePort, web
  EXPECT_EQ(services_->port_count(), 2u);
  MacAddress mac;
  ASSERT_TRUE(Has(PortRole::kUplink, Example::kGateway, &mac));
  EXPECT_EQ(mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_TRUE(Has(PortRole::kUplink, Example::kNode226));
  EXPECT_TRUE(Has(PortRole::kUplink, Example::kNode227));
  EXPECT_TRUE(Has(PortRole::kPods, Example::kWeb1));
  EXPECT_FALSE(Has(PortRole::kPods, Example::kWeb2));
}

TEST_F(ReloadTest, ATableErrorLeavesTheStaticNeighboursAsTheyWere) {
  const TableSet* before = publisher_->Current();
  ClusterModel m = Node228Model();
  m.node.neighbors.pop_back();          // would remove web-1's entry
  m.services.push_back(m.services[1]);  // but default/web's address is claimed twice
  m.services.back().name = "web-copy";
  m.endpoint_slices[0].endpoints[0].ip = Ip("10.244.24.77");  // and ssh's pod moved
  const absl::Status s = Reload(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "Service default/web-copy:http/TCP: clusterIPs[0]: 10.96.100.10:80/TCP is already "
            "Service default/web:http/TCP's");
  EXPECT_EQ(publisher_->Current(), before);
  EXPECT_TRUE(Has(PortRole::kPods, Example::kWeb1));
  // Nor did the Services change.
  const EndpointSet* ssh = EndpointsOf({Ip(Example::kSshClusterIp), 22, kProtoTcp, 0});
  ASSERT_NE(ssh, nullptr);
  ASSERT_EQ(ssh->all_count, 1u);
  EXPECT_EQ(ssh->endpoints()[0].ip, Ip(Example::kSshPod));
  EXPECT_EQ(services_->port_count(), 2u);
}

TEST_F(ReloadTest, AModelThatDropsAStaticNeighbourRemovesIt) {
  ClusterModel m = Node228Model();
  m.node.neighbors.erase(m.node.neighbors.begin() + 1);  // node-226
  m.node.neighbors[1].mac = Mac("02:00:00:00:01:e3");    // node-227 moved
  const uint64_t before = publisher_->generation();
  ASSERT_TRUE(Reload(m).ok());
  EXPECT_EQ(publisher_->Current()->generation, before + 1);
  EXPECT_FALSE(Has(PortRole::kUplink, Example::kNode226));
  MacAddress mac;
  ASSERT_TRUE(Has(PortRole::kUplink, Example::kNode227, &mac));
  EXPECT_EQ(mac, Mac("02:00:00:00:01:e3"));
  EXPECT_EQ(neighbors_->static_count(), 3u);
}

ClusterModel WithEndpoints(uint32_t total, uint32_t local) {
  ClusterModel m = Node228Model();
  ServiceSpec svc;
  svc.namespace_name = "big";
  svc.name = "many";
  svc.type = "ClusterIP";
  svc.cluster_ips = {Ip("10.96.200.1")};
  svc.ports = {{"http", L4Protocol::kTcp, 80, 0}};
  m.services.push_back(svc);
  EndpointSliceSpec slice;
  slice.namespace_name = "big";
  slice.name = "many-1";
  slice.service_name = "many";
  slice.ports = {{"http", L4Protocol::kTcp, 8080}};
  for (uint32_t i = 0; i < total; ++i)
    slice.endpoints.push_back(
        {Ip("10.128.0.0") + i, true, true, false, i < local ? "node-228" : "node-227"});
  m.endpoint_slices.push_back(slice);
  return m;
}

TEST_F(ReloadTest, AServicePortWithMoreEndpointsThanASetHoldsIsRejected) {
  ASSERT_TRUE(Reload(WithEndpoints(65535, 0)).ok());
  const EndpointSet* e = EndpointsOf({Ip("10.96.200.1"), 80, kProtoTcp, 0});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->all_count, 65535u);

  const absl::Status s = Reload(WithEndpoints(65536, 0));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "Service big/many:http/TCP: endpoints: 65536 endpoints, more than the 65535 a Service "
            "port holds");
  EXPECT_EQ(EndpointsOf({Ip("10.96.200.1"), 80, kProtoTcp, 0})->all_count, 65535u);  // unchanged
}

// Workers keep a peer's slot in 14 bits (a flow's cached egress, their
// prebuilt VXLAN headers), twice the leases the subnet map holds: a bigger
// map is refused, never indexed past.
ClusterModel WithExtraLeases(uint32_t extra) {
  ClusterModel m = Node228Model();
  for (uint32_t i = 0; i < extra; ++i) {
    FlannelLease l = m.leases[0];
    l.subnet = {Ip("10.200.0.0") + (i << 8), 24};  // outside the others, /24 each
    l.public_ip = Ip("172.16.0.0") + i + 1;
    m.leases.push_back(l);
  }
  return m;
}

TEST(TableBuilderTest, MoreLeasesThanWorkersCanIndexAreRejected) {
  const uint32_t have = static_cast<uint32_t>(Node228Model().leases.size());
  ClusterModel fits = WithExtraLeases(OverlayTable::kMaxLeases - have);
  fits.network.network = {Ip("10.0.0.0"), 8};
  auto ok = BuildNetworkSpec(fits);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->peers.size(), OverlayTable::kMaxLeases);
  // The subnet map takes them all, and then every one of them changed at
  // once (each change takes a new slot while the old one is retired).
  auto publisher = TablePublisher::Create(nullptr);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ASSERT_TRUE((*publisher)->Validate(*ok).ok());
  (*publisher)->Publish(*ok);
  EXPECT_EQ((*publisher)->last_change().added, OverlayTable::kMaxLeases);
  for (VtepPeer& p : ok->peers) p.vtep_mac[5] ^= 1;
  (*publisher)->Publish(*ok);
  EXPECT_EQ((*publisher)->last_change().changed, OverlayTable::kMaxLeases);
  const OverlayTable& map = *(*publisher)->Current()->overlay;
  EXPECT_EQ(map.size(), OverlayTable::kMaxLeases);
  const VtepPeer& last = ok->peers.back();
  const uint32_t slot = map.PeerForAddress(last.subnet + 1);
  ASSERT_NE(slot, OverlayTable::kNoPeer);
  EXPECT_EQ(map.peer(slot).vtep_mac, last.vtep_mac);
  EXPECT_EQ(map.PeerForPublicIp(last.public_ip), slot);
  ClusterModel over = WithExtraLeases(OverlayTable::kMaxLeases - have + 1);
  over.network.network = {Ip("10.0.0.0"), 8};
  auto t = BuildNetworkSpec(over);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(),
            absl::StrFormat("etcd: %u flannel leases, but the subnet map indexes at most %u",
                            OverlayTable::kMaxLeases + 1, OverlayTable::kMaxLeases));
}

TEST_F(ReloadTest, TooManyNodeLocalEndpointsAreRejectedToo) {
  // Ready endpoints elsewhere, 65536 serving-terminating ones here: the
  // cluster-wide set is small, the node-local fallback set is not.
  ClusterModel m = WithEndpoints(65536 + 10, 65536);
  for (EndpointSpec& e : m.endpoint_slices.back().endpoints) {
    if (e.node_name != "node-228") continue;
    e.ready = false;
    e.terminating = true;
  }
  const absl::Status s = Reload(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("Service big/many:http/TCP: endpoints: 65536 endpoints on "
                                     "this node, more than the 65535"));
}

TEST(TableBuilderTest, ValuesBeyondTheTablesFieldsAreRejectedNotTruncated) {
  ClusterModel m = Node228Model();
  m.network.vni = 1u << 24;
  EXPECT_EQ(BuildNetworkSpec(m).status().message(),
            "etcd key /coreos.com/network/config: Backend.VNI: 16777216 does not fit VXLAN's 24 "
            "bits (at most 16777215)");
  m = Node228Model();
  m.leases[0].vni = 1u << 24;
  EXPECT_EQ(BuildNetworkSpec(m).status().message(),
            "etcd key /coreos.com/network/subnets/10.244.24.0-24: BackendData.VNI: 16777216 does "
            "not fit VXLAN's 24 bits (at most 16777215)");
  m = Node228Model();
  m.node.uplink_prefix_length = 33;
  EXPECT_EQ(BuildNetworkSpec(m).status().message(),
            "node: uplinkPrefixLength: must be 0..32, got 33");
  m = Node228Model();
  m.leases[1].subnet.length = 40;
  EXPECT_EQ(BuildNetworkSpec(m).status().message(),
            "etcd key /coreos.com/network/subnets/10.244.25.0-40: prefix length must be 0..32, "
            "got 40");
}

}  // namespace
}  // namespace sluice::testing
