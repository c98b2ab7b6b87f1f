// KubeServices: per-object Services and EndpointSlices, recomputed per
// touched Service. After any sequence of events, what its changes add up to
// equals gathering the whole model at once (MessagesFromModel); an event
// names only the keys of the Service it touches.
#include "control/kube_services.h"

#include <string>

#include "control/cluster_file.h"
#include "control/desired_state.h"
#include "control/model_messages.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

ClusterModel Example() {
  auto m = LoadClusterFile(std::string(SLUICE_SOURCE_ROOT) + "/examples/cluster/node-228.json");
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

// What the agent would hold after applying changes in turn.
struct Held {
  std::map<std::string, api::ServicePort> ports;
  std::map<std::string, api::EndpointSetReplace> endpoints;
  void Apply(const KubeServices::Changes& c) {
    for (const auto& [k, p] : c.ports) {
      if (p) ports[k] = *p;
      else ports.erase(k);
    }
    for (const auto& [k, e] : c.endpoints) {
      if (e) endpoints[k] = *e;
      else endpoints.erase(k);
    }
  }
};

// The whole model gathered at once must equal what was held.
void ExpectSameAsWhole(const Held& held, const std::vector<ServiceSpec>& services,
                       const std::vector<EndpointSliceSpec>& slices) {
  ClusterModel m;
  m.services = services;
  m.endpoint_slices = slices;
  const ModelMessages mm = MessagesFromModel(m);
  ASSERT_EQ(held.ports.size(), mm.ports.size());
  ASSERT_EQ(held.endpoints.size(), mm.endpoints.size());
  for (const api::ServicePort& p : mm.ports) {
    auto it = held.ports.find(api::FormatServicePortKey(p.key));
    ASSERT_NE(it, held.ports.end()) << api::FormatServicePortKey(p.key);
    EXPECT_TRUE(SameServicePort(it->second, p)) << it->first;
  }
  for (const api::EndpointSetReplace& e : mm.endpoints) {
    auto it = held.endpoints.find(api::FormatServicePortKey(e.key));
    ASSERT_NE(it, held.endpoints.end());
    EXPECT_TRUE(SameEndpoints(it->second, e)) << it->first;
  }
}

std::vector<std::string> Keys(const KubeServices::Changes& c) {
  std::vector<std::string> out;
  for (const auto& [k, p] : c.ports) out.push_back(k);
  return out;
}

TEST(KubeServicesTest, NothingUntilBothKindsAreListedThenEverything) {
  const ClusterModel m = Example();
  KubeServices ks;
  EXPECT_TRUE(ks.SnapshotServices(m.services).empty());
  EXPECT_FALSE(ks.complete());
  Held held;
  held.Apply(ks.SnapshotSlices(m.endpoint_slices));
  EXPECT_TRUE(ks.complete());
  ExpectSameAsWhole(held, m.services, m.endpoint_slices);
  EXPECT_EQ(held.ports.size(), 5u);
}

TEST(KubeServicesTest, AnEventNamesOnlyTheKeysOfTheServiceItTouches) {
  ClusterModel m = Example();
  KubeServices ks;
  Held held;
  held.Apply(ks.SnapshotSlices(m.endpoint_slices));
  held.Apply(ks.SnapshotServices(m.services));
  // default/web's slice: its second endpoint moves.
  EndpointSliceSpec* web = nullptr;
  for (EndpointSliceSpec& s : m.endpoint_slices)
    if (s.service_name == "web") web = &s;
  ASSERT_NE(web, nullptr);
  web->endpoints[1].ip += 7;
  KubeServices::Changes c = ks.UpsertSlice(*web);
  EXPECT_THAT(Keys(c), ElementsAre("default/web:http/TCP"));
  held.Apply(c);
  ExpectSameAsWhole(held, m.services, m.endpoint_slices);
  // The same slice again changes nothing the agent would send (same values).
  c = ks.UpsertSlice(*web);
  EXPECT_THAT(Keys(c), ElementsAre("default/web:http/TCP"));
  // kube-dns's Service deleted: its two ports go, the others stay.
  c = ks.DeleteService("kube-system/kube-dns");
  EXPECT_THAT(Keys(c), ElementsAre("kube-system/kube-dns:dns-tcp/TCP",
                                   "kube-system/kube-dns:dns/UDP"));
  EXPECT_FALSE(c.ports.begin()->second.has_value());
  held.Apply(c);
  std::vector<ServiceSpec> left;
  for (const ServiceSpec& s : m.services)
    if (s.name != "kube-dns") left.push_back(s);
  ExpectSameAsWhole(held, left, m.endpoint_slices);
  // web's slice deleted: web stays, with no endpoints.
  c = ks.DeleteSlice("default/" + web->name);
  held.Apply(c);
  EXPECT_TRUE(held.endpoints.at("default/web:http/TCP").endpoints.empty());
  std::vector<EndpointSliceSpec> slices;
  for (const EndpointSliceSpec& s : m.endpoint_slices)
    if (s.service_name != "web") slices.push_back(s);
  ExpectSameAsWhole(held, left, slices);
  // Deleting what is not there is nothing.
  EXPECT_TRUE(ks.DeleteSlice("default/nope").empty());
  EXPECT_TRUE(ks.DeleteService("default/nope").empty());
}

TEST(KubeServicesTest, ASliceRelabelledToAnotherServiceMovesItsEndpoints) {
  ClusterModel m = Example();
  KubeServices ks;
  Held held;
  held.Apply(ks.SnapshotServices(m.services));
  held.Apply(ks.SnapshotSlices(m.endpoint_slices));
  EndpointSliceSpec* web = nullptr;
  for (EndpointSliceSpec& s : m.endpoint_slices)
    if (s.service_name == "web") web = &s;
  ASSERT_NE(web, nullptr);
  ServiceSpec other;
  for (const ServiceSpec& s : m.services)
    if (s.name == "web") other = s;
  other.name = "web-canary";
  other.cluster_ips = {other.cluster_ips[0] + 1};
  m.services.push_back(other);
  held.Apply(ks.UpsertService(other));
  web->service_name = "web-canary";
  const KubeServices::Changes c = ks.UpsertSlice(*web);
  EXPECT_THAT(Keys(c), ElementsAre("default/web-canary:http/TCP", "default/web:http/TCP"));
  held.Apply(c);
  ExpectSameAsWhole(held, m.services, m.endpoint_slices);
  EXPECT_TRUE(held.endpoints.at("default/web:http/TCP").endpoints.empty());
  EXPECT_THAT(held.endpoints.at("default/web-canary:http/TCP").endpoints,
              ::testing::SizeIs(web->endpoints.size()));
}

TEST(KubeServicesTest, ARelistDropsWhatItNoLongerNames) {
  const ClusterModel m = Example();
  KubeServices ks;
  Held held;
  held.Apply(ks.SnapshotServices(m.services));
  held.Apply(ks.SnapshotSlices(m.endpoint_slices));
  std::vector<ServiceSpec> fewer(m.services.begin() + 1, m.services.end());
  held.Apply(ks.SnapshotServices(fewer));
  ExpectSameAsWhole(held, fewer, m.endpoint_slices);
  held.Apply(ks.SnapshotSlices({}));
  ExpectSameAsWhole(held, fewer, {});
  EXPECT_THAT(held.ports, ::testing::Not(IsEmpty()));
}

}  // namespace
}  // namespace sluice
