#include "dataplane/conntrack/conntrack_table.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

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

using Status = ConntrackTable::InsertStatus;

// A flow: its original tuple and the tuple its replies arrive with.
struct Flow {
  FlowKey original;
  FlowKey reply;
};

ConntrackTable::InsertResult InsertFlow(ConntrackTable& ct, uint16_t worker, const Flow& f,
                                        uint64_t now) {
  ConntrackEntry e;
  e.original = f.original;
  e.reply = f.reply;
  e.flags = ConntrackEntry::kDnat | ConntrackEntry::kSnat;
  return ct.Insert(worker, e, now);
}

// Random flows: a pod reaching a random Service address, DNAT to a random
// endpoint, masqueraded to a random node port.
Flow RandomFlow(std::mt19937_64& rng, uint8_t proto = kProtoUdp) {
  Flow f;
  f.original = Key(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                   static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()), proto);
  f.reply = Key(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()), proto);
  return f;
}

// The tuple an entry holds for the direction `ref` names.
const FlowKey& TupleOf(const ConntrackTable& ct, uint32_t ref) {
  const ConntrackEntry& e = ct.entry(ref);
  return ref & ConntrackTable::kReplyBit ? e.reply : e.original;
}

// Registers QSBR thread `id` for the scope.
class QsbrThread {
 public:
  QsbrThread(rte_rcu_qsbr* v, unsigned id) : v_(v), id_(id) {
    rte_rcu_qsbr_thread_register(v_, id_);
    rte_rcu_qsbr_thread_online(v_, id_);
  }
  ~QsbrThread() {
    rte_rcu_qsbr_thread_offline(v_, id_);
    rte_rcu_qsbr_thread_unregister(v_, id_);
  }
  void Quiescent() { rte_rcu_qsbr_quiescent(v_, id_); }

 private:
  rte_rcu_qsbr* v_;
  unsigned id_;
};

class ConntrackTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("qs", rte_rcu_qsbr_get_memsize(2), 64));
    rte_rcu_qsbr_init(qsbr_, 2);
    ct_ = Make(64, 2, 1);
    ASSERT_NE(ct_, nullptr);
  }
  std::unique_ptr<ConntrackTable> Make(uint32_t capacity, uint16_t workers,
                                       uint64_t ticks_per_second) {
    ConntrackTable::Config c;
    c.capacity = capacity;
    c.workers = workers;
    c.qsbr = qsbr_;
    c.ticks_per_second = ticks_per_second;
    auto t = ConntrackTable::Create(c);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
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
    e.reply = k.Reversed();
    e.reply.src_ip = ep;
    e.reply.src_port = ep_port;
    e.reply.dst_ip = snat;
    e.reply.dst_port = snat_port;
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
  EXPECT_EQ(ct_->entry(refs[0]).reply, reply);
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
  EXPECT_EQ(seen_by_1.reply.src_ip, 30u);
  // Worker 1 has not passed a quiescent state: the entry is not reused even
  // when worker 0 needs space.
  rte_rcu_qsbr_quiescent(qsbr_, 0);
  ct_->Expire(0, 100, 64);
  auto fresh = Insert(0, Key(11, 20, 1000, 53, kProtoUdp), 31, 53, 40, 5001, 100);
  ASSERT_EQ(fresh.status, ConntrackTable::InsertStatus::kCreated);
  EXPECT_NE(fresh.ref, r.ref);
  EXPECT_EQ(seen_by_1.reply.src_ip, 30u);
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

TEST_F(ConntrackTableTest, CreateRejectsBadConfigs) {
  ConntrackTable::Config c;
  c.qsbr = qsbr_;
  c.capacity = 0;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.capacity = 64;
  c.qsbr = nullptr;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.qsbr = qsbr_;
  c.capacity = ConntrackTable::kReplyBit;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  // 3e9 ms does not fit a signed 32-bit tick difference.
  c.capacity = 64;
  c.ticks_per_second = 1000;
  c.timeouts.tcp_established_s = 3000000;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ConntrackTableTest, BulkAndSingleLookupsAgreeOnThousandsOfRandomKeys) {
  auto ct = Make(8192, 2, 1);
  ASSERT_NE(ct, nullptr);
  std::mt19937_64 rng(7);
  std::vector<Flow> flows;
  std::vector<uint32_t> refs;
  for (int i = 0; i < 6000; ++i) {
    const Flow f = RandomFlow(rng, i % 2 ? kProtoTcp : kProtoUdp);
    const auto r = InsertFlow(*ct, static_cast<uint16_t>(i % 2), f, 0);
    ASSERT_EQ(r.status, Status::kCreated) << i;
    flows.push_back(f);
    refs.push_back(r.ref);
  }
  // A third originals, a third replies, a third absent keys.
  std::vector<FlowKey> keys;
  std::vector<uint32_t> want;
  for (int i = 0; i < 30000; ++i) {
    const size_t j = rng() % flows.size();
    switch (i % 3) {
      case 0:
        keys.push_back(flows[j].original);
        want.push_back(refs[j]);
        break;
      case 1:
        keys.push_back(flows[j].reply);
        want.push_back(refs[j] | ConntrackTable::kReplyBit);
        break;
      default:
        keys.push_back(RandomFlow(rng).original);
        want.push_back(ConntrackTable::kMiss);
    }
  }
  size_t at = 0, hits = 0;
  while (at < keys.size()) {
    const uint32_t n = std::min<uint32_t>(1 + rng() % kBurstSize, keys.size() - at);
    const FlowKey* kp[kBurstSize];
    uint32_t got[kBurstSize];
    for (uint32_t i = 0; i < n; ++i) kp[i] = &keys[at + i];
    ct->LookupBulk(kp, n, got);
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_EQ(got[i], want[at + i]) << at + i;
      ASSERT_EQ(ct->Lookup(keys[at + i]), got[i]) << at + i;
      hits += got[i] != ConntrackTable::kMiss;
    }
    at += n;
  }
  EXPECT_EQ(hits, 20000u);
}

// Flows whose both tuples hash to bucket 0 of `ct`.
std::vector<Flow> FlowsInBucketZero(const ConntrackTable& ct, size_t n) {
  std::mt19937_64 rng(11);
  std::vector<Flow> v;
  const uint32_t mask = ct.bucket_count() - 1;
  while (v.size() < n) {
    const Flow f = RandomFlow(rng);
    if ((ConntrackTable::Hash(f.original) & mask) == 0 &&
        (ConntrackTable::Hash(f.reply) & mask) == 0)
      v.push_back(f);
  }
  return v;
}

