#include "control/desired_state.h"

#include <variant>

#include "api/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

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

TEST(DesiredState, ASourceThatHasNotSpokenDeletesNothing) {
  DesiredState to = Base();
  to.node.reset();
  to.neighbors.reset();
  EXPECT_TRUE(DeltaMessages(Base(), to).empty());
}

}  // namespace
}  // namespace sluice
