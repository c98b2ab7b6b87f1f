// The egress decision cached in a conntrack entry: what a word holds, and
// that it is honoured only in the generation it was computed in.
#include "dataplane/route/route_cache.h"

#include "gtest/gtest.h"

namespace sluice {
namespace {

TEST(RouteCacheTest, AWordHoldsTheDecisionAndItsSourcePort) {
  const uint64_t w = EncodeRouteCache(7, Egress::kVxlan, 1234, false, 40001);
  ASSERT_NE(w, 0u);
  EXPECT_EQ(RouteCacheEgress(w), Egress::kVxlan);
  EXPECT_EQ(RouteCachePeer(w), 1234u);
  EXPECT_EQ(RouteCacheSport(w), 40001);
  const uint64_t g = EncodeRouteCache(7, Egress::kUplink, 0, true, 0);
  EXPECT_EQ(RouteCacheEgress(g), Egress::kUplink);
  EXPECT_TRUE(RouteCacheViaGateway(g));
  EXPECT_FALSE(RouteCacheViaGateway(EncodeRouteCache(7, Egress::kPods, 0, false, 0)));
  // Not cacheable: a peer slot past the word's 14 bits, other egresses.
  EXPECT_EQ(EncodeRouteCache(7, Egress::kVxlan, kRouteCacheMaxPeers, false, 1), 0u);
}

TEST(RouteCacheTest, AWordIsValidOnlyInItsOwnGeneration) {
  for (uint64_t gen : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{0x3ffffffe},
                       uint64_t{0x3fffffff}, uint64_t{0x40000000}, uint64_t{0xffffffffffff}}) {
    const uint64_t tag = RouteCacheTag(gen);
    EXPECT_NE(tag, 0u) << gen;
    EXPECT_LT(tag, uint64_t{1} << 30) << gen;
    const uint64_t w = EncodeRouteCache(gen, Egress::kVxlan, 5, false, 33000);
    EXPECT_TRUE(RouteCacheValid(w, tag)) << gen;
    EXPECT_FALSE(RouteCacheValid(w, RouteCacheTag(gen + 1))) << gen;
    // The empty word (nothing cached, or not cacheable) is never valid.
    EXPECT_FALSE(RouteCacheValid(0, tag)) << gen;
  }
}

}  // namespace
}  // namespace sluice
