#include "dataplane/conntrack/conntrack_table.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "gtest/gtest.h"

namespace sluice {
namespace {

FlowKey Key(uint32_t s, uint32_t d, uint16_t sp, uint16_t dp, uint8_t proto = kProtoTcp) {
  FlowKey k;
  k.src_ip = s;
  k.dst_ip = d;
  k.src_port = sp;
  k.dst_port = dp;
  k.proto = proto;
  return k;
}

class ConntrackTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("qs", rte_rcu_qsbr_get_memsize(2), 64));
    rte_rcu_qsbr_init(qsbr_, 2);
    ConntrackTable::Config c;
    c.capacity = 64;
    c.workers = 2;
    c.qsbr = qsbr_;
    c.ticks_per_second = 1;
    auto t = ConntrackTable::Create(c);
    ASSERT_TRUE(t.ok()) << t.status();
    ct_ = *std::move(t);
  }
  void TearDown() override {
    ct_.reset();
    rte_free(qsbr_);
  }
  ConntrackTable::InsertResult Insert(uint16_t worker, const FlowKey& k, uint32_t ep,
                                      uint16_t ep_port, uint32_t snat, uint16_t snat_port,
                                      uint64_t now) {
    ConntrackEntry e;
    e.original = k;
    e.dnat_ip = ep;
    e.dnat_port = ep_port;
    e.snat_ip = snat;
    e.snat_port = snat_port;
    e.flags = ConntrackEntry::kDnat | ConntrackEntry::kSnat;
    return ct_->Insert(worker, e, now);
  }
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<ConntrackTable> ct_;
};

TEST_F(ConntrackTableTest, BothDirectionsFindTheEntryInBulkAndSingly) {
  const FlowKey orig = Key(0xac640006, 0x0a0a64e4, 51234, 8014);
  auto r = Insert(1, orig, 0x0af41995, 22, 0x0af41a00, 40000, 100);
  ASSERT_EQ(r.status, ConntrackTable::InsertStatus::kCreated);
  const FlowKey reply = Key(0x0af41995, 0x0af41a00, 22, 40000);
  EXPECT_EQ(ct_->Lookup(orig), r.ref);
  EXPECT_EQ(ct_->Lookup(reply), r.ref | ConntrackTable::kReplyBit);
  const FlowKey other = Key(1, 2, 3, 4);
  const FlowKey* keys[3] = {&orig, &other, &reply};
  uint32_t refs[3];
  ct_->LookupBulk(keys, 3, refs);
  EXPECT_EQ(refs[0], r.ref);
  EXPECT_EQ(refs[1], ConntrackTable::kMiss);
  EXPECT_EQ(refs[2], r.ref | ConntrackTable::kReplyBit);
  EXPECT_EQ(ct_->entry(refs[2]).original, orig);
}

TEST_F(ConntrackTableTest, SecondInsertOfSameFlowReturnsTheFirstEntry) {
  const FlowKey orig = Key(10, 20, 1000, 80);
  auto a = Insert(0, orig, 30, 8080, 40, 5000, 1);
  auto b = Insert(1, orig, 31, 8080, 40, 5001, 1);
  ASSERT_EQ(a.status, ConntrackTable::InsertStatus::kCreated);
  EXPECT_EQ(b.status, ConntrackTable::InsertStatus::kExists);
  EXPECT_EQ(b.ref, a.ref);
  EXPECT_EQ(ct_->InUse(), 1u);
}

TEST_F(ConntrackTableTest, ReplyTupleIsNeverClaimedTwice) {
  auto a = Insert(0, Key(10, 20, 1000, 80), 30, 8080, 40, 5000, 1);
  auto b = Insert(0, Key(11, 20, 1000, 80), 30, 8080, 40, 5000, 1);
  ASSERT_EQ(a.status, ConntrackTable::InsertStatus::kCreated);
  EXPECT_EQ(b.status, ConntrackTable::InsertStatus::kReplyClash);
  EXPECT_TRUE(ct_->ReplyTupleInUse(Key(30, 40, 8080, 5000)));
  EXPECT_EQ(ct_->InUse(), 1u);
}

