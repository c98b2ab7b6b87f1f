// sluice-bench-throughput: TSC cycles per packet of one worker lcore, end to
// end, against a forwarder that does the memory work every forwarder must.
//
// The worker runs Sluice's real loop (NodeRuntime's workers, Worker::PollOnce)
// on net_ring ports. A generator keeps the rx ring full by restoring each
// packet from a template (template index i of a precomputed sequence, so that
// drawing flows is not in the timed loop) and recycles what was transmitted.
//
// The limit is the swap forwarder on the same ports and generator: it reads
// each packet's Ethernet and IPv4 headers, swaps its MAC and IP addresses,
// writes them back, and transmits. io forwarding (rx burst -> tx burst, no
// packet touched) is an extra row that shows the ring ports' own cost; it is
// not a limit. Every Sluice figure is also given as a fraction of the swap
// forwarder's (forwarder cycles / Sluice cycles).
//
// The generator's cost is not the worker's, so each figure is taken two ways:
//  (a) other_lcore: the generator on the main lcore, the worker's loop on the
//      worker lcore. The worker finds every packet (and its mbuf) last
//      written by the other core, so it pays a cross-core transfer per line.
//  (b) same_lcore: one loop on the worker's lcore refills the rx ring from the
//      templates (keeping --lag packets queued), runs the worker's PollOnce
//      (or a forwarder), and recycles what was transmitted. The same loop with
//      a null worker (each rx burst moved to the tx ring untouched, by ring
//      calls, no ethdev call) is the generator's cost; "worker alone" is loop
//      minus generator per packet, taken pairwise over the repeats.
// (b) is the one that resembles a NIC: a NIC's DMA with DDIO leaves the packet
// in the LLC, and its driver writes the mbuf on the worker's own core, so the
// worker never finds its packets modified in another core's private caches as
// in (a). With --lag packets queued, each packet was restored that many
// packets before the worker reads it, enough to have pushed its lines out of
// L1/L2 towards the L3 as DMA would leave them. (a) overstates what a NIC
// costs the worker; with no lag, (b) would understate it (L1-hot packets).
//
// cycles/packet = TSC Hz * seconds / packets on the measuring lcore, where the
// seconds are those of the loop iterations that moved packets: in (a) the
// worker's polls that found work (polls of an empty ring wait for the
// generator), in (b) the whole loop. An iteration longer than 250 us was
// preempted (the machine's cores are shared with other work) and is left out;
// the share of time left out is reported as preempted_fraction.
//
// Rows: established pod -> ClusterIP DNAT + VXLAN at --small-flows (cache
// resident) and --flows (DRAM) flows, uniform and Zipf(0.99) popularity;
// NodePort + masquerade + VXLAN and its reply path (decap + reverse NAT) at
// both flow counts; egress masquerade; new flows (UDP, TCP SYN) in cycles per
// flow; 100 / 10k / 100k Services; two workers, each flow's original
// direction on worker 0 and its reply direction on worker 1, each with the
// generator interleaved on its own lcore (a generator lcore per worker would
// need more cores than the machine may have); programming latency; memory per
// connection. Each row carries the graph's per-node statistics ("stages"),
// and "stage_breakdown" repeats the main row's.
//
// Output: JSON on stdout (or --out FILE); each figure is the median of
// --repeat runs with min and max.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_random.h>
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/common/eal_cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "app/node_runtime.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/node_harness.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::bench {
namespace {

using testing::BuildFrame;
using testing::Example;
using testing::FrameSpec;
using testing::Ip;
using testing::Mac;

constexpr unsigned kQueues = 2;         // one per worker of the two-worker rows
constexpr unsigned kRingSize = 16384;   // each rx and tx ring
constexpr unsigned kInFlight = 8192;    // mbufs a generator starts with
constexpr unsigned kGenBurst = 64;      // what a generator enqueues at a time
constexpr unsigned kTemplateAhead = 8;  // templates prefetched ahead
constexpr size_t kSequenceLength = 1 << 22;

// One frame to restore; a whole number of cache lines, length first so that
// a short frame is one line.
struct alignas(64) Template {
  uint16_t len;
  uint8_t bytes[126];
};

enum class Popularity { kOnce, kUniform, kZipf };
const char* PopularityName(Popularity p) {
  return p == Popularity::kOnce ? "each once" : p == Popularity::kUniform ? "uniform" : "zipf0.99";
}

// What a generator feeds: templates, and the template index of each packet
// (cycled; fed once through for kOnce).
struct Traffic {
  std::vector<Template> templates;
  std::vector<uint32_t> sequence;
  Popularity popularity = Popularity::kOnce;
  uint32_t flows() const { return static_cast<uint32_t>(templates.size()); }
};

// Templates from frames[begin, begin + count), with a sequence drawn from
// `popularity`. Zipf ranks are mapped to flows through a random permutation,
// so that the popular flows' conntrack entries are not neighbours.
Traffic MakeTraffic(const std::vector<std::vector<uint8_t>>& frames, size_t begin, size_t count,
                    Popularity popularity, uint64_t seed) {
  Traffic t;
  t.popularity = popularity;
  count = std::min(count, frames.size() - std::min(begin, frames.size()));
  t.templates.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const auto& f = frames[begin + i];
    if (f.size() > sizeof(t.templates[i].bytes)) {
      std::fprintf(stderr, "frame of %zu bytes does not fit a template\n", f.size());
      std::exit(1);
    }
    t.templates[i].len = static_cast<uint16_t>(f.size());
    std::memcpy(t.templates[i].bytes, f.data(), f.size());
  }
  std::mt19937_64 rng(seed);
  if (popularity == Popularity::kOnce) {
    t.sequence.resize(count);
    std::iota(t.sequence.begin(), t.sequence.end(), 0);
  } else if (popularity == Popularity::kUniform) {
    t.sequence.resize(kSequenceLength);
    for (auto& s : t.sequence) s = static_cast<uint32_t>(rng() % count);
  } else {
    std::vector<double> cdf(count);
    double sum = 0;
    for (size_t k = 0; k < count; ++k) cdf[k] = sum += std::pow(static_cast<double>(k + 1), -0.99);
    std::vector<uint32_t> flow_of_rank(count);
    std::iota(flow_of_rank.begin(), flow_of_rank.end(), 0);
    std::shuffle(flow_of_rank.begin(), flow_of_rank.end(), rng);
    std::uniform_real_distribution<double> u(0, sum);
    t.sequence.resize(kSequenceLength);
    for (auto& s : t.sequence) {
      const size_t rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
      s = flow_of_rank[std::min(rank, count - 1)];
    }
  }
  return t;
}

// Ring ports for the uplink and the pods side, kQueues queues each; rx and
// tx of a queue are separate rings.
struct RingPorts {
  rte_ring* rx[2][kQueues];
  rte_ring* tx[2][kQueues];
  uint16_t port[2];
};

