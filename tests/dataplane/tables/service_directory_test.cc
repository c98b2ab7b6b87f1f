// dataplane/tables/service_directory.h: keys find their Service port's slot
// and its current endpoint set; what readers may hold is freed only after a
// grace period; released slots and deleted keys' positions come back;
// readers running against a writer never see a half-published set.
#include "dataplane/tables/service_directory.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace sluice {
namespace {

class ServiceDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sd_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
  }
  void TearDown() override {
    dir_.reset();
    rte_free(qsbr_);
  }
  void Make(uint32_t ports, uint32_t keys, uint32_t defer_queue = 64) {
    ServiceDirectory::Config c;
    c.qsbr = qsbr_;
    c.service_ports = ports;
    c.keys = keys;
    c.defer_queue = defer_queue;
    auto d = ServiceDirectory::Create(c);
    ASSERT_TRUE(d.ok()) << d.status();
    dir_ = *std::move(d);
  }
  // A set of `n` endpoints 10.0.0.1.., each port `tag`, `n` local ones too.
  const EndpointSet* Set(uint32_t n, uint16_t tag) {
    auto s = dir_->NewEndpointSet(n, n, EndpointSet::kMasqueradeExternal);
    EXPECT_TRUE(s.ok()) << s.status();
    for (uint32_t i = 0; i < 2 * n; ++i) (*s)->endpoints()[i] = {0x0a000001 + i % n, tag, 0};
    return *s;
  }
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<ServiceDirectory> dir_;
};

TEST_F(ServiceDirectoryTest, KeysFindTheirSlotAndItsCurrentEndpoints) {
  Make(8, 16);
  const uint32_t a = dir_->AllocateSlot(Set(2, 80), "default/web:http");
  const uint32_t b = dir_->AllocateSlot(dir_->empty_set(), "default/none");
  const ServiceKey cip{0x0a60640a, 80, kProtoTcp, 0};
  const ServiceKey np{0, 30080, kProtoTcp, 0};
  const ServiceKey other{0x0a60640b, 80, kProtoTcp, 0};
  ASSERT_TRUE(dir_->AddKey(cip, MakeServiceRef(a, ServiceEntryKind::kClusterIp)).ok());
  ASSERT_TRUE(dir_->AddKey(np, MakeServiceRef(a, ServiceEntryKind::kNodePort)).ok());
  ASSERT_TRUE(dir_->AddKey(other, MakeServiceRef(b, ServiceEntryKind::kClusterIp)).ok());
  EXPECT_EQ(dir_->key_count(), 3u);
  EXPECT_EQ(dir_->slot_count(), 2u);
  const ServiceKey miss{0x0a60640a, 81, kProtoTcp, 0};
  const ServiceKey* keys[4] = {&cip, &miss, &np, &other};
  ServiceRef refs[4];
  dir_->LookupBulk(keys, 4, refs);
  EXPECT_EQ(refs[0], MakeServiceRef(a, ServiceEntryKind::kClusterIp));
  EXPECT_EQ(refs[1], kNoService);
  EXPECT_EQ(ServiceKindOf(refs[2]), ServiceEntryKind::kNodePort);
  EXPECT_EQ(ServiceSlotOf(refs[2]), a);
  EXPECT_EQ(dir_->Lookup(other), refs[3]);
  const EndpointSet& e = dir_->Endpoints(refs[0]);
  EXPECT_EQ(e.all_count, 2u);
  EXPECT_EQ(e.local_count, 2u);
  EXPECT_EQ(e.endpoints()[1].ip, 0x0a000002u);
  EXPECT_EQ(&dir_->Endpoints(refs[3]), dir_->empty_set());
  EXPECT_EQ(dir_->name(a), "default/web:http");
  // A key's ref rewritten in place (its kind changed).
  ASSERT_TRUE(dir_->AddKey(other, MakeServiceRef(b, ServiceEntryKind::kExternalIp)).ok());
  EXPECT_EQ(ServiceKindOf(dir_->Lookup(other)), ServiceEntryKind::kExternalIp);
  EXPECT_EQ(dir_->key_count(), 3u);
  dir_->RemoveKey(np);
  EXPECT_EQ(dir_->Lookup(np), kNoService);
  EXPECT_EQ(dir_->key_count(), 2u);
}

