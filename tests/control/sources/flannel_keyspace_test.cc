#include "control/sources/flannel_keyspace.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

constexpr char kConfig[] = R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":3}})";
constexpr char kLease1[] = "/coreos.com/network/subnets/10.244.1.0-24";
constexpr char kLease2[] = "/coreos.com/network/subnets/10.244.2.0-24";

std::string Lease(const std::string& mac, const std::string& vni = "") {
  return absl::StrCat(R"({"PublicIP":"10.10.100.227","BackendType":"vxlan","BackendData":{)",
                      vni.empty() ? "" : absl::StrCat(R"("VNI":)", vni, ","), R"("VtepMAC":")", mac,
                      R"("}})");
}

EtcdKv Kv(const std::string& key, const std::string& value, int64_t revision = 0) {
  return EtcdKv{key, value, revision};
}

EtcdWatchEvent PutEvent(const std::string& key, const std::string& value, int64_t revision) {
  return EtcdWatchEvent{false, Kv(key, value, revision)};
}

EtcdWatchEvent DeleteEvent(const std::string& key, int64_t revision) {
  return EtcdWatchEvent{true, Kv(key, "", revision)};
}

class FlannelKeyspaceTest : public ::testing::Test {
 protected:
  void Relist(int64_t revision, const std::vector<EtcdKv>& kvs) {
    keyspace_.Relist(revision, kvs, &events_, &problems_);
  }
  void Apply(const EtcdWatchEvent& change) { keyspace_.Apply(change, &events_, &problems_); }

  FlannelKeyspace keyspace_{"/coreos.com/network/"};
  std::vector<FlannelEvent> events_;
  std::vector<absl::Status> problems_;
};

TEST_F(FlannelKeyspaceTest, KeysComeFromThePrefix) {
  EXPECT_EQ(keyspace_.range_key(), "/coreos.com/network/");
  EXPECT_EQ(keyspace_.config_key(), "/coreos.com/network/config");
  EXPECT_EQ(keyspace_.subnets_prefix(), "/coreos.com/network/subnets/");
}

TEST_F(FlannelKeyspaceTest, RelistGivesOneSnapshotOfTheGoodValues) {
  Relist(9, {Kv("/coreos.com/network/config", kConfig), Kv(kLease1, Lease("5e:36:5f:2f:1c:01")),
             Kv(kLease2, Lease("01:00:00:00:00:01")), Kv("/coreos.com/network/other", "x")});
  ASSERT_EQ(events_.size(), 1u);
  const FlannelEvent& e = events_[0];
  EXPECT_EQ(e.kind, FlannelEvent::Kind::kSnapshot);
  EXPECT_EQ(e.revision, 9);
  ASSERT_TRUE(e.snapshot.network.has_value());
  EXPECT_EQ(e.snapshot.network->vni, 3u);
  ASSERT_EQ(e.snapshot.leases.size(), 1u);
  EXPECT_EQ(e.snapshot.leases[0].vni, 3u);  // the config's VNI by default
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].message(),
            "etcd key /coreos.com/network/subnets/10.244.2.0-24: BackendData.VtepMAC: must be a "
            "unicast MAC, got \"01:00:00:00:00:01\"");
}

TEST_F(FlannelKeyspaceTest, UpsertsDeletesAndRenewals) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig)});
  events_.clear();
  Apply(PutEvent(kLease1, Lease("5e:36:5f:2f:1c:01"), 2));
  Apply(PutEvent(kLease1, Lease("5e:36:5f:2f:1c:01"), 3));  // same value: nothing
  Apply(PutEvent(kLease1, Lease("5e:36:5f:2f:1c:02", "9"), 4));
  Apply(DeleteEvent(kLease1, 5));
  Apply(DeleteEvent(kLease2, 6));  // never delivered: nothing
  ASSERT_EQ(events_.size(), 3u);
  EXPECT_EQ(events_[0].kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(events_[0].revision, 2);
  EXPECT_EQ(events_[1].revision, 4);
  EXPECT_EQ(events_[1].lease.vni, 9u);
  EXPECT_EQ(FormatMac(events_[1].lease.vtep_mac), "5e:36:5f:2f:1c:02");
  EXPECT_EQ(events_[2].kind, FlannelEvent::Kind::kLeaseDelete);
  EXPECT_EQ(FormatMac(events_[2].lease.vtep_mac), "5e:36:5f:2f:1c:02");
  EXPECT_TRUE(problems_.empty());
  EXPECT_TRUE(keyspace_.Snapshot(6).leases.empty());
}

TEST_F(FlannelKeyspaceTest, ABadValueIsSkippedAndTheLastGoodOneStays) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig), Kv(kLease1, Lease("5e:36:5f:2f:1c:01"))});
  events_.clear();
  Apply(PutEvent(kLease1, R"({"PublicIP":"10.10.100.300","BackendType":"vxlan"})", 2));
  EXPECT_TRUE(events_.empty());
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].message(),
            "etcd key /coreos.com/network/subnets/10.244.1.0-24: PublicIP: malformed IPv4 "
            "address \"10.10.100.300\"");
  ASSERT_EQ(keyspace_.Snapshot(2).leases.size(), 1u);
  // Deleting the key removes the lease the consumer still holds.
  Apply(DeleteEvent(kLease1, 3));
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, FlannelEvent::Kind::kLeaseDelete);
}