// Restores packets from a Traffic into the rx ring of one port queue and
// takes back what any port transmitted on that queue. Used by one lcore.
class Generator {
 public:
  Generator(const RingPorts& rp, int port, uint16_t queue, rte_mempool* pool, const Traffic& t)
      : rx_(rp.rx[port][queue]),
        tx_{rp.tx[0][queue], rp.tx[1][queue]},
        pool_(pool),
        t_(t),
        spare_(rte_mempool_avail_count(pool) + kInFlight) {
    ok_ = rte_pktmbuf_alloc_bulk(pool, spare_.data(), kInFlight) == 0;
    nspare_ = ok_ ? kInFlight : 0;
  }
  ~Generator() {
    if (nspare_ != 0) rte_pktmbuf_free_bulk(spare_.data(), static_cast<unsigned>(nspare_));
  }
  bool ok() const { return ok_; }
  // kOnce traffic: every template was fed.
  bool exhausted() const {
    return t_.popularity == Popularity::kOnce && pos_ == t_.sequence.size();
  }
  uint64_t fed() const { return fed_; }

  // Restores up to kGenBurst packets, enqueues them, and stops when the rx
  // ring holds `depth`. Returns how many were enqueued.
  unsigned Refill(unsigned depth) {
    unsigned want = kGenBurst;
    if (depth < kRingSize) {
      const unsigned queued = rte_ring_count(rx_);
      want = queued >= depth ? 0 : std::min(want, depth - queued);
    }
    if (t_.popularity == Popularity::kOnce)
      want = std::min<size_t>(want, t_.sequence.size() - pos_);
    if (nspare_ < want && nspare_ + kGenBurst <= spare_.size() &&
        rte_pktmbuf_alloc_bulk(pool_, &spare_[nspare_], kGenBurst) == 0)
      nspare_ += kGenBurst;  // the worker dropped some: they went back to the pool
    want = std::min<size_t>(want, nspare_);
    rte_mbuf* out[kGenBurst];
    const Template* tpl = t_.templates.data();
    const uint32_t* seq = t_.sequence.data();
    const size_t len = t_.sequence.size();
    for (unsigned i = 0; i < want; ++i) {
      size_t ahead = pos_ + kTemplateAhead;
      if (ahead >= len) ahead -= len;
      rte_prefetch0(&tpl[seq[ahead]]);
      const Template& t = tpl[seq[pos_]];
      if (++pos_ == len && t_.popularity != Popularity::kOnce) pos_ = 0;
      rte_mbuf* m = spare_[--nspare_];
      m->data_off = RTE_PKTMBUF_HEADROOM;
      m->data_len = t.len;
      m->pkt_len = t.len;
      m->ol_flags = 0;
      m->packet_type = 0;
      std::memcpy(rte_pktmbuf_mtod(m, void*), t.bytes, t.len);
      out[i] = m;
    }
    const unsigned sent = rte_ring_enqueue_burst(rx_, reinterpret_cast<void**>(out), want, nullptr);
    for (unsigned i = sent; i < want; ++i) spare_[nspare_++] = out[i];
    fed_ += sent;
    return sent;
  }

  void Recycle() {
    for (rte_ring* r : tx_) {
      rte_mbuf* back[kGenBurst];
      unsigned n;
      while ((n = rte_ring_dequeue_burst(r, reinterpret_cast<void**>(back), kGenBurst, nullptr)) !=
             0) {
        for (unsigned i = 0; i < n; ++i) {
          rte_mbuf* m = back[i];
          if (rte_mbuf_refcnt_read(m) != 1 || m->nb_segs != 1) {
            rte_pktmbuf_free(m);
            if ((m = rte_pktmbuf_alloc(pool_)) == nullptr) continue;
          }
          if (nspare_ == spare_.size())
            rte_pktmbuf_free(m);
          else
            spare_[nspare_++] = m;
        }
      }
    }
  }

 private:
  rte_ring* rx_;
  rte_ring* tx_[2];
  rte_mempool* pool_;
  const Traffic& t_;
  std::vector<rte_mbuf*> spare_;
  size_t nspare_ = 0;
  size_t pos_ = 0;
  uint64_t fed_ = 0;
  bool ok_ = false;
};

void FreeRing(rte_ring* r) {
  rte_mbuf* m[64];
  unsigned n;
  while ((n = rte_ring_dequeue_burst(r, reinterpret_cast<void**>(m), 64, nullptr)) != 0)
    rte_pktmbuf_free_bulk(m, n);
}

// Frees whatever sits in the rings of `queue`. Only while no worker polls it.
void DrainQueue(const RingPorts& rp, uint16_t queue) {
  for (int p = 0; p < 2; ++p) {
    FreeRing(rp.rx[p][queue]);
    FreeRing(rp.tx[p][queue]);
  }
}

// --- the worker step: Sluice, or a reference forwarder ------------------------

enum class Step { kNull, kIo, kSwap, kSluice };

// What every forwarder does to a packet at least: read the Ethernet and IPv4
// headers, swap addresses, write them back.
inline void SwapAddresses(rte_mbuf* m) {
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  const rte_ether_addr mac = eth->dst_addr;
  eth->dst_addr = eth->src_addr;
  eth->src_addr = mac;
  if (eth->ether_type == RTE_BE16(RTE_ETHER_TYPE_IPV4)) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    const rte_be32_t a = ip->src_addr;
    ip->src_addr = ip->dst_addr;
    ip->dst_addr = a;
  }
}

struct StepContext {
  Step step = Step::kNull;
  Worker* worker = nullptr;  // kSluice
  uint16_t port_id = 0;      // kIo, kSwap
  uint16_t queue = 0;
  rte_ring* rx = nullptr;  // kNull
  rte_ring* tx = nullptr;
};

// One iteration of the worker's side at TSC `now`; returns packets taken
// from rx.
inline uint32_t RunStep(const StepContext& s, uint64_t now) {
  rte_mbuf* b[kBurstSize];
  uint16_t n = 0;
  switch (s.step) {
    case Step::kSluice:
      return s.worker->PollOnce(now);
    case Step::kNull: {
      n = static_cast<uint16_t>(
          rte_ring_dequeue_burst(s.rx, reinterpret_cast<void**>(b), kBurstSize, nullptr));
      const unsigned sent = rte_ring_enqueue_burst(s.tx, reinterpret_cast<void**>(b), n, nullptr);
      for (unsigned i = sent; i < n; ++i) rte_pktmbuf_free(b[i]);
      return n;
    }
    case Step::kIo:
    case Step::kSwap: {
      n = rte_eth_rx_burst(s.port_id, s.queue, b, kBurstSize);
      if (s.step == Step::kSwap) {
        constexpr uint16_t kAhead = 4;
        for (uint16_t i = 0; i < n && i < kAhead; ++i) rte_prefetch0(rte_pktmbuf_mtod(b[i], void*));
        for (uint16_t i = 0; i < n; ++i) {
          if (i + kAhead < n) rte_prefetch0(rte_pktmbuf_mtod(b[i + kAhead], void*));
          SwapAddresses(b[i]);
        }
      }
      const uint16_t sent = n == 0 ? 0 : rte_eth_tx_burst(s.port_id, s.queue, b, n);
      for (uint16_t i = sent; i < n; ++i) rte_pktmbuf_free(b[i]);
      return n;
    }
  }
  return 0;
}