TEST_F(ServiceDirectoryTest, AReplacedSetIsFreedOnlyAfterEveryReaderPassedAQuiescentState) {
  Make(4, 8);
  rte_rcu_qsbr_thread_register(qsbr_, 0);
  rte_rcu_qsbr_thread_online(qsbr_, 0);
  const EndpointSet* first = Set(3, 1);
  const uint32_t slot = dir_->AllocateSlot(first, "a/b");
  const size_t one_set = dir_->endpoint_set_bytes();
  EXPECT_EQ(one_set, sizeof(EndpointSet) + 6 * sizeof(Endpoint));
  ASSERT_TRUE(
      dir_->AddKey({1, 2, kProtoUdp, 0}, MakeServiceRef(slot, ServiceEntryKind::kClusterIp)).ok());
  // The reader holds the first set (it looked it up before the publish).
  const EndpointSet& held = dir_->Endpoints(dir_->Lookup({1, 2, kProtoUdp, 0}));
  dir_->Publish(slot, Set(1, 2));
  EXPECT_EQ(dir_->current(slot)->all_count, 1u);
  EXPECT_EQ(dir_->deferred(), 1u);
  dir_->Reclaim();  // the reader has not reported: the set stays
  EXPECT_EQ(dir_->deferred(), 1u);
  EXPECT_EQ(held.all_count, 3u);
  EXPECT_EQ(held.endpoints()[0].port, 1);
  rte_rcu_qsbr_quiescent(qsbr_, 0);
  dir_->Reclaim();
  EXPECT_EQ(dir_->deferred(), 0u);
  EXPECT_EQ(dir_->endpoint_set_bytes(), sizeof(EndpointSet) + 2 * sizeof(Endpoint));
  EXPECT_EQ(dir_->grace_waits(), 0u);  // nobody waited
  rte_rcu_qsbr_thread_offline(qsbr_, 0);
  rte_rcu_qsbr_thread_unregister(qsbr_, 0);
}

TEST_F(ServiceDirectoryTest, ReleasedSlotsAndDeletedKeysPositionsComeBack) {
  Make(2, 8);
  std::vector<ServiceKey> keys;
  for (uint16_t i = 0; i < 8; ++i) keys.push_back({0x0a600000u + i, 80, kProtoTcp, 0});
  const uint32_t a = dir_->AllocateSlot(Set(1, 1), "a");
  const uint32_t b = dir_->AllocateSlot(Set(1, 2), "b");
  EXPECT_FALSE(dir_->CanAllocateSlot());
  for (const ServiceKey& k : keys)
    ASSERT_TRUE(dir_->AddKey(k, MakeServiceRef(a, ServiceEntryKind::kClusterIp)).ok());
  // Every position is taken: the next new key needs a deleted one's back,
  // after its grace period (no reader is online, so it is over at once).
  dir_->RemoveKey(keys[0]);
  const ServiceKey fresh{0x0a610000, 80, kProtoTcp, 0};
  ASSERT_TRUE(dir_->AddKey(fresh, MakeServiceRef(b, ServiceEntryKind::kClusterIp)).ok());
  EXPECT_EQ(dir_->key_count(), 8u);
  EXPECT_EQ(ServiceSlotOf(dir_->Lookup(fresh)), b);
  for (size_t i = 1; i < keys.size(); ++i) dir_->RemoveKey(keys[i]);
  dir_->RemoveKey(fresh);
  dir_->ReleaseSlot(a);
  EXPECT_TRUE(dir_->CanAllocateSlot());
  EXPECT_EQ(dir_->slot_count(), 1u);
  const uint32_t c = dir_->AllocateSlot(dir_->empty_set(), "c");
  EXPECT_EQ(c, a);  // the released index, once its grace period was over
  EXPECT_EQ(dir_->name(c), "c");
  EXPECT_EQ(dir_->deferred(), 0u);
}