TEST_F(ConntrackTableTest, FullBucketsOverflowIntoTheNextOnesAndBackAfterDeletes) {
  auto ct = Make(128, 1, 1);
  ASSERT_NE(ct, nullptr);
  ASSERT_EQ(ct->bucket_count(), 64u);
  const std::vector<Flow> flows = FlowsInBucketZero(*ct, 33);
  QsbrThread self(qsbr_, 0);
  // 32 flows fill buckets 0-7 (the whole probe window of bucket 0): the
  // first half last seen at 0, the second at 20.
  std::vector<uint32_t> refs;
  for (int i = 0; i < 32; ++i) {
    const auto r = InsertFlow(*ct, 0, flows[i], i < 16 ? 0 : 20);
    ASSERT_EQ(r.status, Status::kCreated) << i;
    refs.push_back(r.ref);
  }
  EXPECT_EQ(ct->OverflowedBuckets(), ConntrackTable::kMaxProbe - 1);
  // The window is full although entries are free.
  EXPECT_EQ(InsertFlow(*ct, 0, flows[32], 20).status, Status::kFull);
  EXPECT_EQ(ct->InUse(), 32u);
  auto check = [&](int from, int to) {
    for (int i = 0; i < 32; ++i) {
      const bool live = i >= from && i < to;
      const FlowKey* kp[2] = {&flows[i].original, &flows[i].reply};
      uint32_t got[2];
      ct->LookupBulk(kp, 2, got);
      EXPECT_EQ(got[0], live ? refs[i] : ConntrackTable::kMiss) << i;
      EXPECT_EQ(got[1], live ? refs[i] | ConntrackTable::kReplyBit : ConntrackTable::kMiss) << i;
      EXPECT_EQ(ct->Lookup(flows[i].original), got[0]) << i;
      EXPECT_EQ(ct->Lookup(flows[i].reply), got[1]) << i;
    }
    EXPECT_EQ(ct->Lookup(flows[32].original), ConntrackTable::kMiss);
  };
  check(0, 32);
  // Unreplied UDP: 30 s. The first half (buckets 0-3) goes; the second half,
  // placed past those buckets, must stay reachable through them.
  EXPECT_EQ(ct->Expire(0, 40, 128), 16u);
  check(16, 32);
  EXPECT_EQ(ct->OverflowedBuckets(), ConntrackTable::kMaxProbe - 1);
  // Freed slots take new keys at once (entries wait for the grace period).
  self.Quiescent();
  const auto again = InsertFlow(*ct, 0, flows[32], 40);
  ASSERT_EQ(again.status, Status::kCreated);
  EXPECT_EQ(ct->Lookup(flows[32].reply), again.ref | ConntrackTable::kReplyBit);
  EXPECT_EQ(ct->Expire(0, 100, 128), 17u);
  check(0, 0);
  EXPECT_EQ(ct->Lookup(flows[32].original), ConntrackTable::kMiss);
  EXPECT_EQ(ct->OverflowedBuckets(), 0u);
}

TEST_F(ConntrackTableTest, KeysWithTheSameHashAreToldApartByTheFullKey) {
  // Two tuples with one CRC (same bucket, same signature), found by the
  // birthday bound (~2^16 draws).
  std::mt19937_64 rng(13);
  std::unordered_map<uint32_t, FlowKey> seen;
  FlowKey a, b;
  for (;;) {
    const FlowKey k = RandomFlow(rng).original;
    auto [it, fresh] = seen.emplace(ConntrackTable::Hash(k), k);
    if (!fresh && !(it->second == k)) {
      a = it->second;
      b = k;
      break;
    }
  }
  auto ct = Make(64, 1, 1);
  ASSERT_NE(ct, nullptr);
  const auto ra = InsertFlow(*ct, 0, Flow{a, a.Reversed()}, 0);
  ASSERT_EQ(ra.status, Status::kCreated);
  const FlowKey* kp[2] = {&a, &b};
  uint32_t got[2];
  ct->LookupBulk(kp, 2, got);
  EXPECT_EQ(got[0], ra.ref);
  EXPECT_EQ(got[1], ConntrackTable::kMiss);
  EXPECT_EQ(ct->Lookup(b), ConntrackTable::kMiss);
  const auto rb = InsertFlow(*ct, 0, Flow{b, b.Reversed()}, 0);
  ASSERT_EQ(rb.status, Status::kCreated);
  // b sits after a in the bucket: the bulk path's first candidate is a's.
  ct->LookupBulk(kp, 2, got);
  EXPECT_EQ(got[0], ra.ref);
  EXPECT_EQ(got[1], rb.ref);
  EXPECT_EQ(ct->Lookup(b), rb.ref);
}