// TSC cycles of the loop iterations that moved packets. An iteration longer
// than any burst's work (250 us) was preempted (the machine's cores are
// shared): it is left out, and its time reported as excluded.
struct Timing {
  uint64_t cycles = 0;
  uint64_t packets = 0;
  uint64_t excluded_cycles = 0;
  uint64_t preempted_limit = rte_get_tsc_hz() / 4000;
  void Add(uint64_t dt, uint32_t n) {
    if (n == 0) return;
    if (dt > preempted_limit) {
      excluded_cycles += dt;
      return;
    }
    cycles += dt;
    packets += n;
  }
  double per_packet() const { return packets == 0 ? 0 : static_cast<double>(cycles) / packets; }
  double excluded_fraction() const {
    return cycles + excluded_cycles == 0
               ? 0
               : static_cast<double>(excluded_cycles) / (cycles + excluded_cycles);
  }
};

// --- (a): generator on the main lcore, the worker on its own -----------------

// The worker's loop on the worker lcore: the step (Sluice's PollOnce, as
// NodeRuntime's own loop runs it, or a forwarder) with each busy iteration
// timed; polls that find the rx ring empty are waiting for the generator and
// are not counted.
struct WorkerLoop {
  StepContext step;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> packets{0};
  Timing timing;  // read after the lcore is joined
};
int WorkerLoopMain(void* arg) {
  auto* w = static_cast<WorkerLoop*>(arg);
  if (w->step.step == Step::kSluice) w->step.worker->Start();
  uint64_t local = 0;
  while (!w->stop.load(std::memory_order_relaxed)) {
    const uint64_t t0 = rte_rdtsc();
    const uint32_t n = RunStep(w->step, t0);
    w->timing.Add(rte_rdtsc() - t0, n);
    if (n == 0) continue;
    local += n;
    w->packets.store(local, std::memory_order_release);
  }
  if (w->step.step == Step::kSluice) w->step.worker->Stop();
  return 0;
}

struct OtherLcoreRun {
  Timing timing;
  double rx_empty_fraction = 0;  // of the generator's looks at the rx ring
  uint64_t fed = 0;
};

// Runs `step` on the worker lcore and feeds `t` into `port` queue 0 from this
// lcore for `seconds` (kOnce traffic: until every template was fed and
// processed), keeping the rx ring `depth` packets deep.
OtherLcoreRun RunOtherLcore(const RingPorts& rp, unsigned worker_lcore, const StepContext& step,
                            int port, rte_mempool* pool, const Traffic& t, double seconds,
                            unsigned depth) {
  OtherLcoreRun r;
  WorkerLoop w;
  w.step = step;
  rte_eal_remote_launch(WorkerLoopMain, &w, worker_lcore);
  {
    Generator gen(rp, port, 0, pool, t);
    rte_ring* rx = rp.rx[port][0];
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t c0 = rte_rdtsc();
    uint64_t looks = 0, empty = 0;
    if (!gen.ok()) {
      std::fprintf(stderr, "generator: no mbufs\n");
    } else if (t.popularity == Popularity::kOnce) {
      while (!gen.exhausted() && rte_rdtsc() < c0 + 600 * hz) {
        gen.Recycle();
        gen.Refill(depth);
      }
      while (w.packets.load(std::memory_order_acquire) < gen.fed() && rte_rdtsc() < c0 + 600 * hz)
        gen.Recycle();
    } else {
      const uint64_t end = c0 + static_cast<uint64_t>(seconds * hz);
      while (rte_rdtsc() < end) {
        gen.Recycle();
        ++looks;
        empty += rte_ring_empty(rx);
        gen.Refill(depth);
      }
    }
    r.fed = gen.fed();
    r.rx_empty_fraction = looks == 0 ? 0 : static_cast<double>(empty) / looks;
    w.stop = true;
    rte_eal_wait_lcore(worker_lcore);
    gen.Recycle();
  }
  DrainQueue(rp, 0);
  r.timing = w.timing;
  return r;
}

// --- (b): generator and worker interleaved on one lcore ----------------------

struct InterleavedLoop {
  StepContext step;
  const RingPorts* rp = nullptr;
  int port = 0;
  uint16_t queue = 0;
  rte_mempool* pool = nullptr;
  const Traffic* traffic = nullptr;
  double seconds = 1;
  unsigned lag = 0;
  std::atomic<int>* start_barrier = nullptr;  // both lcores of a two-worker run
  Timing timing;                              // out
};

int InterleavedMain(void* arg) {
  auto* l = static_cast<InterleavedLoop*>(arg);
  Generator gen(*l->rp, l->port, l->queue, l->pool, *l->traffic);
  if (!gen.ok()) {
    std::fprintf(stderr, "generator: no mbufs\n");
    return -1;
  }
  if (l->step.step == Step::kSluice) l->step.worker->Start();
  if (l->start_barrier != nullptr) {
    l->start_barrier->fetch_sub(1);
    while (l->start_barrier->load() > 0) rte_pause();
  }
  const bool once = l->traffic->popularity == Popularity::kOnce;
  const unsigned depth = std::max<unsigned>(l->lag, kBurstSize);
  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t end = rte_rdtsc() + static_cast<uint64_t>((once ? 600 : l->seconds) * hz);
  for (uint64_t t0 = rte_rdtsc();;) {
    gen.Refill(depth);
    const uint32_t n = RunStep(l->step, t0);
    gen.Recycle();
    const uint64_t t1 = rte_rdtsc();
    l->timing.Add(t1 - t0, n);
    if (t1 >= end || (once && n == 0 && gen.exhausted())) break;
    t0 = t1;
  }
  // This lcore is the rx rings' only consumer now: free what is queued.
  FreeRing(l->rp->rx[l->port][l->queue]);
  gen.Recycle();
  if (l->step.step == Step::kSluice) l->step.worker->Stop();
  return 0;
}

// --- statistics and counters ---------------------------------------------------

struct Stats {
  std::vector<double> v;
  void Add(double x) { v.push_back(x); }
  bool empty() const { return v.empty(); }
  double median() const {
    if (v.empty()) return 0;
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    return s.size() % 2 ? s[s.size() / 2] : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
  }
  double min() const { return v.empty() ? 0 : *std::min_element(v.begin(), v.end()); }
  double max() const { return v.empty() ? 0 : *std::max_element(v.begin(), v.end()); }
  std::string Json() const {
    std::vector<std::string> runs;
    for (double x : v) runs.push_back(absl::StrFormat("%.2f", x));
    return absl::StrFormat("{\"median\": %.2f, \"min\": %.2f, \"max\": %.2f, \"runs\": [%s]}",
                           median(), min(), max(), absl::StrJoin(runs, ", "));
  }
};

double Mpps(double cycles_per_packet) {
  return cycles_per_packet <= 0 ? 0 : rte_get_tsc_hz() / cycles_per_packet / 1e6;
}

