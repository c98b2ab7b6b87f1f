// NeighborTable: per-port learning quotas and reserved static room, the
// on-link rule, reachable/stale ages, static replacement and the version
// counter. Time is in milliseconds here (ticks_per_second 1000).
#include "dataplane/tables/neighbor_table.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

using Result = NeighborTable::LearnResult;

const Ipv4Subnet kUplinkNet{0x0a0a6400, 0xffffff00};  // 10.10.100.0/24
const Ipv4Subnet kPodsNet{0x0af41a00, 0xffffff00};    // 10.244.26.0/24
const Ipv4Subnet kHostNet{0x0a0a64e4, 0xffffffff};    // the node's own address

class NeighborTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("nt_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
  }
  void TearDown() override {
    table_.reset();
    rte_free(qsbr_);
  }
  // Quotas 4 uplink, 4 pods, 1 host; room for 3 statics; reachable 30 s,
  // removal 60 s after that.
  static NeighborTable::Config Small() {
    NeighborTable::Config c;
    c.learn_quota[0] = 4;
    c.learn_quota[1] = 4;
    c.learn_quota[2] = 1;
    c.static_capacity = 3;
    c.ticks_per_second = 1000;
    return c;
  }
  NeighborTable& Make(NeighborTable::Config c = Small()) {
    c.qsbr = qsbr_;
    auto t = NeighborTable::Create(c);
    EXPECT_TRUE(t.ok()) << t.status();
    table_ = *std::move(t);
    return *table_;
  }
  bool Has(PortRole port, const char* ip, MacAddress* mac = nullptr, bool* is_static = nullptr) {
    MacAddress m;
    return table_->Lookup(port, Ip(ip), mac != nullptr ? mac : &m, is_static);
  }

  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<NeighborTable> table_;
};

TEST_F(NeighborTableTest, ArpFloodOnOnePortFillsOnlyThatPortsQuota) {
  NeighborTable& t = Make();
  for (uint32_t i = 0; i < 20; ++i) {
    const Result r =
        t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.10") + i, Mac("02:00:00:00:00:01"), 0);
    EXPECT_EQ(r, i < 4 ? Result::kLearned : Result::kQuotaFull) << i;
  }
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 4u);
  // A new pod is still resolved, and the statics still fit.
  EXPECT_EQ(t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.99"), Mac("0a:58:0a:f4:1a:63"), 0),
            Result::kLearned);
  ASSERT_TRUE(t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")},
                               {PortRole::kUplink, Ip("10.10.100.227"), Mac("02:00:0a:0a:64:e3")},
                               {PortRole::kPods, Ip("10.244.26.20"), Mac("0a:58:0a:f4:1a:14")}})
                  .ok());
  EXPECT_TRUE(Has(PortRole::kPods, "10.244.26.99"));
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.1"));
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.227"));
  EXPECT_TRUE(Has(PortRole::kPods, "10.244.26.20"));
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.14"));
}

TEST_F(NeighborTableTest, EveryQuotaAndTheStaticRoomCanBeFilledAtOnce) {
  NeighborTable& t = Make();
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(
        t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.10") + i, Mac("02:00:00:00:00:01"), 0),
        Result::kLearned);
    EXPECT_EQ(
        t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.10") + i, Mac("02:00:00:00:00:02"), 0),
        Result::kLearned);
  }
  EXPECT_EQ(t.Learn(PortRole::kHost, kHostNet, Ip("10.10.100.228"), Mac("02:00:00:00:01:e4"), 0),
            Result::kLearned);
  EXPECT_TRUE(t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:00:00:00:03")},
                               {PortRole::kUplink, Ip("10.10.100.2"), Mac("02:00:00:00:00:04")},
                               {PortRole::kHost, Ip("169.254.0.1"), Mac("02:00:00:00:00:05")}})
                  .ok());
  EXPECT_EQ(t.static_count(), 3u);
  EXPECT_TRUE(Has(PortRole::kHost, "169.254.0.1"));
}