TEST_F(ConntrackTableTest, FullSliceReportsFullAndIdleFlowsExpireAfterGracePeriod) {
  // Worker 0 owns 32 of the 64 entries.
  rte_rcu_qsbr_thread_register(qsbr_, 0);
  rte_rcu_qsbr_thread_online(qsbr_, 0);
  for (uint16_t i = 0; i < 32; ++i) {
    auto r = Insert(0, Key(10, 20, 1000 + i, 53, kProtoUdp), 30, 53, 40, 2000 + i, 0);
    ASSERT_EQ(r.status, ConntrackTable::InsertStatus::kCreated) << i;
  }
  auto full = Insert(0, Key(10, 20, 999, 53, kProtoUdp), 30, 53, 40, 1999, 0);
  EXPECT_EQ(full.status, ConntrackTable::InsertStatus::kFull);
  // Unreplied UDP times out after 30 s.
  EXPECT_EQ(ct_->Expire(0, 30, 64), 0u);
  EXPECT_EQ(ct_->Expire(0, 31, 64), 32u);
  EXPECT_EQ(ct_->Lookup(Key(10, 20, 1000, 53, kProtoUdp)), ConntrackTable::kMiss);
  EXPECT_EQ(ct_->InUse(), 0u);
  // Entries come back only after the worker reports a quiescent state.
  rte_rcu_qsbr_quiescent(qsbr_, 0);
  auto again = Insert(0, Key(10, 20, 999, 53, kProtoUdp), 30, 53, 40, 1999, 40);
  EXPECT_EQ(again.status, ConntrackTable::InsertStatus::kCreated);
  rte_rcu_qsbr_thread_offline(qsbr_, 0);
  rte_rcu_qsbr_thread_unregister(qsbr_, 0);
}

TEST_F(ConntrackTableTest, ExpiredEntryKeepsTranslatingUntilItsGracePeriodEnds) {
  rte_rcu_qsbr_thread_register(qsbr_, 0);
  rte_rcu_qsbr_thread_online(qsbr_, 0);
  rte_rcu_qsbr_thread_register(qsbr_, 1);
  rte_rcu_qsbr_thread_online(qsbr_, 1);
  const FlowKey orig = Key(10, 20, 1000, 53, kProtoUdp);
  auto r = Insert(0, orig, 30, 53, 40, 5000, 0);
  ASSERT_EQ(r.status, ConntrackTable::InsertStatus::kCreated);
  // Worker 1 found the entry in its burst; worker 0 expires it meanwhile.
  const ConntrackEntry& seen_by_1 = ct_->entry(ct_->Lookup(orig));
  EXPECT_EQ(ct_->Expire(0, 100, 64), 1u);
  EXPECT_EQ(seen_by_1.flags, ConntrackEntry::kDnat | ConntrackEntry::kSnat);
  EXPECT_EQ(seen_by_1.dnat_ip, 30u);
  // Worker 1 has not passed a quiescent state: the entry is not reused even
  // when worker 0 needs space.
  rte_rcu_qsbr_quiescent(qsbr_, 0);
  ct_->Expire(0, 100, 64);
  auto fresh = Insert(0, Key(11, 20, 1000, 53, kProtoUdp), 31, 53, 40, 5001, 100);
  ASSERT_EQ(fresh.status, ConntrackTable::InsertStatus::kCreated);
  EXPECT_NE(fresh.ref, r.ref);
  EXPECT_EQ(seen_by_1.dnat_ip, 30u);
  for (uint16_t w : {0, 1}) {
    rte_rcu_qsbr_thread_offline(qsbr_, w);
    rte_rcu_qsbr_thread_unregister(qsbr_, w);
  }
}

TEST_F(ConntrackTableTest, RepliedTcpFlowOutlivesUnrepliedTimeout) {
  const FlowKey orig = Key(10, 20, 1000, 80);
  auto r = Insert(0, orig, 30, 8080, 40, 5000, 0);
  ct_->Touch(r.ref | ConntrackTable::kReplyBit, 0x12, 1);  // SYN-ACK from the endpoint
  EXPECT_EQ(ct_->Expire(0, 1000, 64), 0u);
  EXPECT_NE(ct_->Lookup(orig), ConntrackTable::kMiss);
  ct_->Touch(r.ref, 0x04, 1000);  // RST: 10 s left
  EXPECT_EQ(ct_->Expire(0, 1011, 64), 1u);
}

TEST(ConntrackCreateTest, SizesItsFieldsCannotHoldAreRefused) {
  rte_rcu_qsbr* qsbr =
      static_cast<rte_rcu_qsbr*>(rte_zmalloc("qs2", rte_rcu_qsbr_get_memsize(1), 64));
  ASSERT_EQ(rte_rcu_qsbr_init(qsbr, 1), 0);
  ConntrackTable::Config c;
  c.capacity = 64;
  c.qsbr = qsbr;
  c.workers = 257;  // the entry's owner is 8 bits
  auto t = ConntrackTable::Create(c);
  EXPECT_EQ(t.status().message(),
            "conntrack: 257 workers, but an entry's owner field holds at most 256");
  c.workers = 1;
  c.capacity = ConntrackTable::kMaxCapacity + 1;  // its hash size would wrap or pass 2^30
  t = ConntrackTable::Create(c);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  c.capacity = 4000000000u;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  rte_free(qsbr);
}

}  // namespace
}  // namespace sluice