struct CounterSnapshot {
  std::array<uint64_t, kCounterCount> v{};
  static CounterSnapshot Of(const NodeRuntime& rt) {
    CounterSnapshot s;
    for (int c = 0; c < kCounterCount; ++c) s.v[c] = rt.Total(static_cast<Counter>(c));
    return s;
  }
};

// Drops between two snapshots, in all and by reason (JSON object).
std::pair<uint64_t, std::string> DropsBetween(const CounterSnapshot& a, const CounterSnapshot& b) {
  uint64_t total = 0;
  std::vector<std::string> parts;
  for (int c = 0; c < kCounterCount; ++c) {
    const CounterInfo& info = CounterInfoOf(static_cast<Counter>(c));
    const uint64_t d = b.v[c] - a.v[c];
    if (info.kind != CounterKind::kDrop || d == 0) continue;
    total += d;
    parts.push_back(absl::StrFormat("\"%s\": %u", info.name, d));
  }
  return {total, "{" + absl::StrJoin(parts, ", ") + "}"};
}

// Both ways of one measurement; per-packet figures (per-flow for new flows).
struct TwoWays {
  Stats a_cycles;     // (a): busy cycles per packet on the worker lcore
  Stats a_empty;      // (a): fraction of looks that found the rx ring empty
  Stats a_excluded;   // (a): fraction of busy time left out as preempted
  Stats b_loop;       // (b): generator + worker
  Stats b_generator;  // (b): generator + null worker
  Stats b_alone;      // (b): loop - generator, per run pair
  Stats b_excluded;   // (b): fraction of loop time left out as preempted
  std::string Json(const TwoWays* limit) const {
    const double a = a_cycles.median(), b = b_alone.median();
    auto fraction = [](double lim, double x) { return x > 0 && lim > 0 ? lim / x : 0.0; };
    return absl::StrFormat(
        "\"other_lcore\": {\"cycles_per_packet\": %s, \"mpps\": %.3f, \"rx_empty_fraction\": "
        "%.3f, \"preempted_fraction\": %.3f, \"fraction_of_swap\": %.3f},\n"
        "   \"same_lcore\": {\"loop_cycles_per_packet\": %s, \"generator_cycles_per_packet\": "
        "%s, \"cycles_per_packet\": %s, \"mpps\": %.3f, \"preempted_fraction\": %.3f, "
        "\"fraction_of_swap\": %.3f}",
        a_cycles.Json(), Mpps(a), a_empty.median(), a_excluded.max(),
        limit ? fraction(limit->a_cycles.median(), a) : 0.0, b_loop.Json(), b_generator.Json(),
        b_alone.Json(), Mpps(b), b_excluded.max(),
        limit ? fraction(limit->b_alone.median(), b) : 0.0);
  }
};

struct Bench {
  const RingPorts* rp;
  rte_mempool* pool;
  unsigned worker_lcore;
  double seconds;
  int repeat;
  unsigned lag;
};

// (a) once.
OtherLcoreRun OtherLcore(const Bench& b, const StepContext& step, int port, const Traffic& t) {
  return RunOtherLcore(*b.rp, b.worker_lcore, step, port, b.pool, t, b.seconds, b.lag);
}

// (b) once: the null worker, then `step`, on the worker lcore.
std::pair<Timing, Timing> SameLcorePair(const Bench& b, const StepContext& step, int port,
                                        const Traffic& t) {
  Timing out[2];
  for (int k = 0; k < 2; ++k) {
    InterleavedLoop l;
    l.rp = b.rp;
    l.port = port;
    l.pool = b.pool;
    l.traffic = &t;
    l.seconds = b.seconds;
    l.lag = b.lag;
    if (k == 0) {
      l.step.step = Step::kNull;
      l.step.rx = b.rp->rx[port][0];
      l.step.tx = b.rp->tx[port][0];
    } else {
      l.step = step;
    }
    rte_eal_remote_launch(InterleavedMain, &l, b.worker_lcore);
    rte_eal_wait_lcore(b.worker_lcore);
    DrainQueue(*b.rp, 0);
    out[k] = l.timing;
  }
  return {out[0], out[1]};
}

void AddPair(TwoWays* w, const Timing& gen, const Timing& loop) {
  const double g = gen.per_packet(), l = loop.per_packet();
  w->b_generator.Add(g);
  w->b_loop.Add(l);
  w->b_alone.Add(l - g);
  w->b_excluded.Add(std::max(gen.excluded_fraction(), loop.excluded_fraction()));
}

// `step` both ways on established traffic `t` arriving on `port`.
TwoWays MeasureStep(const Bench& b, const StepContext& step, int port, const Traffic& t) {
  TwoWays w;
  for (int r = 0; r < b.repeat; ++r) {
    const OtherLcoreRun run = OtherLcore(b, step, port, t);
    w.a_cycles.Add(run.timing.per_packet());
    w.a_empty.Add(run.rx_empty_fraction);
    w.a_excluded.Add(run.timing.excluded_fraction());
  }
  for (int r = 0; r < b.repeat; ++r) {
    auto [gen, loop] = SameLcorePair(b, step, port, t);
    AddPair(&w, gen, loop);
  }
  return w;
}

StepContext ForwarderStep(const Bench& b, Step kind, int port) {
  StepContext s;
  s.step = kind;
  s.port_id = b.rp->port[port];
  return s;
}

StepContext SluiceStep(NodeRuntime& rt, uint16_t worker = 0) {
  StepContext s;
  s.step = Step::kSluice;
  s.worker = &rt.worker(worker);
  return s;
}

struct Measured {
  TwoWays w;
  uint64_t drops = 0;
  std::string drop_reasons = "{}";
  uint64_t created = 0;  // conntrack entries created while measuring
  std::string stages = "[]";  // per graph node, over the measured runs
};

// The graph's node statistics between two snapshots, as a JSON list of
// {stage, calls, packets, cycles_per_packet}. The cycles are spent inside
// each node's process function, so neither generator is in them.
std::string StageDelta(const std::vector<NodeStats>& a, const std::vector<NodeStats>& b) {
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const uint64_t calls = b[i].calls - a[i].calls, pkts = b[i].packets - a[i].packets;
    if (pkts == 0) continue;
    out.push_back(absl::StrFormat(
        "{\"stage\": \"%s\", \"calls\": %u, \"packets\": %u, \"cycles_per_packet\": %.2f}",
        b[i].node, calls, pkts, static_cast<double>(b[i].cycles - a[i].cycles) / pkts));
  }
  return "[" + absl::StrJoin(out, ", ") + "]";
}

// Sluice's worker 0 both ways (the runtime is not launched).
Measured MeasureSluice(const Bench& b, NodeRuntime& rt, int port, const Traffic& t) {
  Measured m;
  const CounterSnapshot before = CounterSnapshot::Of(rt);
  const std::vector<NodeStats> stages_before = rt.worker(0).Stats();
  m.w = MeasureStep(b, SluiceStep(rt), port, t);
  const CounterSnapshot after = CounterSnapshot::Of(rt);
  m.stages = StageDelta(stages_before, rt.worker(0).Stats());
  std::tie(m.drops, m.drop_reasons) = DropsBetween(before, after);
  m.created = after.v[k_conntrack_created] - before.v[k_conntrack_created];
  return m;
}

