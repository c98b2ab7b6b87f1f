// A flow direction's egress decision, cached in its conntrack entry
// (ConntrackEntry::route[direction]) so that established packets are not
// routed again: egress, VXLAN peer index or "via the gateway", and the
// outer UDP source port, tagged with the table generation it was computed
// in. A packet whose cached generation is not the current one is routed
// afresh and the cache rewritten (once per generation and direction).
//
// Layout of the 64-bit word: [63:34] the generation's tag (RouteCacheTag), [33:18]
// VXLAN source port, [17:14] Egress, [13:0] peer slot (kVxlan) or bit 0 =
// via the gateway (kUplink). 0 means "nothing cached". Only kPods, kUplink
// and kVxlan are cached.
//
// Races, accepted: any worker handling a direction may store its word
// (relaxed; one 64-bit store, never torn). Workers on the same generation
// compute the same word. While a new generation is being published, a worker
// still on the old one may overwrite a newer word with its own; each reader
// checks the word against the generation it is using, so a word is only
// ever applied with the tables it was computed from, and the next packet on
// the newer generation stores it again (a few stores per flow at a reload).
#ifndef SLUICE_DATAPLANE_ROUTE_ROUTE_CACHE_H_
#define SLUICE_DATAPLANE_ROUTE_ROUTE_CACHE_H_

#include <cstdint>

#include "dataplane/route/route.h"

namespace sluice {

inline constexpr uint32_t kRouteCacheMaxPeers = 1u << 14;
static_assert(OverlayTable::kMaxPeers <= kRouteCacheMaxPeers);

// The generation's tag in a word: 1..2^30-1, never 0, so that the empty
// word 0 matches no generation.
inline uint64_t RouteCacheTag(uint64_t generation) { return generation % 0x3fffffffu + 1; }

// 0 when the decision cannot be cached.
inline uint64_t EncodeRouteCache(uint64_t generation, Egress e, uint32_t peer, bool via_gateway,
                                 uint16_t sport) {
  uint64_t low;
  switch (e) {
    case Egress::kVxlan:
      if (peer >= kRouteCacheMaxPeers) return 0;
      low = peer;
      break;
    case Egress::kUplink:
      low = via_gateway ? 1 : 0;
      break;
    case Egress::kPods:
      low = 0;
      break;
    default:
      return 0;
  }
  return (RouteCacheTag(generation) << 34) | (uint64_t{sport} << 18) |
         (uint64_t{static_cast<uint8_t>(e)} << 14) | low;
}

// Whether `word` holds a decision made in the generation whose tag
// (RouteCacheTag) is `tag`; a burst computes the tag once.
inline bool RouteCacheValid(uint64_t word, uint64_t tag) { return (word >> 34) == tag; }
inline Egress RouteCacheEgress(uint64_t word) { return static_cast<Egress>((word >> 14) & 0xf); }
inline uint32_t RouteCachePeer(uint64_t word) { return word & (kRouteCacheMaxPeers - 1); }
inline bool RouteCacheViaGateway(uint64_t word) { return word & 1; }
inline uint16_t RouteCacheSport(uint64_t word) { return static_cast<uint16_t>(word >> 18); }

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_ROUTE_ROUTE_CACHE_H_