TEST_F(NeighborTableTest, OnlyHostsOfTheStatedSubnetAreLearned) {
  NeighborTable& t = Make();
  const MacAddress mac = Mac("02:00:00:00:00:01");
  EXPECT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.101.5"), mac, 0), Result::kOffSubnet);
  EXPECT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.0"), mac, 0), Result::kOffSubnet);
  EXPECT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.255"), mac, 0),
            Result::kOffSubnet);
  // A pod address offered on the uplink is not a neighbour there.
  EXPECT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.244.26.5"), mac, 0), Result::kOffSubnet);
  // No subnet stated: nothing is learned, rather than everything.
  EXPECT_EQ(t.Learn(PortRole::kUplink, Ipv4Subnet{}, Ip("10.10.100.5"), mac, 0),
            Result::kOffSubnet);
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 0u);
  // Both addresses of a /31 are hosts (RFC 3021); a /32 is its one host.
  const Ipv4Subnet p2p{Ip("10.0.0.0"), 0xfffffffe};
  EXPECT_EQ(t.Learn(PortRole::kUplink, p2p, Ip("10.0.0.0"), mac, 0), Result::kLearned);
  EXPECT_EQ(t.Learn(PortRole::kUplink, p2p, Ip("10.0.0.1"), mac, 0), Result::kLearned);
  EXPECT_EQ(t.Learn(PortRole::kUplink, {Ip("192.0.2.1"), 0xffffffff}, Ip("192.0.2.1"), mac, 0),
            Result::kLearned);
  EXPECT_EQ(t.Learn(PortRole::kHost, kHostNet, Ip("10.10.100.5"), mac, 0), Result::kOffSubnet);
}

TEST_F(NeighborTableTest, VersionMovesOnANewEntryOrAChangedMacNotOnARefresh) {
  NeighborTable& t = Make();
  uint64_t v0 = t.version();
  EXPECT_EQ(t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.7"), Mac("0a:58:00:00:00:01"), 0),
            Result::kLearned);
  EXPECT_EQ(t.version(), ++v0);
  EXPECT_EQ(t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.7"), Mac("0a:58:00:00:00:01"), 5),
            Result::kRefreshed);
  EXPECT_EQ(t.version(), v0);
  EXPECT_EQ(t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.7"), Mac("0a:58:00:00:00:02"), 6),
            Result::kChanged);
  EXPECT_EQ(t.version(), v0 + 1);
  MacAddress mac;
  ASSERT_TRUE(Has(PortRole::kPods, "10.244.26.7", &mac));
  EXPECT_EQ(mac, Mac("0a:58:00:00:00:02"));
  // The same address on another port is another neighbour.
  EXPECT_FALSE(Has(PortRole::kUplink, "10.244.26.7"));
}

TEST_F(NeighborTableTest, ArpNeverChangesAStaticEntry) {
  NeighborTable& t = Make();
  ASSERT_TRUE(
      t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")}}).ok());
  const uint64_t v = t.version();
  EXPECT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.1"), Mac("02:00:00:00:00:66"), 0),
            Result::kStaticKept);
  MacAddress mac;
  bool is_static = false;
  ASSERT_TRUE(Has(PortRole::kUplink, "10.10.100.1", &mac, &is_static));
  EXPECT_EQ(mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_TRUE(is_static);
  EXPECT_EQ(t.version(), v);
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 0u);
}

