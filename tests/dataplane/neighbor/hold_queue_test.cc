// NeighborHoldQueue with real mbufs and a real NeighborTable: one request per
// hop per retransmit interval, at most max_solicit, release in order with
// tags once the hop resolves, bounded room, unresolved packets given back.
// Time is in milliseconds here (ticks_per_second 1000).
#include "dataplane/neighbor/hold_queue.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <vector>

#include "tests/fixtures/mbuf_pool_test.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

using Verdict = NeighborHoldQueue::Verdict;

const Ipv4Subnet kPodsNet{0x0af41a00, 0xffffff00};  // 10.244.26.0/24

class HoldQueueTest : public MbufPoolTest {
 protected:
  void SetUp() override {
    MbufPoolTest::SetUp();
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("hq_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
    NeighborTable::Config nc;
    nc.qsbr = qsbr_;
    nc.ticks_per_second = 1000;
    auto t = NeighborTable::Create(nc);
    ASSERT_TRUE(t.ok()) << t.status();
    table_ = *std::move(t);
    Make(Config());
  }
  void TearDown() override {
    queue_.reset();  // frees what it still holds, before the pool goes
    table_.reset();
    rte_free(qsbr_);
    EXPECT_EQ(rte_mempool_avail_count(pool_), pool_->size) << "an mbuf leaked";
    MbufPoolTest::TearDown();
  }
  static NeighborHoldQueue::Config Config() {
    NeighborHoldQueue::Config c;
    c.ticks_per_second = 1000;
    return c;
  }
  void Make(const NeighborHoldQueue::Config& c) {
    queue_.reset();
    auto q = NeighborHoldQueue::Create(c);
    ASSERT_TRUE(q.ok()) << q.status();
    queue_ = *std::move(q);
  }
  rte_mbuf* Mbuf() {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    EXPECT_NE(m, nullptr);
    return m;
  }
  static NeighborKey Pod(const char* ip) { return MakeNeighborKey(PortRole::kPods, Ip(ip)); }
  void Answer(const char* ip, const char* mac, uint64_t now) {
    ASSERT_EQ(table_->Learn(PortRole::kPods, kPodsNet, Ip(ip), Mac(mac), now),
              NeighborTable::LearnResult::kLearned);
  }
  static void FreeAll(rte_mbuf** m, uint16_t n) {
    for (uint16_t i = 0; i < n; ++i) rte_pktmbuf_free(m[i]);
  }

  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<NeighborTable> table_;
  std::unique_ptr<NeighborHoldQueue> queue_;
};

TEST_F(HoldQueueTest, OneRequestPerHopPerRetransmitIntervalAndNoMoreThanThree) {
  const NeighborKey hop = Pod("10.244.26.99");
  bool ask = false;
  ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 0, &ask), Verdict::kHeld);
  EXPECT_TRUE(ask);  // the first packet asks
  ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 10, &ask), Verdict::kHeld);
  EXPECT_FALSE(ask);  // the request is in flight
  NeighborKey due[4];
  EXPECT_EQ(queue_->Retransmits(999, due, 4), 0);
  ASSERT_EQ(queue_->Retransmits(1000, due, 4), 1);
  EXPECT_EQ(due[0].ip, hop.ip);
  EXPECT_EQ(queue_->Retransmits(1000, due, 4), 0);
  EXPECT_EQ(queue_->Retransmits(1999, due, 4), 0);
  EXPECT_EQ(queue_->Retransmits(2000, due, 4), 1);
  ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 2500, &ask), Verdict::kHeld);
  EXPECT_FALSE(ask);
  EXPECT_EQ(queue_->Retransmits(10000, due, 4), 0);  // three sent: that is all
}

