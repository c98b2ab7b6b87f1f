// The subnet map changed one lease at a time (overlay_table.h) through the
// TablePublisher: slots of unchanged leases stay, a changed lease moves to
// a new slot, a removed one is gone from both lookups, and a reader running
// concurrently never misses a lease and, once a publish has returned, never
// sees the old peer.
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <thread>

#include "dataplane/tables/table_set.h"
#include "gtest/gtest.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

VtepPeer Lease(const char* subnet, uint8_t length, const char* public_ip, uint8_t mac_tail) {
  VtepPeer p;
  p.subnet = Ip(subnet);
  p.subnet_length = length;
  p.public_ip = Ip(public_ip);
  p.vtep_mac = {0x0e, 0, 0, 0, 0, mac_tail};
  return p;
}

class OverlayTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("ov_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
    auto p = TablePublisher::Create(qsbr_);
    ASSERT_TRUE(p.ok()) << p.status();
    publisher_ = *std::move(p);
    spec_.peers = {Lease("10.244.24.0", 24, "10.10.100.226", 0xe2),
                   Lease("10.244.25.0", 24, "10.10.100.227", 0xe3),
                   Lease("10.244.26.0", 24, "10.10.100.228", 0xe4)};
    Publish();
  }
  void TearDown() override {
    publisher_.reset();
    rte_free(qsbr_);
  }
  void Publish() {
    ASSERT_TRUE(publisher_->Validate(spec_).ok()) << publisher_->Validate(spec_);
    publisher_->Publish(spec_);
  }
  const OverlayTable& map() const { return *publisher_->Current()->overlay; }
  uint32_t SlotOf(const char* ip) const { return map().PeerForAddress(Ip(ip)); }

  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<TablePublisher> publisher_;
  NetworkSpec spec_;
};

TEST_F(OverlayTableTest, AChangedLeaseMovesToANewSlotAndTheOthersStay) {
  const uint32_t a = SlotOf("10.244.24.9"), b = SlotOf("10.244.25.9"), c = SlotOf("10.244.26.9");
  ASSERT_NE(b, OverlayTable::kNoPeer);
  const uint64_t g = publisher_->generation();
  spec_.peers[1].vtep_mac[5] = 0x33;  // node-227 re-registered its VTEP
  Publish();
  EXPECT_EQ(publisher_->generation(), g + 1);
  EXPECT_EQ(publisher_->last_change().changed, 1u);
  EXPECT_EQ(publisher_->last_change().added + publisher_->last_change().removed, 0u);
  EXPECT_EQ(SlotOf("10.244.24.9"), a);
  EXPECT_EQ(SlotOf("10.244.26.9"), c);
  const uint32_t b2 = SlotOf("10.244.25.9");
  EXPECT_NE(b2, b);
  EXPECT_EQ(map().peer(b2).vtep_mac[5], 0x33);
  EXPECT_EQ(map().PeerForPublicIp(Ip("10.10.100.227")), b2);
  EXPECT_EQ(map().retired(), 0u);  // released after the publish's grace period
  // The same set again changes nothing but the generation.
  Publish();
  EXPECT_FALSE(publisher_->last_change().any());
  EXPECT_EQ(SlotOf("10.244.25.9"), b2);
}

TEST_F(OverlayTableTest, ARemovedLeaseIsGoneFromBothLookups) {
  spec_.peers.erase(spec_.peers.begin());
  Publish();
  EXPECT_EQ(publisher_->last_change().removed, 1u);
  EXPECT_EQ(SlotOf("10.244.24.9"), OverlayTable::kNoPeer);
  EXPECT_EQ(map().PeerForPublicIp(Ip("10.10.100.226")), OverlayTable::kNoPeer);
  EXPECT_EQ(map().size(), 2u);
  EXPECT_EQ(map().Peers().size(), 2u);
}

TEST_F(OverlayTableTest, APublicIpMovingToAnotherLeaseFollowsIt) {
  // node-226 gave up 10.244.24.0/24 and took 10.244.30.0/24, in one update.
  spec_.peers[0] = Lease("10.244.30.0", 24, "10.10.100.226", 0xe2);
  Publish();
  EXPECT_EQ(SlotOf("10.244.24.9"), OverlayTable::kNoPeer);
  const uint32_t s = SlotOf("10.244.30.9");
  ASSERT_NE(s, OverlayTable::kNoPeer);
  EXPECT_EQ(map().PeerForPublicIp(Ip("10.10.100.226")), s);
  // Two nodes swapping their public addresses.
  std::swap(spec_.peers[1].public_ip, spec_.peers[2].public_ip);
  Publish();
  EXPECT_EQ(map().PeerForPublicIp(Ip("10.10.100.227")), SlotOf("10.244.26.9"));
  EXPECT_EQ(map().PeerForPublicIp(Ip("10.10.100.228")), SlotOf("10.244.25.9"));
}