TEST_F(ConntrackTableTest, ExpiredEntryIsReusedOnlyAfterEveryWorkerPassedAQuiescentState) {
  QsbrThread w0(qsbr_, 0), w1(qsbr_, 1);
  const FlowKey orig = Key(10, 20, 1000, 53, kProtoUdp);
  auto r = Insert(0, orig, 30, 53, 40, 5000, 0);
  ASSERT_EQ(r.status, Status::kCreated);
  EXPECT_EQ(ct_->Expire(0, 100, 64), 1u);
  EXPECT_EQ(ct_->Lookup(orig), ConntrackTable::kMiss);
  EXPECT_EQ(ct_->Lookup(Key(30, 40, 53, 5000, kProtoUdp)), ConntrackTable::kMiss);
  // Worker 0's slice has 32 entries; 31 are free, the expired one is not.
  w0.Quiescent();
  for (uint16_t i = 0; i < 31; ++i) {
    auto f = Insert(0, Key(11, 20, 1000 + i, 53, kProtoUdp), 31, 53, 40, 6000 + i, 100);
    ASSERT_EQ(f.status, Status::kCreated) << i;
    EXPECT_NE(f.ref, r.ref);
  }
  EXPECT_EQ(Insert(0, Key(12, 20, 1000, 53, kProtoUdp), 31, 53, 40, 7000, 100).status,
            Status::kFull);
  w1.Quiescent();
  auto reused = Insert(0, Key(12, 20, 1000, 53, kProtoUdp), 31, 53, 40, 7000, 100);
  ASSERT_EQ(reused.status, Status::kCreated);
  EXPECT_EQ(reused.ref, r.ref);
  EXPECT_EQ(ct_->entry(reused.ref).original, Key(12, 20, 1000, 53, kProtoUdp));
}

TEST_F(ConntrackTableTest, TouchWritesLastSeenOncePerCoarseTickAndAccumulatesState) {
  // 2^20 ticks/s: the coarse tick is 2^10 ticks (~1 ms).
  auto ct = Make(64, 1, 1 << 20);
  ASSERT_NE(ct, nullptr);
  const Flow f{Key(10, 20, 1000, 80), Key(30, 40, 8080, 5000)};
  const auto r = InsertFlow(*ct, 0, f, 0);
  ASSERT_EQ(r.status, Status::kCreated);
  ConntrackEntry& e = ct->entry(r.ref);
  EXPECT_EQ(e.last_seen.load(), 0u);
  ct->Touch(r.ref, 0x02, 5000);  // SYN
  const uint32_t t = e.last_seen.load();
  EXPECT_EQ(t, ct->Tick(5000));
  EXPECT_EQ(t, 5000u >> 10);
  ct->Touch(r.ref | ConntrackTable::kReplyBit, 0x12, 5100);  // same tick
  EXPECT_EQ(e.last_seen.load(), t);
  ct->Touch(r.ref, 0x10, 3000);  // another worker's older clock
  EXPECT_EQ(e.last_seen.load(), t);
  EXPECT_EQ(e.state.load(), ConntrackEntry::kSeenReply);
  ct->Touch(r.ref, 0x11, 5000 + 1024);  // FIN, next tick
  EXPECT_EQ(e.last_seen.load(), t + 1);
  EXPECT_EQ(e.state.load(), ConntrackEntry::kSeenReply | ConntrackEntry::kFin);
  ct->Touch(r.ref | ConntrackTable::kReplyBit, 0x04, 5000 + 1024);  // RST
  EXPECT_EQ(e.state.load(),
            ConntrackEntry::kSeenReply | ConntrackEntry::kFin | ConntrackEntry::kRst);
  // RST: 10 s = 10 * 1024 ticks after the last one.
  QsbrThread self(qsbr_, 0);
  const uint64_t last = uint64_t{t + 1} << 10;
  EXPECT_EQ(ct->Expire(0, last + (uint64_t{10 * 1024} << 10), 64), 0u);
  EXPECT_EQ(ct->Expire(0, last + (uint64_t{10 * 1024 + 1} << 10), 64), 1u);
}