TEST_F(HoldQueueTest, UnansweredHopGivesBackItsPacketsAnIntervalAfterTheLastRequest) {
  const NeighborKey hop = Pod("10.244.26.99");
  bool ask = false;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 0, &ask), Verdict::kHeld);
  NeighborKey due[4];
  ASSERT_EQ(queue_->Retransmits(1000, due, 4), 1);
  ASSERT_EQ(queue_->Retransmits(2000, due, 4), 1);
  rte_mbuf* dropped[8];
  EXPECT_EQ(queue_->Expire(2999, dropped, 8), 0);
  ASSERT_EQ(queue_->Expire(3000, dropped, 8), 3);
  FreeAll(dropped, 3);
  EXPECT_TRUE(queue_->empty());
  // A later packet starts over, with a request of its own.
  ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 3001, &ask), Verdict::kHeld);
  EXPECT_TRUE(ask);
}

TEST_F(HoldQueueTest, ResolvedHopReleasesItsPacketsInArrivalOrderWithTagsAndMac) {
  const NeighborKey hop = Pod("10.244.26.99");
  const NeighborKey other = Pod("10.244.26.98");
  rte_mbuf* sent[3];
  bool ask = false;
  for (uint32_t i = 0; i < 3; ++i) {
    sent[i] = Mbuf();
    ASSERT_EQ(queue_->Hold(sent[i], hop, 100 + i, i, &ask), Verdict::kHeld);
  }
  ASSERT_EQ(queue_->Hold(Mbuf(), other, 7, 3, &ask), Verdict::kHeld);
  rte_mbuf* out[8];
  uint32_t tags[8];
  NeighborKey keys[8];
  MacAddress macs[8];
  EXPECT_EQ(queue_->Release(*table_, 10, out, tags, keys, macs, 8), 0);
  Answer("10.244.26.99", "0a:58:0a:f4:1a:63", 20);
  ASSERT_EQ(queue_->Release(*table_, 30, out, tags, keys, macs, 8), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i], sent[i]);
    EXPECT_EQ(tags[i], 100u + i);
    EXPECT_EQ(keys[i].ip, hop.ip);
    EXPECT_EQ(macs[i], Mac("0a:58:0a:f4:1a:63"));
  }
  FreeAll(out, 3);
  EXPECT_EQ(queue_->held(), 1);
  EXPECT_EQ(queue_->hops(), 1);  // the resolved hop is forgotten, the other waits
  // A resolved hop is neither asked for again nor expired.
  NeighborKey due[4];
  EXPECT_EQ(queue_->Retransmits(1003, due, 4), 1);
  EXPECT_EQ(due[0].ip, other.ip);
}

TEST_F(HoldQueueTest, ReleaseStopsAtMaxAndContinuesNextTime) {
  const NeighborKey hop = Pod("10.244.26.99");
  bool ask = false;
  for (uint32_t i = 0; i < 5; ++i) ASSERT_EQ(queue_->Hold(Mbuf(), hop, i, 0, &ask), Verdict::kHeld);
  Answer("10.244.26.99", "0a:58:0a:f4:1a:63", 1);
  rte_mbuf* out[8];
  uint32_t tags[8];
  NeighborKey keys[8];
  MacAddress macs[8];
  ASSERT_EQ(queue_->Release(*table_, 2, out, tags, keys, macs, 2), 2);
  EXPECT_EQ(tags[0], 0u);
  EXPECT_EQ(tags[1], 1u);
  FreeAll(out, 2);
  // Past the point where an unanswered hop would have failed: it resolved.
  rte_mbuf* dropped[8];
  EXPECT_EQ(queue_->Expire(10000, dropped, 8), 0);
  ASSERT_EQ(queue_->Release(*table_, 10001, out, tags, keys, macs, 8), 3);
  EXPECT_EQ(tags[0], 2u);
  EXPECT_EQ(tags[2], 4u);
  FreeAll(out, 3);
  EXPECT_TRUE(queue_->empty());
}