TEST_F(FlannelKeyspaceTest, ALeaseKeyOutsideTheNetworkIsReported) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig),
             Kv("/coreos.com/network/subnets/10.245.1.0-24", Lease("5e:36:5f:2f:1c:01")),
             Kv("/coreos.com/network/subnets/bogus", Lease("5e:36:5f:2f:1c:01"))});
  ASSERT_EQ(problems_.size(), 2u);
  EXPECT_EQ(problems_[0].message(),
            "etcd key /coreos.com/network/subnets/10.245.1.0-24: lease subnet 10.245.1.0/24 is "
            "outside Network 10.244.0.0/16");
  EXPECT_EQ(problems_[1].message(),
            "etcd key /coreos.com/network/subnets/bogus: malformed lease key, expected "
            "/coreos.com/network/subnets/<a.b.c.d>-<prefix length>");
  EXPECT_TRUE(events_[0].snapshot.leases.empty());
}

TEST_F(FlannelKeyspaceTest, AConfigChangeReparsesEveryLease) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig), Kv(kLease1, Lease("5e:36:5f:2f:1c:01")),
             Kv(kLease2, Lease("5e:36:5f:2f:1c:02"))});
  events_.clear();
  // Same config again: nothing.
  Apply(PutEvent("/coreos.com/network/config", kConfig, 2));
  EXPECT_TRUE(events_.empty());
  // A narrower Network leaves 10.244.2.0/24 out; the default VNI changes.
  Apply(PutEvent("/coreos.com/network/config",
                 R"({"Network":"10.244.0.0/23","Backend":{"Type":"vxlan","VNI":5}})", 3));
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, FlannelEvent::Kind::kConfig);
  EXPECT_EQ(events_[0].revision, 3);
  ASSERT_EQ(events_[0].snapshot.leases.size(), 1u);
  EXPECT_EQ(events_[0].snapshot.leases[0].vni, 5u);
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_NE(std::string(problems_[0].message()).find("is outside Network 10.244.0.0/23"),
            std::string::npos);
}

TEST_F(FlannelKeyspaceTest, ABadOrDeletedConfigKeepsTheOneInUse) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig), Kv(kLease1, Lease("5e:36:5f:2f:1c:01"))});
  events_.clear();
  Apply(PutEvent("/coreos.com/network/config", R"({"Network":"10.244.0.0/16"})", 2));
  Apply(DeleteEvent("/coreos.com/network/config", 3));
  EXPECT_TRUE(events_.empty());
  ASSERT_EQ(problems_.size(), 2u);
  EXPECT_EQ(problems_[0].message(),
            "etcd key /coreos.com/network/config: Backend: missing; flannel then uses the udp "
            "backend, only vxlan is supported");
  EXPECT_EQ(problems_[1].message(),
            "etcd key /coreos.com/network/config: deleted; the config in use is kept");
  Apply(PutEvent(kLease2, Lease("5e:36:5f:2f:1c:02"), 4));
  ASSERT_EQ(events_.size(), 1u);  // still checked against the config in use
  EXPECT_EQ(events_[0].lease.vni, 3u);
}

TEST_F(FlannelKeyspaceTest, LeasesWaitForAFirstConfig) {
  Relist(1, {Kv(kLease1, Lease("5e:36:5f:2f:1c:01"))});
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_FALSE(events_[0].snapshot.network.has_value());
  EXPECT_TRUE(events_[0].snapshot.leases.empty());
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_EQ(problems_[0].message(), "etcd key /coreos.com/network/config: missing");
  events_.clear();
  Apply(PutEvent(kLease2, Lease("5e:36:5f:2f:1c:02"), 2));
  EXPECT_TRUE(events_.empty());
  Apply(PutEvent("/coreos.com/network/config", kConfig, 3));
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, FlannelEvent::Kind::kConfig);
  EXPECT_EQ(events_[0].snapshot.leases.size(), 2u);
}

TEST_F(FlannelKeyspaceTest, ARelistDropsWhatIsGone) {
  Relist(1, {Kv("/coreos.com/network/config", kConfig), Kv(kLease1, Lease("5e:36:5f:2f:1c:01")),
             Kv(kLease2, Lease("5e:36:5f:2f:1c:02"))});
  Relist(7, {Kv("/coreos.com/network/config", kConfig), Kv(kLease2, Lease("5e:36:5f:2f:1c:22"))});
  ASSERT_EQ(events_.size(), 2u);
  const FlannelSnapshot& s = events_[1].snapshot;
  EXPECT_EQ(s.revision, 7);
  ASSERT_EQ(s.lease_keys.size(), 1u);
  EXPECT_EQ(s.lease_keys[0], kLease2);
  EXPECT_EQ(FormatMac(s.leases[0].vtep_mac), "5e:36:5f:2f:1c:22");
  // A lease deleted after the relist that the consumer never got: nothing.
  events_.clear();
  Apply(DeleteEvent(kLease1, 8));
  EXPECT_TRUE(events_.empty());
}

TEST_F(FlannelKeyspaceTest, AnotherPrefix) {
  FlannelKeyspace keyspace("/my/net");
  std::vector<FlannelEvent> events;
  std::vector<absl::Status> problems;
  keyspace.Relist(3,
                  {Kv("/my/net/config", kConfig), Kv("/my/net/subnets/10.244.9.0-24", Lease("zz")),
                   Kv("/coreos.com/network/subnets/10.244.1.0-24", Lease("5e:36:5f:2f:1c:01"))},
                  &events, &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].message(),
            "etcd key /my/net/subnets/10.244.9.0-24: BackendData.VtepMAC: malformed MAC \"zz\"");
  EXPECT_TRUE(events[0].snapshot.leases.empty());
}

}  // namespace
}  // namespace sluice
