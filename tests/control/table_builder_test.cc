// control/table_builder.h: a reload is all or nothing (generation and static
// neighbours together).
#include "control/table_builder.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "gtest/gtest.h"
#include "tests/fixtures/node_harness.h"

namespace sluice::testing {
namespace {

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tb_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
    publisher_ = std::make_unique<TablePublisher>(qsbr_);
    NeighborTable::Config nc;
    nc.qsbr = qsbr_;
    nc.static_capacity = 4;  // node-228's model has exactly 4
    auto t = NeighborTable::Create(nc);
    ASSERT_TRUE(t.ok()) << t.status();
    neighbors_ = *std::move(t);
    ASSERT_TRUE(Reload(Node228Model()).ok());
  }
  void TearDown() override {
    publisher_.reset();
    neighbors_.reset();
    rte_free(qsbr_);
  }
  absl::Status Reload(const ClusterModel& m) {
    auto prepared = PrepareReload(m, ++generation_, *neighbors_);
    if (!prepared.ok()) return prepared.status();
    return CommitReload(*std::move(prepared), *neighbors_, *publisher_);
  }
  bool Has(PortRole port, const char* ip, MacAddress* mac = nullptr) {
    MacAddress m;
    return neighbors_->Lookup(port, Ip(ip), mac != nullptr ? mac : &m);
  }

  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<TablePublisher> publisher_;
  std::unique_ptr<NeighborTable> neighbors_;
  uint64_t generation_ = 0;
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
  EXPECT_EQ(publisher_->Current()->services->size(), 3u);  // ssh ClusterIP + NodePort, web
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
  m.services.push_back(m.services[1]);  // but default/web is listed twice
  m.services.back().name = "web-copy";
  EXPECT_EQ(Reload(m).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(publisher_->Current(), before);
  EXPECT_TRUE(Has(PortRole::kPods, Example::kWeb1));
}

TEST_F(ReloadTest, AModelThatDropsAStaticNeighbourRemovesIt) {
  ClusterModel m = Node228Model();
  m.node.neighbors.erase(m.node.neighbors.begin() + 1);  // node-226
  m.node.neighbors[1].mac = Mac("02:00:00:00:01:e3");    // node-227 moved
  ASSERT_TRUE(Reload(m).ok());
  EXPECT_EQ(publisher_->Current()->generation, generation_);
  EXPECT_FALSE(Has(PortRole::kUplink, Example::kNode226));
  MacAddress mac;
  ASSERT_TRUE(Has(PortRole::kUplink, Example::kNode227, &mac));
  EXPECT_EQ(mac, Mac("02:00:00:00:01:e3"));
  EXPECT_EQ(neighbors_->static_count(), 3u);
}

}  // namespace
}  // namespace sluice::testing