TEST_F(HoldQueueTest, EachHopHoldsAtMostItsShare) {
  const NeighborKey hop = Pod("10.244.26.99");
  bool ask = false;
  for (int i = 0; i < 8; ++i) ASSERT_EQ(queue_->Hold(Mbuf(), hop, 0, 0, &ask), Verdict::kHeld);
  rte_mbuf* ninth = Mbuf();
  EXPECT_EQ(queue_->Hold(ninth, hop, 0, 0, &ask), Verdict::kHopFull);
  rte_pktmbuf_free(ninth);  // refused: still the caller's
  EXPECT_EQ(queue_->Hold(Mbuf(), Pod("10.244.26.98"), 0, 0, &ask), Verdict::kHeld);
  EXPECT_EQ(queue_->held(), 9);
}

TEST_F(HoldQueueTest, TotalCapacityIsBoundedButANewHopIsStillAskedFor) {
  NeighborHoldQueue::Config c = Config();
  c.capacity = 4;
  Make(c);
  bool ask = false;
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(queue_->Hold(Mbuf(), Pod("10.244.26.99"), 0, 0, &ask), Verdict::kHeld);
  rte_mbuf* m = Mbuf();
  EXPECT_EQ(queue_->Hold(m, Pod("10.244.26.98"), 0, 0, &ask), Verdict::kQueueFull);
  EXPECT_TRUE(ask);  // resolution starts for the packets that come after
  EXPECT_EQ(queue_->Hold(m, Pod("10.244.26.98"), 0, 1, &ask), Verdict::kQueueFull);
  EXPECT_FALSE(ask);
  rte_pktmbuf_free(m);
  EXPECT_EQ(queue_->hops(), 2);
  // A hop that resolves with nothing held is simply forgotten.
  Answer("10.244.26.98", "0a:58:0a:f4:1a:62", 2);
  rte_mbuf* out[8];
  uint32_t tags[8];
  NeighborKey keys[8];
  MacAddress macs[8];
  EXPECT_EQ(queue_->Release(*table_, 3, out, tags, keys, macs, 8), 0);
  EXPECT_EQ(queue_->hops(), 1);
}

TEST_F(HoldQueueTest, NoMoreHopsThanMaxHopsAreResolvedAtOnce) {
  NeighborHoldQueue::Config c = Config();
  c.max_hops = 2;
  Make(c);
  bool ask = false;
  ASSERT_EQ(queue_->Hold(Mbuf(), Pod("10.244.26.1"), 0, 0, &ask), Verdict::kHeld);
  ASSERT_EQ(queue_->Hold(Mbuf(), Pod("10.244.26.2"), 0, 0, &ask), Verdict::kHeld);
  rte_mbuf* m = Mbuf();
  EXPECT_EQ(queue_->Hold(m, Pod("10.244.26.3"), 0, 0, &ask), Verdict::kQueueFull);
  EXPECT_FALSE(ask);  // not tracked, so not asked for: the rate limit holds
  rte_pktmbuf_free(m);
}

TEST_F(HoldQueueTest, DestroyingTheQueueFreesWhatItHolds) {
  bool ask = false;
  for (int i = 0; i < 20; ++i) {
    rte_mbuf* m = Mbuf();
    if (queue_->Hold(m, Pod("10.244.26.99"), 0, 0, &ask) != Verdict::kHeld) rte_pktmbuf_free(m);
  }
  EXPECT_EQ(queue_->held(), 8);
  queue_.reset();
  // TearDown checks that every mbuf is back in the pool.
}

TEST_F(HoldQueueTest, CreateRefusesBoundsItCannotHonour) {
  NeighborHoldQueue::Config c = Config();
  c.capacity = 0;
  EXPECT_FALSE(NeighborHoldQueue::Create(c).ok());
  c = Config();
  c.capacity = 0xffff;
  EXPECT_FALSE(NeighborHoldQueue::Create(c).ok());
  c = Config();
  c.max_solicit = 0;
  EXPECT_FALSE(NeighborHoldQueue::Create(c).ok());
}

}  // namespace
}  // namespace sluice::testing