TEST_F(ServiceDirectoryTest, AFullDeferQueueWaitsForAGracePeriodInsteadOfFailing) {
  Make(4, 8, /*defer_queue=*/4);
  const uint32_t slot = dir_->AllocateSlot(Set(1, 0), "a");
  for (uint16_t i = 1; i <= 20; ++i) dir_->Publish(slot, Set(1, i));
  EXPECT_EQ(dir_->current(slot)->endpoints()[0].port, 20);
  dir_->ReclaimAll();
  EXPECT_EQ(dir_->deferred(), 0u);
  EXPECT_EQ(dir_->endpoint_set_bytes(), sizeof(EndpointSet) + 2 * sizeof(Endpoint));
}

TEST_F(ServiceDirectoryTest, CapacitiesAreCheckedAtCreationAndSetsAreNeverTruncated) {
  ServiceDirectory::Config c;
  EXPECT_EQ(ServiceDirectory::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.qsbr = qsbr_;
  c.service_ports = 0;
  EXPECT_EQ(ServiceDirectory::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.service_ports = 4;
  c.max_endpoints_per_set = ServiceDirectory::kMaxEndpointsLimit + 1;
  EXPECT_EQ(ServiceDirectory::Create(c).status().code(), absl::StatusCode::kInvalidArgument);
  c.max_endpoints_per_set = 3;
  auto d = ServiceDirectory::Create(c);
  ASSERT_TRUE(d.ok());
  auto s = (*d)->NewEndpointSet(4, 0, 0);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.status().message(), "4 endpoints, more than the 3 a Service port holds");
  EXPECT_GT((*d)->fixed_bytes(), 4 * sizeof(ServicePortSlot));
}

// A reader on another thread looks a key up and reads its set while the
// writer publishes thousands of sets of changing sizes and frees the old
// ones after grace periods (ASan reports any read of a freed set). Each set
// is self-describing: every endpoint's port is the set's all_count.
TEST_F(ServiceDirectoryTest, AConcurrentReaderOnlyEverSeesWholeSets) {
  Make(4, 8, /*defer_queue=*/16);
  const ServiceKey key{0x0a600001, 53, kProtoUdp, 0};
  auto set_of = [&](uint32_t n) {
    auto s = dir_->NewEndpointSet(n, 0, 0);
    for (uint32_t i = 0; i < n; ++i)
      (*s)->endpoints()[i] = {0x0a000001 + i, static_cast<uint16_t>(n), 0};
    return *s;
  };
  const uint32_t slot = dir_->AllocateSlot(set_of(1), "a");
  ASSERT_TRUE(dir_->AddKey(key, MakeServiceRef(slot, ServiceEntryKind::kClusterIp)).ok());
  rte_rcu_qsbr_thread_register(qsbr_, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, bad{0};
  std::thread reader([&] {
    rte_rcu_qsbr_thread_online(qsbr_, 0);
    while (!stop.load(std::memory_order_acquire)) {
      const ServiceKey* k = &key;
      ServiceRef ref;
      dir_->LookupBulk(&k, 1, &ref);
      if (ref != kNoService) {
        const EndpointSet& s = dir_->Endpoints(ref);
        for (uint32_t i = 0; i < s.all_count; ++i)
          if (s.endpoints()[i].port != s.all_count) bad.fetch_add(1);
        reads.fetch_add(1, std::memory_order_relaxed);
      }
      rte_rcu_qsbr_quiescent(qsbr_, 0);
    }
    rte_rcu_qsbr_thread_offline(qsbr_, 0);
  });
  for (uint32_t i = 0; i < 4000; ++i) {
    dir_->Publish(slot, set_of(1 + i % 37));
    if (i % 100 == 50) {  // the key comes and goes too
      dir_->RemoveKey(key);
      ASSERT_TRUE(dir_->AddKey(key, MakeServiceRef(slot, ServiceEntryKind::kClusterIp)).ok());
    }
  }
  // Let the reader see the last set before stopping.
  while (reads.load() < 100) std::this_thread::yield();
  stop.store(true, std::memory_order_release);
  reader.join();
  rte_rcu_qsbr_thread_unregister(qsbr_, 0);
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  dir_->ReclaimAll();
  EXPECT_EQ(dir_->deferred(), 0u);
}

}  // namespace
}  // namespace sluice