// Feeds every template of kOnce traffic `t` through worker `w` on the worker
// lcore, queue `queue` (a flow's first packet creates it).
void Establish(const Bench& b, NodeRuntime& rt, int port, const Traffic& t, uint16_t w = 0) {
  InterleavedLoop l;
  l.step = SluiceStep(rt, w);
  l.rp = b.rp;
  l.port = port;
  l.queue = w;
  l.pool = b.pool;
  l.traffic = &t;
  l.lag = kBurstSize;
  rte_eal_remote_launch(InterleavedMain, &l, b.worker_lcore);
  rte_eal_wait_lcore(b.worker_lcore);
  DrainQueue(*b.rp, w);
}

// --- traffic shapes ---------------------------------------------------------

const MacAddress kGatewayMac = Mac("02:00:0a:0a:64:01");
const MacAddress kUplinkMac = Mac("02:00:0a:0a:64:e4");
const MacAddress kPodsMac = Mac("02:00:0a:f4:1a:01");
constexpr uint16_t kBenchNodePort = 30080;
constexpr uint32_t kBenchNodePortEndpoints = 64;

// node-228 with `services` ClusterIP Services (tcp/80 and udp/53 each, two
// endpoints on node-227/226), plus one NodePort Service with 64 endpoints on
// node-227 so that a million masqueraded flows find free ports (the reply
// tuple is unique per endpoint and masquerade port).
ClusterModel BenchModel(uint32_t services) {
  ClusterModel m = testing::Node228Model(services);
  for (auto& s : m.services)
    if (s.namespace_name == "bench") s.ports.push_back({"dns", L4Protocol::kUdp, 53, 0});
  for (auto& e : m.endpoint_slices)
    if (e.namespace_name == "bench") e.ports.push_back({"dns", L4Protocol::kUdp, 53});
  ServiceSpec np;
  np.namespace_name = "bench-nodeport";
  np.name = "clients";
  np.type = "NodePort";
  np.cluster_ips = {Ip("10.96.200.1")};
  np.ports = {{"http", L4Protocol::kTcp, 80, kBenchNodePort}};
  m.services.push_back(np);
  EndpointSliceSpec eps;
  eps.namespace_name = np.namespace_name;
  eps.name = "clients-eps";
  eps.service_name = np.name;
  for (uint32_t i = 0; i < kBenchNodePortEndpoints; ++i)
    eps.endpoints.push_back({Ip("10.244.25.160") + i, true, true, false, "node-227"});
  eps.ports = {{"http", L4Protocol::kTcp, 8080}};
  m.endpoint_slices.push_back(eps);
  return m;
}

// Pod -> ClusterIP of Service (i % services), endpoints on node-227/226:
// DNAT + VXLAN encapsulation. Flow i has a distinct (pod address, port).
std::vector<std::vector<uint8_t>> PodToClusterIp(uint32_t flows, uint32_t services,
                                                 uint8_t proto = kProtoTcp, uint8_t flags = 0x10,
                                                 uint32_t flow_offset = 0) {
  std::vector<std::vector<uint8_t>> v;
  v.reserve(flows);
  for (uint32_t k = 0; k < flows; ++k) {
    const uint32_t i = k + flow_offset;
    FrameSpec s;
    s.src_mac = Mac("0a:58:0a:f4:1a:14");
    s.dst_mac = kPodsMac;
    s.src_ip = Ip("10.244.26.2") + (i / 60000) % 250;
    s.dst_ip = Ip("10.112.0.0") + (i % services);
    s.l4.proto = proto;
    s.l4.src_port = static_cast<uint16_t>(1024 + i % 60000);
    s.l4.dst_port = proto == kProtoUdp ? 53 : 80;
    s.l4.tcp_flags = flags;
    v.push_back(BuildFrame(s));
  }
  return v;
}

// External clients -> the bench NodePort: DNAT + masquerade + VXLAN.
std::vector<std::vector<uint8_t>> ClientsToNodePort(uint32_t flows) {
  std::vector<std::vector<uint8_t>> v;
  v.reserve(flows);
  for (uint32_t i = 0; i < flows; ++i) {
    FrameSpec s;
    s.src_mac = kGatewayMac;
    s.dst_mac = kUplinkMac;
    s.src_ip = Ip("172.16.0.1") + i / 50000;
    s.dst_ip = Ip(Example::kNode228);
    s.ttl = 62;
    s.l4.src_port = static_cast<uint16_t>(10000 + i % 50000);
    s.l4.dst_port = kBenchNodePort;
    s.l4.tcp_flags = 0x10;
    v.push_back(BuildFrame(s));
  }
  return v;
}

// Pods -> internet: flannel ip-masq to the node address.
std::vector<std::vector<uint8_t>> PodsToInternet(uint32_t flows) {
  std::vector<std::vector<uint8_t>> v;
  for (uint32_t i = 0; i < flows; ++i) {
    FrameSpec s;
    s.src_mac = Mac("0a:58:0a:f4:1a:14");
    s.dst_mac = kPodsMac;
    s.src_ip = Ip("10.244.26.2") + i / 50000;
    s.dst_ip = Ip("93.184.216.34") + i % 7;
    s.l4.src_port = static_cast<uint16_t>(10000 + i % 50000);
    s.l4.dst_port = 443;
    s.l4.tcp_flags = 0x10;
    v.push_back(BuildFrame(s));
  }
  return v;
}

// --- main -------------------------------------------------------------------

struct Options {
  double seconds = 1.0;
  int repeat = 3;
  uint32_t flows = 1 << 20;
  uint32_t small_flows = 10000;
  uint32_t services = 10000;
  unsigned lag = 4096;
  bool quick = false;
  bool two_workers = true;
  std::string out;
};