TEST_F(NeighborTableTest, LookupFlagsEntriesPastTheReachableTimeAndStillResolvesThem) {
  NeighborTable& t = Make();
  ASSERT_EQ(
      t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.5"), Mac("02:00:00:00:00:05"), 1000),
      Result::kLearned);
  ASSERT_TRUE(
      t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")}}).ok());
  const NeighborKey learned = MakeNeighborKey(PortRole::kUplink, Ip("10.10.100.5"));
  const NeighborKey fixed = MakeNeighborKey(PortRole::kUplink, Ip("10.10.100.1"));
  const NeighborKey unknown = MakeNeighborKey(PortRole::kUplink, Ip("10.10.100.9"));
  const NeighborKey* keys[] = {&learned, &fixed, &unknown};
  MacAddress macs[3];
  uint64_t stale = ~uint64_t{0};
  EXPECT_EQ(t.LookupBulk(keys, 3, 1000 + 30000, macs, &stale), 0b011u);
  EXPECT_EQ(stale, 0u);
  EXPECT_EQ(macs[0], Mac("02:00:00:00:00:05"));
  EXPECT_EQ(macs[1], Mac("02:00:0a:0a:64:01"));
  EXPECT_EQ(t.LookupBulk(keys, 3, 1000 + 30001, macs, &stale), 0b011u);
  EXPECT_EQ(stale, 0b001u);  // statics are never stale
  EXPECT_EQ(macs[0], Mac("02:00:00:00:00:05"));
  // A refresh makes it reachable again.
  EXPECT_EQ(
      t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.5"), Mac("02:00:00:00:00:05"), 40000),
      Result::kRefreshed);
  EXPECT_EQ(t.LookupBulk(keys, 3, 40001, macs, &stale), 0b011u);
  EXPECT_EQ(stale, 0u);
}

TEST_F(NeighborTableTest, AgeRemovesLearnedEntriesUnconfirmedForReachablePlusStaleTime) {
  NeighborTable& t = Make();
  t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.5"), Mac("02:00:00:00:00:05"), 0);
  t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.6"), Mac("02:00:00:00:00:06"), 50000);
  ASSERT_TRUE(
      t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")}}).ok());
  const uint64_t v = t.version();
  EXPECT_EQ(t.Age(90000), 0u);  // exactly reachable + stale: kept
  EXPECT_EQ(t.version(), v);
  EXPECT_EQ(t.Age(90001), 1u);
  EXPECT_EQ(t.version(), v + 1);
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.5"));
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.6"));
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 1u);
  EXPECT_EQ(t.Age(1000000), 1u);
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.6"));
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.1"));  // statics never age
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 0u);
}

TEST_F(NeighborTableTest, AgedSlotsAreReusedSoChurnNeverFillsTheTable) {
  // Exactly 8 key slots: the quota is rte_hash's minimum table.
  NeighborTable::Config c = Small();
  c.learn_quota[0] = 8;
  c.learn_quota[1] = 0;
  c.learn_quota[2] = 0;
  c.static_capacity = 0;
  NeighborTable& t = Make(c);
  uint64_t now = 0;
  for (uint32_t round = 0; round < 100; ++round) {
    for (uint32_t i = 0; i < 8; ++i) {
      const uint32_t ip = Ip("10.10.100.10") + (round * 8 + i) % 200;
      ASSERT_EQ(t.Learn(PortRole::kUplink, kUplinkNet, ip, Mac("02:00:00:00:00:01"), now),
                Result::kLearned)
          << "round " << round << " entry " << i;
    }
    now += 90001;
    ASSERT_EQ(t.Age(now), 8u);
  }
}

TEST_F(NeighborTableTest, ReplaceStaticMakesTheStaticSetExactlyTheGivenOne) {
  NeighborTable& t = Make();
  ASSERT_TRUE(t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.226"), Mac("02:00:00:00:00:e2")},
                               {PortRole::kUplink, Ip("10.10.100.227"), Mac("02:00:00:00:00:e3")}})
                  .ok());
  const uint64_t v = t.version();
  ASSERT_TRUE(t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.227"), Mac("02:00:00:00:01:e3")},
                               {PortRole::kPods, Ip("10.244.26.20"), Mac("0a:58:0a:f4:1a:14")}})
                  .ok());
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.226"));  // removed, not kept as learned
  MacAddress mac;
  ASSERT_TRUE(Has(PortRole::kUplink, "10.10.100.227", &mac));
  EXPECT_EQ(mac, Mac("02:00:00:00:01:e3"));
  EXPECT_TRUE(Has(PortRole::kPods, "10.244.26.20"));
  EXPECT_EQ(t.static_count(), 2u);
  EXPECT_GT(t.version(), v);
  ASSERT_TRUE(t.ReplaceStatic({}).ok());
  EXPECT_EQ(t.static_count(), 0u);
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.227"));
}