TEST_F(OverlayTableTest, DuplicatesAreRefusedBeforeAnythingChanges) {
  NetworkSpec bad = spec_;
  bad.peers.push_back(Lease("10.244.25.0", 24, "10.10.100.229", 0xe5));
  EXPECT_EQ(publisher_->Validate(bad).message(), "subnet map: subnet 10.244.25.0/24 leased twice");
  bad = spec_;
  bad.peers.push_back(Lease("10.244.27.0", 24, "10.10.100.226", 0xe5));
  EXPECT_EQ(publisher_->Validate(bad).message(),
            "subnet map: public IP 10.10.100.226 holds two leases");
}

TEST_F(OverlayTableTest, LeasesLongerThanA24ComeAndGoManyTimes) {
  // Each /26 needs one of rte_lpm's tbl8 groups, returned on delete after a
  // grace period; churn must neither leak them nor leave stale entries.
  const NetworkSpec base = spec_;
  for (int round = 0; round < 300; ++round) {
    spec_ = base;
    for (int i = 0; i < 4; ++i) {
      const std::string subnet = "10.245." + std::to_string(round % 7) + "." + std::to_string(i * 64);
      const std::string pub = "172.16.0." + std::to_string(i + 1);
      spec_.peers.push_back(Lease(subnet.c_str(), 26, pub.c_str(), static_cast<uint8_t>(round)));
    }
    Publish();
    const std::string probe = "10.245." + std::to_string(round % 7) + ".130";
    const uint32_t s = SlotOf(probe.c_str());
    ASSERT_NE(s, OverlayTable::kNoPeer) << round;
    EXPECT_EQ(map().peer(s).public_ip, Ip("172.16.0.3"));
    EXPECT_EQ(map().peer(s).vtep_mac[5], static_cast<uint8_t>(round));
    const std::string stale = "10.245." + std::to_string((round + 6) % 7) + ".130";
    EXPECT_EQ(SlotOf(stale.c_str()), OverlayTable::kNoPeer) << round;
  }
  EXPECT_EQ(map().size(), base.peers.size() + 4);
}

TEST_F(OverlayTableTest, AConcurrentReaderNeverMissesALeaseNorSeesAnAcknowledgedChangeUndone) {
  // A reader thread, registered with the QSBR variable as a worker is, looks
  // up node-227's subnet per "burst" and reports quiescence between bursts.
  // The writer changes node-227's VtepMAC (a counter in its low bytes) and
  // also adds and removes a lease each time. After a publish returns, the
  // reader must not see a value older than the acknowledged one.
  std::atomic<bool> stop{false}, online{false};
  std::atomic<uint32_t> acknowledged{0};
  std::atomic<uint64_t> misses{0}, undone{0}, reads{0};
  std::thread reader([&] {
    rte_rcu_qsbr_thread_register(qsbr_, 0);
    rte_rcu_qsbr_thread_online(qsbr_, 0);
    online.store(true, std::memory_order_release);
    while (!stop.load(std::memory_order_acquire)) {
      const uint32_t floor = acknowledged.load(std::memory_order_acquire);
      const TableSet* t = publisher_->Current();
      for (int i = 0; i < 32; ++i) {
        const uint32_t s = t->overlay->PeerForAddress(Ip("10.244.25.77"));
        if (s == OverlayTable::kNoPeer || t->overlay->PeerForAddress(Ip("10.244.24.1")) ==
                                              OverlayTable::kNoPeer) {
          misses.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        const VtepPeer& p = t->overlay->peer(s);
        const uint32_t v = (uint32_t{p.vtep_mac[3]} << 16) | (uint32_t{p.vtep_mac[4]} << 8) |
                           p.vtep_mac[5];
        if (v < floor || p.public_ip != Ip("10.10.100.227")) undone.fetch_add(1);
      }
      reads.fetch_add(1, std::memory_order_relaxed);
      rte_rcu_qsbr_quiescent(qsbr_, 0);
    }
    rte_rcu_qsbr_thread_offline(qsbr_, 0);
    rte_rcu_qsbr_thread_unregister(qsbr_, 0);
  });
  // Online first: from then on every publish waits for its reports.
  while (!online.load(std::memory_order_acquire)) std::this_thread::yield();
  const NetworkSpec base = spec_;
  for (uint32_t v = 1; v <= 3000; ++v) {
    spec_ = base;
    spec_.peers[1].vtep_mac = {0x0e, 0, 0, static_cast<uint8_t>(v >> 16),
                               static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    if (v % 2 == 0) spec_.peers.push_back(Lease("10.244.40.0", 25, "10.10.100.240", 0xf0));
    Publish();
    acknowledged.store(v, std::memory_order_release);
  }
  stop.store(true, std::memory_order_release);
  reader.join();
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(misses.load(), 0u);
  EXPECT_EQ(undone.load(), 0u);
}

}  // namespace
}  // namespace sluice::testing
