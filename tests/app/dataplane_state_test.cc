// The dataplane's side of the protocol with its tables replaced by
// recorders: what is published when, what is rejected and why, what a full
// sync prunes.
#include "app/dataplane_state.h"

#include <variant>

#include "control/cluster_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

uint32_t Ip(const char* s) { return *ParseIpv4(s); }
MacAddress Mac(const char* s) { return *ParseMac(s); }

class FakeServices : public ServiceSink {
 public:
  absl::Status Upsert(const api::ServicePort& p) override {
    if (p.port == 0) return absl::InvalidArgumentError("Service x: port: must be 1..65535");
    ports[api::FormatServicePortKey(p.key)] = p.key;
    return absl::OkStatus();
  }
  absl::Status Replace(const api::EndpointSetReplace&) override { return absl::OkStatus(); }
  absl::Status Delete(const api::ServicePortKey& k) override {
    deleted.push_back(api::FormatServicePortKey(k));
    ports.erase(api::FormatServicePortKey(k));
    return absl::OkStatus();
  }
  std::vector<api::ServicePortKey> Keys() const override {
    std::vector<api::ServicePortKey> out;
    for (const auto& [k, v] : ports) out.push_back(v);
    return out;
  }
  void SetNodeName(const std::string& n) override { node_name = n; }
  std::map<std::string, api::ServicePortKey> ports;
  std::vector<std::string> deleted;
  std::string node_name;
};

api::NodeSettings Node228() {
  api::NodeSettings s;
  s.node.name = "node-228";
  s.node.node_ip = Ip("10.10.100.228");
  s.node.gateway_ip = Ip("10.10.100.1");
  s.node.uplink_mac = Mac("02:00:0a:0a:64:e4");
  s.node.pods_mac = Mac("02:00:0a:f4:1a:01");
  s.network.network = {Ip("10.244.0.0"), 16};
  return s;
}

FlannelLease Lease(const char* subnet, const char* public_ip, const char* mac) {
  FlannelLease l;
  l.subnet = {Ip(subnet), 24};
  l.public_ip = Ip(public_ip);
  l.backend_type = "vxlan";
  l.vtep_mac = Mac(mac);
  return l;
}

api::ServicePort Port(const char* name, uint16_t port) {
  api::ServicePort p;
  p.key = {"default", name, "", L4Protocol::kTcp};
  p.type = "ClusterIP";
  p.port = port;
  p.cluster_ips = {Ip("10.96.0.10")};
  return p;
}

class DataplaneStateTest : public ::testing::Test {
 protected:
  DataplaneStateTest()
      : state_({[this](const ClusterModel& m) -> absl::StatusOr<uint64_t> {
                  if (fail_publish_) return absl::ResourceExhaustedError("no memory");
                  published_.push_back(m);
                  return ++generation_;
                },
                [this](const std::vector<NeighborEntry>& n) {
                  neighbors_ = n;
                  return absl::OkStatus();
                },
                &services_, [this] { return generation_; }},
               0x1234) {}

  api::Message Send(const api::Message& m, uint64_t conn = 1) { return state_.Apply(conn, m); }
  static bool IsOk(const api::Message& m) { return std::holds_alternative<api::Ok>(m); }
  static api::Error Err(const api::Message& m) {
    const auto* e = std::get_if<api::Error>(&m);
    return e == nullptr ? api::Error{"(not an error)", "", ""} : *e;
  }
  std::vector<uint32_t> PublishedLeaseIps() const {
    std::vector<uint32_t> ips;
    for (const FlannelLease& l : published_.back().leases) ips.push_back(l.public_ip);
    return ips;
  }
  // A full sync of node-228 with two leases and one Service port.
  void FullSync(uint64_t epoch) {
    ASSERT_TRUE(IsOk(Send(api::SyncBegin{epoch})));
    ASSERT_TRUE(IsOk(Send(Node228())));
    ASSERT_TRUE(IsOk(Send(api::LeaseUpsert{Lease("10.244.25.0", "10.10.100.227", "0e:00:00:00:00:e3")})));
    ASSERT_TRUE(IsOk(Send(api::LeaseUpsert{Lease("10.244.26.0", "10.10.100.228", "0e:00:00:00:00:e4")})));
    ASSERT_TRUE(IsOk(Send(api::ServicePortUpsert{Port("dns", 53)})));
    ASSERT_TRUE(IsOk(Send(api::SyncEnd{epoch})));
  }