TEST_F(NeighborTableTest, AStaticEntryTakesOverALearnedOneAndGivesBackItsQuota) {
  NeighborTable& t = Make();
  t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.1"), Mac("02:00:00:00:00:66"), 0);
  ASSERT_EQ(t.learned_count(PortRole::kUplink), 1u);
  ASSERT_TRUE(
      t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")}}).ok());
  MacAddress mac;
  bool is_static = false;
  ASSERT_TRUE(Has(PortRole::kUplink, "10.10.100.1", &mac, &is_static));
  EXPECT_TRUE(is_static);
  EXPECT_EQ(mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_EQ(t.learned_count(PortRole::kUplink), 0u);
  EXPECT_EQ(t.static_count(), 1u);
  EXPECT_EQ(t.Age(1000000), 0u);
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.1"));
}

TEST_F(NeighborTableTest, AStaticSetThatCannotBeAppliedChangesNothing) {
  NeighborTable& t = Make();
  const std::vector<StaticNeighbor> old = {
      {PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")},
      {PortRole::kUplink, Ip("10.10.100.2"), Mac("02:00:0a:0a:64:02")}};
  ASSERT_TRUE(t.ReplaceStatic(old).ok());
  const uint64_t v = t.version();

  std::vector<StaticNeighbor> too_many = {
      {PortRole::kUplink, Ip("10.10.100.3"), Mac("02:00:00:00:00:03")},
      {PortRole::kUplink, Ip("10.10.100.4"), Mac("02:00:00:00:00:04")},
      {PortRole::kUplink, Ip("10.10.100.5"), Mac("02:00:00:00:00:05")},
      {PortRole::kUplink, Ip("10.10.100.6"), Mac("02:00:00:00:00:06")}};
  absl::Status s = t.ReplaceStatic(too_many);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "4 static neighbours, but the neighbour table reserves room for 3");

  std::vector<StaticNeighbor> twice = {
      {PortRole::kUplink, Ip("10.10.100.3"), Mac("02:00:00:00:00:03")},
      {PortRole::kUplink, Ip("10.10.100.3"), Mac("02:00:00:00:00:04")}};
  s = t.ValidateStatic(twice);
  EXPECT_EQ(s.message(),
            "static neighbour 1 (uplink 10.10.100.3): listed twice (also static neighbour 0)");
  EXPECT_EQ(t.ReplaceStatic(twice).code(), absl::StatusCode::kInvalidArgument);

  s = t.ReplaceStatic({{PortRole::kPods, Ip("10.244.26.5"), Mac("01:00:5e:00:00:01")}});
  EXPECT_EQ(s.message(),
            "static neighbour 0 (pods 10.244.26.5): MAC 01:00:5e:00:00:01 is not a unicast "
            "station address");
  s = t.ReplaceStatic({{PortRole::kPods, 0, Mac("02:00:00:00:00:01")}});
  EXPECT_EQ(s.message(), "static neighbour 0 (pods 0.0.0.0): not a unicast address");

  EXPECT_EQ(t.static_count(), 2u);
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.1"));
  EXPECT_TRUE(Has(PortRole::kUplink, "10.10.100.2"));
  EXPECT_FALSE(Has(PortRole::kUplink, "10.10.100.3"));
  EXPECT_EQ(t.version(), v);
}

TEST_F(NeighborTableTest, EntriesListEveryEntryWithItsStateSortedByPortAndAddress) {
  NeighborTable& t = Make();
  using State = NeighborTable::EntryState;
  t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.99"), Mac("0a:58:0a:f4:1a:63"), 5000);
  t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.5"), Mac("02:00:00:00:00:05"), 1000);
  t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.7"), Mac("02:00:00:00:00:07"), 40000);
  t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.20"), Mac("0a:58:0a:f4:1a:14"), 0);
  // 10.244.26.20 was learned and becomes static.
  ASSERT_TRUE(t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")},
                               {PortRole::kPods, Ip("10.244.26.20"), Mac("0a:58:0a:f4:1a:14")}})
                  .ok());
  const std::vector<NeighborTable::Entry> e = t.Entries(32000);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e[0].port, PortRole::kUplink);
  EXPECT_EQ(e[0].ip, Ip("10.10.100.1"));
  EXPECT_EQ(e[0].mac, Mac("02:00:0a:0a:64:01"));
  EXPECT_EQ(e[0].state, State::kPermanent);
  EXPECT_EQ(e[0].confirmed_ago, 0u);
  EXPECT_EQ(e[1].ip, Ip("10.10.100.5"));
  EXPECT_EQ(e[1].state, State::kStale);  // 31 s since its confirmation, past the reachable 30
  EXPECT_EQ(e[1].confirmed_ago, 31000u);
  EXPECT_EQ(e[2].ip, Ip("10.10.100.7"));
  EXPECT_EQ(e[2].state, State::kReachable);  // confirmed after `now`: not in the past
  EXPECT_EQ(e[2].confirmed_ago, 0u);
  EXPECT_EQ(e[3].port, PortRole::kPods);
  EXPECT_EQ(e[3].ip, Ip("10.244.26.20"));
  EXPECT_EQ(e[3].state, State::kPermanent);
  EXPECT_EQ(e[4].ip, Ip("10.244.26.99"));
  EXPECT_EQ(e[4].mac, Mac("0a:58:0a:f4:1a:63"));
  EXPECT_EQ(e[4].state, State::kReachable);
  EXPECT_EQ(e[4].confirmed_ago, 27000u);
  // Aged out entries are gone from the listing; the statics stay.
  EXPECT_EQ(t.Age(200000), 3u);
  const std::vector<NeighborTable::Entry> after = t.Entries(200000);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].ip, Ip("10.10.100.1"));
  EXPECT_EQ(after[1].ip, Ip("10.244.26.20"));
}

