// Per-worker counters: one slot per line of counters.def.
//
// Concurrency: each WorkerCounters is written only by its worker (plain
// increments, no atomics); readers in other threads (stats printing) may see
// a slightly stale value, which is fine for counters. Each block is cache-line
// aligned so workers never share a line.
#ifndef SLUICE_DATAPLANE_COMMON_COUNTERS_H_
#define SLUICE_DATAPLANE_COMMON_COUNTERS_H_

#include <cstdint>

namespace sluice {

enum Counter : uint16_t {
#define SLUICE_COUNTER(name, kind, help) k_##name,
#include "dataplane/common/counters.def"
#undef SLUICE_COUNTER
  kCounterCount
};

enum class CounterKind : uint8_t { kStat, kDrop };

struct CounterInfo {
  const char* name;
  CounterKind kind;
  const char* help;
};

// Name, kind and help of counter c.
const CounterInfo& CounterInfoOf(Counter c);
// The counter with this name, or kCounterCount.
Counter CounterByName(const char* name);

struct alignas(64) WorkerCounters {
  uint64_t value[kCounterCount] = {};
  void Add(Counter c, uint64_t n = 1) { value[c] += n; }
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_COMMON_COUNTERS_H_
