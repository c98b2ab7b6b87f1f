#include "dataplane/common/counters.h"

#include <cstring>

namespace sluice {
namespace {
#define STAT CounterKind::kStat
#define DROP CounterKind::kDrop
constexpr CounterInfo kInfo[] = {
#define SLUICE_COUNTER(name, kind, help) {#name, kind, help},
#include "dataplane/common/counters.def"
#undef SLUICE_COUNTER
};
#undef STAT
#undef DROP
static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == kCounterCount);
}  // namespace

const CounterInfo& CounterInfoOf(Counter c) { return kInfo[c]; }

Counter CounterByName(const char* name) {
  for (uint16_t i = 0; i < kCounterCount; ++i)
    if (std::strcmp(kInfo[i].name, name) == 0) return static_cast<Counter>(i);
  return kCounterCount;
}

}  // namespace sluice