  FakeServices services_;
  std::vector<ClusterModel> published_;
  std::vector<NeighborEntry> neighbors_;
  uint64_t generation_ = 0;
  bool fail_publish_ = false;
  DataplaneState state_;
};

TEST_F(DataplaneStateTest, TablesArePublishedOnceNodeNetworkAndOwnLeaseAreKnown) {
  ASSERT_TRUE(IsOk(Send(api::SyncBegin{5})));
  ASSERT_TRUE(IsOk(Send(Node228())));
  ASSERT_TRUE(IsOk(Send(api::LeaseUpsert{Lease("10.244.25.0", "10.10.100.227", "0e:00:00:00:00:e3")})));
  EXPECT_TRUE(published_.empty());  // this node's own lease is still missing
  EXPECT_FALSE(state_.network_complete());
  const api::Message r =
      Send(api::LeaseUpsert{Lease("10.244.26.0", "10.10.100.228", "0e:00:00:00:00:e4")});
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(std::get<api::Ok>(r).generation, 1u);
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_THAT(PublishedLeaseIps(), ElementsAre(Ip("10.10.100.227"), Ip("10.10.100.228")));
  EXPECT_TRUE(published_.back().services.empty());
  EXPECT_EQ(services_.node_name, "node-228");
  ASSERT_TRUE(IsOk(Send(api::SyncEnd{5})));
  EXPECT_EQ(state_.last_epoch(), 5u);
  EXPECT_EQ(state_.Hello(true).last_epoch, 5u);
  EXPECT_EQ(state_.Hello(true).instance, 0x1234u);
}

TEST_F(DataplaneStateTest, ABadLeaseIsRejectedByFieldAndChangesNothing) {
  FullSync(1);
  const size_t before = published_.size();
  FlannelLease overlapping = Lease("10.244.25.0", "10.10.100.229", "0e:00:00:00:00:e9");
  overlapping.subnet.length = 25;
  api::Error e = Err(Send(api::LeaseUpsert{overlapping}));
  EXPECT_EQ(e.object, "lease 10.244.25.0/25");
  EXPECT_EQ(e.field, "subnet");
  EXPECT_THAT(e.message, HasSubstr("overlaps the lease 10.244.25.0/24"));
  FlannelLease outside = Lease("10.245.1.0", "10.10.100.229", "0e:00:00:00:00:e9");
  EXPECT_EQ(Err(Send(api::LeaseUpsert{outside})).field, "subnet");
  FlannelLease multicast_mac = Lease("10.244.30.0", "10.10.100.229", "01:00:5e:00:00:01");
  EXPECT_EQ(Err(Send(api::LeaseUpsert{multicast_mac})).field, "BackendData.VtepMAC");
  FlannelLease same_ip = Lease("10.244.31.0", "10.10.100.227", "0e:00:00:00:00:e9");
  EXPECT_EQ(Err(Send(api::LeaseUpsert{same_ip})).field, "PublicIP");
  EXPECT_EQ(published_.size(), before);
  EXPECT_EQ(state_.lease_count(), 2u);
}

TEST_F(DataplaneStateTest, BadNodeSettingsAreRejectedByField) {
  api::NodeSettings s = Node228();
  s.node.uplink_mac = Mac("01:00:5e:00:00:01");
  EXPECT_EQ(Err(Send(s)).field, "node.ports.uplink.mac");
  s = Node228();
  s.node.node_ip = Ip("224.0.0.1");
  EXPECT_EQ(Err(Send(s)).field, "node.nodeIP");
  s = Node228();
  s.network.subnet_len = 17;
  EXPECT_EQ(Err(Send(s)).field, "network.SubnetLen");
  s = Node228();
  s.network.port = 0;
  EXPECT_EQ(Err(Send(s)).field, "network.Backend.Port");
  EXPECT_TRUE(published_.empty());
}