TEST_F(ConntrackTableTest, IdleTimesSurviveTheTickWrapAndIgnoreLaterClocks) {
  QsbrThread self(qsbr_, 0);
  const uint64_t start = 0xfffffff0;  // ticks_per_second 1: tick = now
  auto r = Insert(0, Key(10, 20, 1000, 53, kProtoUdp), 30, 53, 40, 5000, start);
  ASSERT_EQ(r.status, Status::kCreated);
  // Another worker touched it with a clock ahead of the owner's.
  ct_->Touch(r.ref, 0, start + 5);
  EXPECT_EQ(ct_->Expire(0, start, 64), 0u);
  EXPECT_EQ(ct_->Expire(0, start + 35, 64), 0u);  // tick wrapped to 0x13: idle 30
  EXPECT_EQ(ct_->Expire(0, start + 36, 64), 1u);
}

TEST_F(ConntrackTableTest, RacingInsertsOfOneFlowShareOneEntry) {
  auto ct = Make(4096, 2, 1);
  ASSERT_NE(ct, nullptr);
  std::mt19937_64 rng(3);
  std::vector<Flow> flows(1500);
  for (auto& f : flows) f = RandomFlow(rng, kProtoTcp);
  // Flows [1000, 1500): worker 1 races with a different original for the
  // same reply tuple.
  std::vector<Flow> rivals(flows.begin() + 1000, flows.end());
  for (auto& f : rivals) f.original.src_port ^= 1;
  std::vector<ConntrackTable::InsertResult> got[2];
  std::atomic<int> ready{0};
  auto run = [&](uint16_t w) {
    got[w].reserve(flows.size());
    ready.fetch_add(1);
    while (ready.load() < 2) {
    }
    for (size_t i = 0; i < flows.size(); ++i)
      got[w].push_back(InsertFlow(*ct, w, w == 1 && i >= 1000 ? rivals[i - 1000] : flows[i], 0));
  };
  std::thread a(run, 0), b(run, 1);
  a.join();
  b.join();
  for (size_t i = 0; i < flows.size(); ++i) {
    const auto& x = got[0][i];
    const auto& y = got[1][i];
    const bool x_won = x.status == Status::kCreated;
    ASSERT_NE(x_won, y.status == Status::kCreated) << i;
    const auto& loser = x_won ? y : x;
    const auto& winner = x_won ? x : y;
    if (i < 1000) {
      EXPECT_EQ(loser.status, Status::kExists) << i;
      EXPECT_EQ(loser.ref, winner.ref) << i;
    } else {
      EXPECT_EQ(loser.status, Status::kReplyClash) << i;
    }
    EXPECT_EQ(ct->Lookup(flows[i].reply), winner.ref | ConntrackTable::kReplyBit) << i;
  }
  EXPECT_EQ(ct->InUse(), flows.size());
}