// A worker learning and changing MACs while the control thread lists: each
// listing holds whole entries (a MAC that was written for that key, never a
// mix), each key once, and nothing that was never learned.
TEST_F(NeighborTableTest, EntriesWhileAWorkerLearnsShowWholeEntriesOnly) {
  NeighborTable& t = Make();
  const MacAddress a = Mac("02:00:00:00:00:aa"), b = Mac("02:11:22:33:44:55");
  ASSERT_TRUE(
      t.ReplaceStatic({{PortRole::kUplink, Ip("10.10.100.1"), Mac("02:00:0a:0a:64:01")}}).ok());
  std::atomic<bool> done{false};
  std::thread worker([&] {
    for (uint32_t i = 0; i < 200000; ++i) {
      t.Learn(PortRole::kUplink, kUplinkNet, Ip("10.10.100.5"), i % 2 ? a : b, i);
      if (i % 1000 == 0)  // new keys appear during the walks too (the quota bounds them)
        t.Learn(PortRole::kPods, kPodsNet, Ip("10.244.26.100") + i / 1000 % 4, a, i);
    }
    done = true;
  });
  uint32_t walks = 0, seen_a = 0, seen_b = 0;
  while (!done || walks < 100) {
    const std::vector<NeighborTable::Entry> e = t.Entries(0);
    ++walks;
    std::set<std::pair<PortRole, uint32_t>> keys;
    for (const NeighborTable::Entry& x : e) {
      ASSERT_TRUE(keys.insert({x.port, x.ip}).second) << FormatIpv4(x.ip) << " twice";
      if (x.ip == Ip("10.10.100.5")) {
        ASSERT_TRUE(x.mac == a || x.mac == b) << FormatMac(x.mac);
        (x.mac == a ? seen_a : seen_b)++;
      } else if (x.port == PortRole::kPods) {
        ASSERT_GE(x.ip, Ip("10.244.26.100"));
        ASSERT_LT(x.ip, Ip("10.244.26.104"));
        ASSERT_EQ(x.mac, a);
      } else {
        ASSERT_EQ(x.ip, Ip("10.10.100.1"));
        ASSERT_EQ(x.state, NeighborTable::EntryState::kPermanent);
      }
    }
  }
  worker.join();
  const std::vector<NeighborTable::Entry> e = t.Entries(0);
  ASSERT_EQ(e.size(), 6u);  // the static, the flapping one, 4 pods
  EXPECT_EQ(e[1].mac, a);   // the last Learn (i odd)
  EXPECT_GT(seen_a + seen_b, 0u);
}

TEST_F(NeighborTableTest, CreateRefusesConfigsItCannotHonour) {
  NeighborTable::Config c = Small();
  EXPECT_EQ(NeighborTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);  // qsbr
  c.qsbr = qsbr_;
  c.ticks_per_second = 0;
  EXPECT_EQ(NeighborTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.ticks_per_second = 1;
  c.learn_quota[0] = c.learn_quota[1] = c.learn_quota[2] = 1u << 30;
  EXPECT_EQ(NeighborTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sluice::testing