TEST_F(DataplaneStateTest, AFullSyncPrunesWhatItDidNotNameButKeepsRejectedObjects) {
  FullSync(1);
  ASSERT_TRUE(IsOk(Send(api::LeaseUpsert{Lease("10.244.24.0", "10.10.100.226", "0e:00:00:00:00:e2")})));
  ASSERT_TRUE(IsOk(Send(api::ServicePortUpsert{Port("web", 80)})));
  ASSERT_TRUE(IsOk(Send(api::ServicePortUpsert{Port("kept", 81)})));
  // The next sync names only node-228's own lease, dns, and a broken "kept".
  ASSERT_TRUE(IsOk(Send(api::SyncBegin{2})));
  ASSERT_TRUE(IsOk(Send(Node228())));
  ASSERT_TRUE(IsOk(Send(api::LeaseUpsert{Lease("10.244.26.0", "10.10.100.228", "0e:00:00:00:00:e4")})));
  ASSERT_TRUE(IsOk(Send(api::ServicePortUpsert{Port("dns", 53)})));
  EXPECT_EQ(Err(Send(api::ServicePortUpsert{Port("kept", 0)})).object, "Service default/kept/TCP");
  ASSERT_TRUE(IsOk(Send(api::SyncEnd{2})));
  EXPECT_THAT(services_.deleted, ElementsAre("default/web/TCP"));
  EXPECT_EQ(services_.ports.count("default/kept/TCP"), 1u);
  EXPECT_THAT(PublishedLeaseIps(), ElementsAre(Ip("10.10.100.228")));
}

TEST_F(DataplaneStateTest, AnUnfinishedSyncPrunesNothing) {
  FullSync(1);
  ASSERT_TRUE(IsOk(Send(api::SyncBegin{2}, /*conn=*/7)));
  // The writer on connection 7 dies; a new one starts over.
  ASSERT_TRUE(IsOk(Send(api::SyncBegin{3}, /*conn=*/8)));
  EXPECT_EQ(Err(Send(api::SyncEnd{2}, 7)).object, "SyncEnd");
  EXPECT_TRUE(services_.deleted.empty());
  EXPECT_EQ(state_.lease_count(), 2u);
  EXPECT_EQ(state_.last_epoch(), 1u);
}

TEST_F(DataplaneStateTest, EpochsOnlyMoveForward) {
  FullSync(10);
  EXPECT_EQ(Err(Send(api::SyncBegin{10})).field, "epoch");
  EXPECT_EQ(Err(Send(api::SyncBegin{3})).field, "epoch");
}

TEST_F(DataplaneStateTest, ThisNodesOwnLeaseCannotBeRemoved) {
  FullSync(1);
  EXPECT_THAT(Err(Send(api::LeaseDelete{{Ip("10.244.26.0"), 24}})).message,
              HasSubstr("this node's own lease"));
  ASSERT_TRUE(IsOk(Send(api::LeaseDelete{{Ip("10.244.25.0"), 24}})));
  EXPECT_THAT(PublishedLeaseIps(), ElementsAre(Ip("10.10.100.228")));
  EXPECT_TRUE(IsOk(Send(api::LeaseDelete{{Ip("10.244.99.0"), 24}})));  // unknown: nothing to do
}

TEST_F(DataplaneStateTest, ATableBuildFailureRejectsTheMessageAndKeepsTheLastGoodState) {
  FullSync(1);
  fail_publish_ = true;
  const api::Error e =
      Err(Send(api::LeaseUpsert{Lease("10.244.24.0", "10.10.100.226", "0e:00:00:00:00:e2")}));
  EXPECT_THAT(e.message, HasSubstr("no memory"));
  EXPECT_EQ(state_.lease_count(), 2u);
}

TEST_F(DataplaneStateTest, NeighboursAreValidatedBeforeReplacing) {
  NeighborEntry n{PortRole::kUplink, Ip("10.10.100.227"), Mac("02:00:0a:0a:64:e3")};
  EXPECT_EQ(Err(Send(api::NeighborsReplace{{n, n}})).field, "neighbors[1]");
  EXPECT_TRUE(neighbors_.empty());
  ASSERT_TRUE(IsOk(Send(api::NeighborsReplace{{n}})));
  EXPECT_EQ(neighbors_.size(), 1u);
}

}  // namespace
}  // namespace sluice