std::string CpuModel() {
  char cpu[256] = "unknown";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof(line), f))
      if (std::strncmp(line, "model name", 10) == 0) {
        std::snprintf(cpu, sizeof(cpu), "%s", std::strchr(line, ':') + 2);
        cpu[std::strcspn(cpu, "\n")] = 0;
        break;
      }
    std::fclose(f);
  }
  return cpu;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--quick") {
      o.quick = true;
      continue;
    }
    if (a == "--no-two-workers") {
      o.two_workers = false;
      continue;
    }
    ++i;
    bool ok = true;
    if (a == "--seconds")
      ok = absl::SimpleAtod(v, &o.seconds);
    else if (a == "--repeat")
      ok = absl::SimpleAtoi(v, &o.repeat);
    else if (a == "--flows")
      ok = absl::SimpleAtoi(v, &o.flows);
    else if (a == "--small-flows")
      ok = absl::SimpleAtoi(v, &o.small_flows);
    else if (a == "--services")
      ok = absl::SimpleAtoi(v, &o.services);
    else if (a == "--lag")
      ok = absl::SimpleAtoi(v, &o.lag);
    else if (a == "--out")
      o.out = v;
    else
      ok = false;
    if (!ok || o.repeat < 1 || o.lag + kGenBurst > std::min(kRingSize, kInFlight)) {
      std::fprintf(stderr,
                   "usage: sluice-bench-throughput [--quick] [--seconds S] [--repeat N] "
                   "[--flows N] [--small-flows N] [--services N] [--lag PACKETS (< %u)] "
                   "[--no-two-workers] [--out FILE]\n",
                   kInFlight - kGenBurst);
      return 2;
    }
  }
  if (o.quick) {
    o.seconds = std::min(o.seconds, 0.4);
    o.repeat = 1;
    o.flows = std::min<uint32_t>(o.flows, 200000);
  }
  o.small_flows = std::min(o.small_flows, o.flows);
  // Three lcores on two cores: lcore 2 is never launched; it only lets
  // NodeRuntime create a second worker, which the two-worker rows drive on
  // lcores 0 and 1 themselves.
  std::vector<std::string> eal = {"sluice-bench-throughput",
                                  "--no-pci",
                                  "--no-telemetry",
                                  "--lcores",
                                  "0@0,1@1,2@1",
                                  "--log-level=*:warning",
                                  "-m",
                                  "3072"};
  const bool hugepages = HugepagesAvailable();
  AppendPrivateMemoryArgs(&eal, "sluice-bench");
  if (!InitEal(std::move(eal), "sluice-bench-throughput")) return 1;
  rte_srand(1);
  rte_mempool* pool = CreatePacketPool("bench_pool", 65535, 256, rte_socket_id());
  RingPorts rp;
  WorkerPorts ports;
  std::string error;
  for (int p = 0; p < 2; ++p) {
    for (unsigned q = 0; q < kQueues; ++q) {
      rp.rx[p][q] = rte_ring_create(absl::StrFormat("brx%d_%u", p, q).c_str(), kRingSize,
                                    SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      rp.tx[p][q] = rte_ring_create(absl::StrFormat("btx%d_%u", p, q).c_str(), kRingSize,
                                    SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
    }
    const int id = rte_eth_from_rings(absl::StrFormat("bench_ring%d", p).c_str(), rp.rx[p], kQueues,
                                      rp.tx[p], kQueues, SOCKET_ID_ANY);
    if (pool == nullptr || id < 0 || !ConfigurePort(id, kQueues, pool, false, &error)) {
      std::fprintf(stderr, "port setup failed: %s\n", error.c_str());
      return 1;
    }
    rp.port[p] = static_cast<uint16_t>(id);
    ports.present[p] = true;
    ports.port_id[p] = static_cast<uint16_t>(id);
  }
  constexpr int kUplink = 0, kPods = 1;
  const unsigned worker_lcore = rte_get_next_lcore(-1, 1, 0);
  const Bench b{&rp, pool, worker_lcore, o.seconds, o.repeat, o.lag};
  std::vector<std::string> rows, new_flows, two_workers;

  // 1. The limit: the swap forwarder (and io forwarding) on the same ports and
  // generator, fed the main row's packets.
  TwoWays swap, io;
  {
    const Traffic t = MakeTraffic(PodToClusterIp(o.small_flows, o.services), 0, o.small_flows,
                                  Popularity::kUniform, 1);
    swap = MeasureStep(b, ForwarderStep(b, Step::kSwap, kPods), kPods, t);
    io = MeasureStep(b, ForwarderStep(b, Step::kIo, kPods), kPods, t);
  }
  auto forwarder_json = [&](const char* name, const char* what, const TwoWays& w) {
    return absl::StrFormat("{\"name\": \"%s\", \"what\": \"%s\",\n   %s}", name, what,
                           w.Json(&swap));
  };
  const std::string forwarders = absl::StrJoin(
      {forwarder_json("swap", "rx burst, swap MAC and IPv4 addresses of each packet, tx burst",
                      swap),
       forwarder_json("io", "rx burst -> tx burst, no packet touched (not a limit)", io)},
      ",\n  ");
  std::fprintf(stderr,
               "swap forwarder: (a) %.1f cycles/pkt (%.2f Mpps, rx empty %.0f%%); (b) %.1f "
               "cycles/pkt alone (loop %.1f - generator %.1f)\n",
               swap.a_cycles.median(), Mpps(swap.a_cycles.median()), 100 * swap.a_empty.median(),
               swap.b_alone.median(), swap.b_loop.median(), swap.b_generator.median());
  std::fprintf(stderr, "io forwarding:  (a) %.1f cycles/pkt; (b) %.1f alone\n",
               io.a_cycles.median(), io.b_alone.median());

  std::string main_stages = "[]";  // the main row's per-stage breakdown
  auto row = [&](const char* name, const char* what, uint32_t services, const Traffic& t,
                 const Measured& m) {
    rows.push_back(
        absl::StrFormat("{\"name\": \"%s\", \"what\": \"%s\", \"services\": %u, \"flows\": %u, "
                        "\"popularity\": \"%s\",\n   %s,\n   \"drops\": %u, \"drop_reasons\": %s, "
                        "\"flows_created_while_measuring\": %u,\n   \"stages\": %s}",
                        name, what, services, t.flows(), PopularityName(t.popularity),
                        m.w.Json(&swap), m.drops, m.drop_reasons, m.created, m.stages));
    if (std::string(name) == "established_clusterip_dnat_vxlan" && services == o.services &&
        t.flows() == o.flows && t.popularity == Popularity::kUniform)
      main_stages = m.stages;
    std::fprintf(stderr,
                 "%-36s svc %6u flows %7u %-8s: (b) %6.1f cycles/pkt alone (loop %6.1f, gen "
                 "%5.1f) | (a) %6.1f; drops %lu, new flows %lu, preempted %.0f%%/%.0f%%\n",
                 name, services, t.flows(), PopularityName(t.popularity), m.w.b_alone.median(),
                 m.w.b_loop.median(), m.w.b_generator.median(), m.w.a_cycles.median(),
                 static_cast<unsigned long>(m.drops), static_cast<unsigned long>(m.created),
                 100 * m.w.b_excluded.max(), 100 * m.w.a_excluded.max());
    if (m.w.b_alone.median() <= 0)
      std::fprintf(stderr, "  warning: interleaved loop not slower than the generator alone\n");
  };

  const uint32_t new_flow_batch = std::min<uint32_t>(o.flows / 2, o.quick ? 50000 : 100000);
  std::vector<uint32_t> service_counts = {100, o.services, 100000};
  std::sort(service_counts.begin(), service_counts.end());
  service_counts.erase(std::unique(service_counts.begin(), service_counts.end()),
                       service_counts.end());
  const char* kClusterIpWhat = "pod -> ClusterIP, DNAT + VXLAN encap to a remote node";
  for (uint32_t n : service_counts) {
    const bool main_size = n == o.services;
    NodeRuntime::Config rc;
    rc.workers = 1;
    // The same table size for every Service count, so that only the Service
    // table differs: the established flows, the new-flow runs and the
    // NodePort and egress flows.
    rc.conntrack_capacity = 2 * o.flows + 4 * o.repeat * new_flow_batch + o.small_flows + (1 << 16);
    rc.services.service_ports = 2 * n + 1024;  // tcp/80 and udp/53 per Service
    rc.services.keys = 2 * rc.services.service_ports;
    const ClusterModel model = BenchModel(n);
    auto rt = NodeRuntime::Create(rc, model, ports, pool);
    if (!rt.ok()) {
      std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
      return 1;
    }
    NodeRuntime& r = **rt;
    {
      // Cache-resident flows first (the first small_flows of the big set),
      // then all of them.
      const auto frames = PodToClusterIp(o.flows, n);
      std::vector<Popularity> pops = {Popularity::kUniform};
      if (main_size) pops.push_back(Popularity::kZipf);
      for (uint32_t flows : {o.small_flows, o.flows}) {
        Establish(b, r, kPods, MakeTraffic(frames, 0, flows, Popularity::kOnce, 0));
        for (Popularity p : pops) {
          const Traffic t = MakeTraffic(frames, 0, flows, p, 2);
          row("established_clusterip_dnat_vxlan", kClusterIpWhat, n, t,
              MeasureSluice(b, r, kPods, t));
        }
      }
    }
    if (main_size) {
      // New flows: every packet a fresh tuple (UDP, then TCP SYN), each flow
      // once. Cycles per created flow.
      uint32_t offset = o.flows;
      for (int proto = 0; proto < 2; ++proto) {
        const char* name = proto == 0 ? "udp_new_flows" : "tcp_syn_new_flows";
        auto fresh = [&] {
          offset += new_flow_batch;
          return MakeTraffic(
              PodToClusterIp(new_flow_batch, n, proto == 0 ? kProtoUdp : kProtoTcp, 0x02, offset),
              0, new_flow_batch, Popularity::kOnce, 0);
        };
        TwoWays w;
        Stats created_fraction;
        const CounterSnapshot s0 = CounterSnapshot::Of(r);
        // Cycles per created flow; every packet should create one.
        auto per_flow = [&](const Timing& timing, uint64_t created) {
          created_fraction.Add(static_cast<double>(created) / new_flow_batch);
          return created == 0 ? 0.0 : static_cast<double>(timing.cycles) / created;
        };
        for (int k = 0; k < o.repeat; ++k) {
          const Traffic t = fresh();
          const uint64_t c0 = r.Total(k_conntrack_created);
          const OtherLcoreRun run = OtherLcore(b, SluiceStep(r), kPods, t);
          w.a_cycles.Add(per_flow(run.timing, r.Total(k_conntrack_created) - c0));
          w.a_empty.Add(0);
          w.a_excluded.Add(run.timing.excluded_fraction());
        }
        for (int k = 0; k < o.repeat; ++k) {
          const Traffic t = fresh();
          const uint64_t c0 = r.Total(k_conntrack_created);
          auto [gen, loop] = SameLcorePair(b, SluiceStep(r), kPods, t);
          const double l = per_flow(loop, r.Total(k_conntrack_created) - c0);
          w.b_generator.Add(gen.per_packet());
          w.b_loop.Add(l);
          w.b_alone.Add(l - gen.per_packet());
          w.b_excluded.Add(std::max(gen.excluded_fraction(), loop.excluded_fraction()));
        }
        const auto [drops, reasons] = DropsBetween(s0, CounterSnapshot::Of(r));
        new_flows.push_back(absl::StrFormat(
            "{\"name\": \"%s\", \"services\": %u, \"flows_per_run\": %u, \"unit\": \"flow\",\n"
            "   %s,\n   \"created_per_packet\": %.3f, \"drops\": %u, \"drop_reasons\": %s}",
            name, n, new_flow_batch, w.Json(nullptr), created_fraction.min(), drops, reasons));
        std::fprintf(stderr,
                     "%-38s svc %6u: (b) %.0f cycles/flow alone (loop %.0f, gen %.0f) | (a) %.0f "
                     "cycles/flow; created/packet >= %.3f\n",
                     name, n, w.b_alone.median(), w.b_loop.median(), w.b_generator.median(),
                     w.a_cycles.median(), created_fraction.min());
      }
      // NodePort and its replies at both flow counts, then egress.
      const auto np = ClientsToNodePort(o.flows);
      for (uint32_t flows : {o.small_flows, o.flows}) {
        Establish(b, r, kUplink, MakeTraffic(np, 0, flows, Popularity::kOnce, 0));
        const Traffic t = MakeTraffic(np, 0, flows, Popularity::kUniform, 3);
        row("established_nodeport_dnat_snat_vxlan",
            "client -> NodePort, DNAT + masquerade + VXLAN encap", n, t,
            MeasureSluice(b, r, kUplink, t));
        const std::vector<std::vector<uint8_t>> originals(np.begin(), np.begin() + flows);
        const auto replies = testing::RepliesViaNode227(originals, r.conntrack());
        Establish(b, r, kUplink, MakeTraffic(replies, 0, replies.size(), Popularity::kOnce, 0));
        const Traffic rt_replies = MakeTraffic(replies, 0, replies.size(), Popularity::kUniform, 4);
        row("reply_vxlan_decap_reverse_nat",
            "endpoint reply in VXLAN -> decap + reverse NAT -> uplink", n, rt_replies,
            MeasureSluice(b, r, kUplink, rt_replies));
      }
      const auto egress = PodsToInternet(o.small_flows);
      Establish(b, r, kPods, MakeTraffic(egress, 0, egress.size(), Popularity::kOnce, 0));
      const Traffic t = MakeTraffic(egress, 0, egress.size(), Popularity::kUniform, 5);
      row("established_egress_masquerade", "pod -> internet, masquerade to the node address", n, t,
          MeasureSluice(b, r, kPods, t));
    }
    rt->reset();
  }

  // Two workers: each NodePort flow's original direction on worker 0 (lcore
  // 0, queue 0), its reply on worker 1 (lcore 1, queue 1), each worker with
  // its generator interleaved on its own lcore, both at once.
  if (o.two_workers) {
    NodeRuntime::Config rc;
    rc.workers = 2;
    rc.conntrack_capacity = 2 * (o.flows + (1 << 16));  // worker 0 creates them all
    rc.services.service_ports = 2 * o.services + 1024;
    rc.services.keys = 2 * rc.services.service_ports;
    auto rt = NodeRuntime::Create(rc, BenchModel(o.services), ports, pool);
    if (!rt.ok()) {
      std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
      return 1;
    }
    NodeRuntime& r = **rt;
    const auto np = ClientsToNodePort(o.flows);
    for (uint32_t flows : {o.small_flows, o.flows}) {
      // Worker 0 creates the flows, worker 1 sees the first replies.
      Establish(b, r, kUplink, MakeTraffic(np, 0, flows, Popularity::kOnce, 0));
      const std::vector<std::vector<uint8_t>> originals(np.begin(), np.begin() + flows);
      const auto replies = testing::RepliesViaNode227(originals, r.conntrack());
      const Traffic t_orig = MakeTraffic(np, 0, flows, Popularity::kUniform, 6);
      const Traffic t_reply = MakeTraffic(replies, 0, replies.size(), Popularity::kUniform, 7);
      Establish(b, r, kUplink, MakeTraffic(replies, 0, replies.size(), Popularity::kOnce, 0), 1);
      const CounterSnapshot s0 = CounterSnapshot::Of(r);
      TwoWays w[2];
      for (int k = 0; k < o.repeat; ++k) {
        InterleavedLoop loops[2][2];  // [null, sluice][worker]
        for (int kind = 0; kind < 2; ++kind) {
          std::atomic<int> barrier{2};
          for (uint16_t wk = 0; wk < 2; ++wk) {
            InterleavedLoop& l = loops[kind][wk];
            l.rp = &rp;
            l.port = kUplink;
            l.queue = wk;
            l.pool = pool;
            l.traffic = wk == 0 ? &t_orig : &t_reply;
            l.seconds = o.seconds;
            l.lag = o.lag;
            l.start_barrier = &barrier;
            if (kind == 0) {
              l.step.step = Step::kNull;
              l.step.rx = rp.rx[kUplink][wk];
              l.step.tx = rp.tx[kUplink][wk];
            } else {
              l.step.step = Step::kSluice;
              l.step.worker = &r.worker(wk);
            }
          }
          rte_eal_remote_launch(InterleavedMain, &loops[kind][1], worker_lcore);
          InterleavedMain(&loops[kind][0]);
          rte_eal_wait_lcore(worker_lcore);
          DrainQueue(rp, 0);
          DrainQueue(rp, 1);
        }
        for (int wk = 0; wk < 2; ++wk) AddPair(&w[wk], loops[0][wk].timing, loops[1][wk].timing);
      }
      const auto [drops, reasons] = DropsBetween(s0, CounterSnapshot::Of(r));
      std::vector<std::string> per_worker;
      for (int wk = 0; wk < 2; ++wk) {
        per_worker.push_back(absl::StrFormat(
            "{\"worker\": %d, \"lcore\": %d, \"direction\": \"%s\", "
            "\"loop_cycles_per_packet\": %s, \"generator_cycles_per_packet\": %s, "
            "\"cycles_per_packet\": %s, \"mpps\": %.3f, \"preempted_fraction\": %.3f}",
            wk, wk == 0 ? 0 : static_cast<int>(worker_lcore),
            wk == 0 ? "original: client -> NodePort, DNAT + masquerade + VXLAN"
                    : "reply: VXLAN decap + reverse NAT",
            w[wk].b_loop.Json(), w[wk].b_generator.Json(), w[wk].b_alone.Json(),
            Mpps(w[wk].b_alone.median()), w[wk].b_excluded.max()));
        std::fprintf(stderr,
                     "two workers, flows %7u, worker %d (%s): %.1f cycles/pkt alone (loop %.1f, "
                     "gen %.1f)\n",
                     flows, wk, wk == 0 ? "original" : "reply", w[wk].b_alone.median(),
                     w[wk].b_loop.median(), w[wk].b_generator.median());
      }
      two_workers.push_back(absl::StrFormat(
          "{\"services\": %u, \"flows\": %u, \"popularity\": \"uniform\", \"way\": "
          "\"same_lcore\", \"workers\": [\n   %s],\n   \"drops\": %u, \"drop_reasons\": %s}",
          o.services, flows, absl::StrJoin(per_worker, ",\n   "), drops, reasons));
    }
    rt->reset();
  }

  // Memory per connection: heap bytes of a 1M-flow table, both directions indexed.
  std::string memory;
  {
    rte_malloc_socket_stats before, after;
    rte_malloc_get_socket_stats(rte_socket_id(), &before);
    rte_rcu_qsbr* qs =
        static_cast<rte_rcu_qsbr*>(rte_zmalloc("mq", rte_rcu_qsbr_get_memsize(1), 64));
    rte_rcu_qsbr_init(qs, 1);
    ConntrackTable::Config c;
    c.capacity = 1 << 20;
    c.qsbr = qs;
    auto ct = ConntrackTable::Create(c);
    rte_malloc_get_socket_stats(rte_socket_id(), &after);
    const double per =
        static_cast<double>(after.heap_allocsz_bytes - before.heap_allocsz_bytes) / c.capacity;
    memory = absl::StrFormat(
        "{\"capacity\": %u, \"heap_bytes_per_flow\": %.1f, \"entry_bytes\": %zu, "
        "\"model_bytes_per_flow\": %zu}",
        c.capacity, per, sizeof(ConntrackEntry), ct.ok() ? (*ct)->BytesPerFlow() : 0);
    std::fprintf(stderr, "memory per flow: %.1f bytes (heap), entry %zu\n", per,
                 sizeof(ConntrackEntry));
    ct->reset();
    rte_free(qs);
  }

  const std::string json = absl::StrFormat(
      "{\"machine\": {\"cpu\": \"%s\", \"tsc_hz\": %lu, \"hugepages\": %s},\n"
      " \"settings\": {\"seconds\": %.2f, \"repeat\": %d, \"flows\": %u, \"small_flows\": %u, "
      "\"services\": %u, \"burst\": %u, \"rx_burst_per_port\": %u, \"lag_packets\": %u, "
      "\"sequence_length\": %zu},\n"
      " \"ways\": {\"other_lcore\": \"(a) generator on the main lcore, worker on its own; "
      "each packet arrives modified in the other core's caches\", \"same_lcore\": \"(b) "
      "generator interleaved on the worker's lcore (rx ring kept %u packets deep); "
      "cycles_per_packet = loop - the same loop with a null worker; resembles a NIC with DDIO "
      "(packets in the LLC, mbufs written on the worker's core)\", \"cycles\": \"TSC Hz * "
      "busy seconds / packets on the measuring lcore; iterations over 250 us (preempted) left "
      "out\"},\n"
      " \"forwarders\": [\n  %s],\n \"scenarios\": [\n  %s],\n \"new_flows\": [\n  %s],\n"
      " \"two_workers\": [\n  %s],\n"
      " \"stage_breakdown_note\": \"graph node statistics of the main row (established "
      "pod -> ClusterIP DNAT + VXLAN, all flows, uniform), both ways together\",\n"
      " \"stage_breakdown\": %s,\n"
      " \"memory\": %s}\n",
      CpuModel(), static_cast<unsigned long>(rte_get_tsc_hz()), hugepages ? "true" : "false",
      o.seconds, o.repeat, o.flows, o.small_flows, o.services, kBurstSize, kRxBurstPerPort, o.lag,
      kSequenceLength, o.lag, forwarders, absl::StrJoin(rows, ",\n  "),
      absl::StrJoin(new_flows, ",\n  "), absl::StrJoin(two_workers, ",\n  "), main_stages, memory);
  if (o.out.empty()) {
    std::fputs(json.c_str(), stdout);
  } else {
    std::ofstream(o.out) << json;
  }
  rte_mempool_free(pool);
  CleanupEal();
  return 0;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
