#include "control/desired_state.h"

#include <variant>

#include "api/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;

std::vector<std::string> Names(const std::vector<api::Message>& ms) {
  std::vector<std::string> out;
  for (const api::Message& m : ms) out.push_back(api::MessageTypeName(api::TypeOf(m)));
  return out;
}

FlannelLease Lease(uint32_t subnet, uint32_t public_ip) {
  FlannelLease l;
  l.subnet = {subnet, 24};
  l.public_ip = public_ip;
  l.backend_type = "vxlan";
  l.vtep_mac = {0x0e, 0, 0, 0, 0, static_cast<uint8_t>(public_ip)};
  return l;
}

api::ServicePort Port(const std::string& name, uint32_t vip) {
  api::ServicePort p;
  p.key = {"default", name, "", L4Protocol::kTcp};
  p.type = "ClusterIP";
  p.port = 80;
  p.cluster_ips = {vip};
  return p;
}

DesiredState Base() {
  DesiredState s;
  s.node = api::NodeSettings{};
  s.node->node.name = "node-228";
  s.leases[{0x0af41900, 24}] = Lease(0x0af41900, 0x0a0a64e3);
  s.leases[{0x0af41a00, 24}] = Lease(0x0af41a00, 0x0a0a64e4);
  s.ports["default/web/TCP"] = Port("web", 0x0a60640a);
  s.endpoints["default/web/TCP"] = api::EndpointSetReplace{s.ports["default/web/TCP"].key, {}};
  s.neighbors = std::vector<NeighborEntry>{};
  return s;
}

TEST(DesiredState, AFullSyncNamesEveryObjectBetweenItsEpochMarks) {
  EXPECT_THAT(Names(FullSyncMessages(Base(), 7)),
              ElementsAre("SyncBegin", "NodeSettings", "LeaseUpsert", "LeaseUpsert",
                          "ServicePortUpsert", "EndpointSetReplace", "NeighborsReplace",
                          "SyncEnd"));
}

TEST(DesiredState, EqualStatesNeedNoMessages) {
  EXPECT_TRUE(DeltaMessages(Base(), Base()).empty());
}

TEST(DesiredState, DeltasCarryOnlyWhatChangedDeletionsFirst) {
  DesiredState to = Base();
  to.leases.erase({0x0af41900, 24});
  to.leases[{0x0af41800, 24}] = Lease(0x0af41800, 0x0a0a64e3);  // node-227 moved subnet
  to.endpoints["default/web/TCP"].endpoints.push_back(api::Endpoint{0x0af41914, 8080});
  api::ServicePort dns = Port("dns", 0x0a60000a);
  to.ports["default/dns/TCP"] = dns;
  to.ports.erase("default/web/TCP");
  to.endpoints.erase("default/web/TCP");
  const std::vector<api::Message> d = DeltaMessages(Base(), to);
  EXPECT_THAT(Names(d), ElementsAre("LeaseDelete", "LeaseUpsert", "ServicePortDelete",
                                    "ServicePortUpsert"));
  EXPECT_EQ(std::get<api::LeaseDelete>(d[0]).subnet.address, 0x0af41900u);
}

TEST(DesiredState, AnEndpointSetGoneWhileItsPortStaysBecomesEmpty) {
  DesiredState from = Base();
  from.endpoints["default/web/TCP"].endpoints.push_back(api::Endpoint{0x0af41914, 8080});
  DesiredState to = Base();
  to.endpoints.erase("default/web/TCP");
  const std::vector<api::Message> d = DeltaMessages(from, to);
  ASSERT_THAT(Names(d), ElementsAre("EndpointSetReplace"));
  EXPECT_TRUE(std::get<api::EndpointSetReplace>(d[0]).endpoints.empty());
}

TEST(DesiredState, ADeltaOverSomeKeysComparesOnlyThemAndApplyingItConverges) {
  DesiredState from = Base();
  from.ports["default/api/TCP"] = Port("api", 0x0a60000b);
  from.endpoints["default/api/TCP"] = api::EndpointSetReplace{from.ports["default/api/TCP"].key, {}};
  // What a watch event's update holds: only the keys it touched. web got an
  // endpoint, dns is new, api (not among the keys) is not looked at.
  DesiredState to = Base();
  to.endpoints["default/web/TCP"].endpoints.push_back(api::Endpoint{0x0af41914, 8080});
  to.ports["default/dns/TCP"] = Port("dns", 0x0a60000a);
  to.endpoints["default/dns/TCP"] = api::EndpointSetReplace{to.ports["default/dns/TCP"].key, {}};
  const std::set<std::string> keys = {"default/web/TCP", "default/dns/TCP", "default/gone/TCP"};
  const std::vector<api::Message> d = DeltaMessages(from, to, &keys);
  EXPECT_THAT(Names(d), ElementsAre("ServicePortUpsert", "EndpointSetReplace", "EndpointSetReplace"));
  // The whole-state diff would delete api, which the update did not mention.
  EXPECT_THAT(Names(DeltaMessages(from, to)), Contains("ServicePortDelete"));
  ApplyDelta(&from, to, &keys);
  EXPECT_EQ(from.ports.count("default/api/TCP"), 1u);
  EXPECT_EQ(from.ports.count("default/dns/TCP"), 1u);
  EXPECT_EQ(from.endpoints["default/web/TCP"].endpoints.size(), 1u);
  EXPECT_TRUE(DeltaMessages(from, to, &keys).empty());
  // A key whose port went: one delete, its set with it.
  DesiredState gone = to;
  gone.ports.erase("default/dns/TCP");
  gone.endpoints.erase("default/dns/TCP");
  const std::set<std::string> dns = {"default/dns/TCP"};
  EXPECT_THAT(Names(DeltaMessages(from, gone, &dns)), ElementsAre("ServicePortDelete"));
}

TEST(DesiredState, ARenamedNodeResendsEveryEndpointSetAfterItsSettings) {
  // The name decides which endpoints are local: the dataplane chooses the
  // local subsets again only from sets sent after the new name.
  DesiredState from = Base();
  from.ports["default/api/TCP"] = Port("api", 0x0a60000b);
  from.endpoints["default/api/TCP"] = api::EndpointSetReplace{from.ports["default/api/TCP"].key, {}};
  DesiredState to = from;
  to.node->node.name = "node-228-renamed";
  EXPECT_THAT(Names(DeltaMessages(from, to)),
              ElementsAre("NodeSettings", "EndpointSetReplace", "EndpointSetReplace"));
  ApplyDelta(&from, to, nullptr);
  EXPECT_TRUE(DeltaMessages(from, to).empty());
}

TEST(DesiredState, ASourceThatHasNotSpokenDeletesNothing) {
  DesiredState to = Base();
  to.node.reset();
  to.neighbors.reset();
  EXPECT_TRUE(DeltaMessages(Base(), to).empty());
}

}  // namespace
}  // namespace sluice