TEST_F(ConntrackTableTest, ReaderNeverSeesAnotherKeysEntryWhileTheOwnerInsertsAndExpires) {
  // Small timeouts and a pool larger than the slice, so that entries are
  // expired and reused many times while the reader runs. The assertions do
  // not depend on how the two threads are scheduled.
  auto ct = Make(1024, 2, 1);
  ASSERT_NE(ct, nullptr);
  std::mt19937_64 rng(5);
  std::vector<Flow> pool(1500);
  for (auto& f : pool) f = RandomFlow(rng);
  std::vector<FlowKey> keys;
  for (const auto& f : pool) {
    keys.push_back(f.original);
    keys.push_back(f.reply);
  }
  // Flows the writer leaves in the table at the end; the reader checks
  // them once it sees `done`.
  constexpr size_t kFinal = 64;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> wrong{0}, final_hits{0}, sections{0};
  std::thread reader([&] {
    QsbrThread self(qsbr_, 1);
    std::mt19937_64 r(9);
    // One read-side section: 8 bursts, then every hit checked again, so that
    // refs are held across bursts as a worker holds them across stages.
    constexpr uint32_t kBursts = 8;
    const FlowKey* kp[kBursts][kBurstSize];
    uint32_t got[kBursts][kBurstSize];
    auto verify = [&](uint32_t bursts) {
      for (uint32_t b = 0; b < bursts; ++b)
        for (uint32_t i = 0; i < kBurstSize; ++i)
          if (got[b][i] != ConntrackTable::kMiss && !(TupleOf(*ct, got[b][i]) == *kp[b][i]))
            wrong.fetch_add(1);
    };
    while (!done.load()) {
      for (uint32_t b = 0; b < kBursts; ++b) {
        for (auto& k : kp[b]) k = &keys[r() % keys.size()];
        ct->LookupBulk(kp[b], kBurstSize, got[b]);
        const uint32_t one = ct->Lookup(*kp[b][0]);
        if (one != ConntrackTable::kMiss && !(TupleOf(*ct, one) == *kp[b][0])) wrong.fetch_add(1);
      }
      verify(kBursts);
      sections.fetch_add(1);
      self.Quiescent();
    }
    for (uint32_t b = 0; b < 2 * kFinal / kBurstSize; ++b) {
      for (uint32_t i = 0; i < kBurstSize; ++i) kp[b][i] = &keys[b * kBurstSize + i];
      ct->LookupBulk(kp[b], kBurstSize, got[b]);
      for (uint32_t i = 0; i < kBurstSize; ++i) final_hits += got[b][i] != ConntrackTable::kMiss;
    }
    verify(2 * kFinal / kBurstSize);
  });
  {
    QsbrThread self(qsbr_, 0);
    uint64_t now = 0;
    // At least 3000 ticks of churn and 5000 read-side sections, however the
    // threads are scheduled.
    for (; now < 3000 || sections.load() < 5000; ++now) {
      for (int i = 0; i < 16; ++i) InsertFlow(*ct, 0, pool[rng() % pool.size()], now);
      ct->Expire(0, now, 64);  // unreplied UDP: 30 ticks
      self.Quiescent();
    }
    // Empty the table, then track the final flows (waiting, as aging does,
    // for the reader's quiescent states to free entries).
    now += 1000;
    while (ct->InUse() > 0) {
      ct->Expire(0, now, 1024);
      self.Quiescent();
    }
    for (size_t i = 0; i < kFinal; ++i) {
      while (InsertFlow(*ct, 0, pool[i], now).status != Status::kCreated) {
        ct->Expire(0, now, 0);
        self.Quiescent();
      }
    }
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(wrong.load(), 0u);
  EXPECT_EQ(final_hits.load(), 2 * kFinal);
}

// Another thread asks, the owner removes: only entries that still hold the
// flow the request names, only by the owner, only when it takes requests.
TEST_F(ConntrackTableTest, RemovalRequestsAreCarriedOutByTheOwnerForTheFlowTheyName) {
  const FlowKey a = Key(10, 20, 1000, 53, kProtoUdp);
  const FlowKey b = Key(10, 20, 1001, 53, kProtoUdp);
  auto ra = Insert(1, a, 30, 53, 0, 0, 1);  // worker 1's slice (entries 32..63)
  auto rb = Insert(1, b, 31, 53, 0, 0, 1);
  ASSERT_EQ(ra.status, Status::kCreated);
  ASSERT_EQ(rb.status, Status::kCreated);
  EXPECT_EQ(ct_->OwnerOf(ra.ref), 1);
  EXPECT_EQ(ct_->OwnerOf(0), 0);
  EXPECT_EQ(ct_->OwnerOf(63), 1);
  const ConntrackTable::EntrySnapshot snap = ct_->SnapshotRacy(ra.ref);
  ASSERT_TRUE(snap.in_use);
  EXPECT_EQ(snap.original, a);
  EXPECT_EQ(snap.reply.src_ip, 30u);
  // A request with the wrong check (the entry was reused for another flow
  // since the scan) is refused; the right one is carried out, by the owner.
  ASSERT_TRUE(ct_->RequestRemoval(rb.ref, ConntrackTable::RemovalCheck(a, snap.reply)));
  ASSERT_TRUE(ct_->RequestRemoval(ra.ref, ConntrackTable::RemovalCheck(snap.original, snap.reply)));
  EXPECT_FALSE(ct_->HasRemovalRequests(0));
  ASSERT_TRUE(ct_->HasRemovalRequests(1));
  EXPECT_NE(ct_->Lookup(a), ConntrackTable::kMiss);  // nothing happens before the owner runs
  EXPECT_EQ(ct_->TakeRemovalRequests(1, 16), 1u);
  EXPECT_FALSE(ct_->HasRemovalRequests(1));
  EXPECT_EQ(ct_->Lookup(a), ConntrackTable::kMiss);
  EXPECT_EQ(ct_->Lookup(a.Reversed()), ConntrackTable::kMiss);
  EXPECT_NE(ct_->Lookup(b), ConntrackTable::kMiss);
  EXPECT_EQ(ct_->InUse(), 1u);
  // A second request for an entry already gone does nothing.
  ASSERT_TRUE(ct_->RequestRemoval(ra.ref, ConntrackTable::RemovalCheck(a, snap.reply)));
  EXPECT_EQ(ct_->TakeRemovalRequests(1, 16), 0u);
  EXPECT_FALSE(ct_->SnapshotRacy(ra.ref).in_use);
}

TEST_F(ConntrackTableTest, AFullRemovalRingRefusesAndTheBudgetBoundsAPoll) {
  ConntrackTable::Config c;
  c.capacity = 64;
  c.workers = 1;
  c.qsbr = qsbr_;
  c.removal_ring = 4;  // 3 usable
  auto t = ConntrackTable::Create(c);
  ASSERT_TRUE(t.ok()) << t.status();
  ConntrackTable& ct = **t;
  std::vector<uint32_t> refs;
  for (uint16_t i = 0; i < 4; ++i) {
    ConntrackEntry e;
    e.original = Key(10, 20, 2000 + i, 53, kProtoUdp);
    e.reply = e.original.Reversed();
    auto r = ct.Insert(0, e, 1);
    ASSERT_EQ(r.status, Status::kCreated);
    refs.push_back(r.ref);
  }
  auto check = [&](uint32_t ref) {
    return ConntrackTable::RemovalCheck(ct.entry(ref).original, ct.entry(ref).reply);
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ct.RequestRemoval(refs[i], check(refs[i])));
  EXPECT_FALSE(ct.RequestRemoval(refs[3], check(refs[3])));  // full: nothing posted
  EXPECT_EQ(ct.TakeRemovalRequests(0, 2), 2u);
  EXPECT_TRUE(ct.HasRemovalRequests(0));
  EXPECT_TRUE(ct.RequestRemoval(refs[3], check(refs[3])));
  EXPECT_EQ(ct.TakeRemovalRequests(0, 16), 2u);
  EXPECT_EQ(ct.InUse(), 0u);
  c.removal_ring = 6;
  EXPECT_EQ(ConntrackTable::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ConntrackTableTest, BytesPerFlowComesFromTheAllocationsAndStaysWithin128) {
  // 2^20 (the node default), the benchmarks' 1M + 1/8 + 64, and the two
  // sides of a power-of-two rounding of the bucket count (71% and 35% load).
  size_t figures[4];
  const uint32_t capacities[4] = {1 << 20, 1125064, 741000, 742000};
  for (int i = 0; i < 4; ++i) {
    auto ct = Make(capacities[i], 2, 1);
    ASSERT_NE(ct, nullptr);
    figures[i] = ct->BytesPerFlow();
    // Entry plus at least the two slots of a full table.
    EXPECT_GE(figures[i], sizeof(ConntrackEntry) + 2 * sizeof(uint64_t)) << capacities[i];
    EXPECT_LE(figures[i], 128u) << capacities[i];
  }
  // Twice the buckets for 0.1% more flows.
  EXPECT_GE(figures[3], figures[2] + 20);
}

}  // namespace
}  // namespace sluice
