// Per-stage micro-benchmarks at burst size kBurstSize, on the journey
// fixtures' packets: ns per packet (Google Benchmark's time / items) and
// TSC cycles per packet (counter "cycles/pkt").
#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_random.h>

#include <memory>
#include <string>
#include <vector>

#include "bench/dataplane/conntrack/rte_hash_conntrack.h"
#include "benchmark/benchmark.h"
#include "control/table_builder.h"
#include "dataplane/conntrack/conntrack_table.h"
#include "dataplane/nat/nat_rewrite.h"
#include "dataplane/parse/packet_parser.h"
#include "dataplane/route/route.h"
#include "dataplane/vxlan/vxlan.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/node_harness.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::bench {
namespace {

using namespace sluice::testing;

rte_mempool* Pool() {
  static rte_mempool* pool = sluice::CreatePacketPool("micro_pool", 4095, 0, SOCKET_ID_ANY);
  return pool;
}

// Reports cycles per packet next to Google Benchmark's own timing.
class CycleCounter {
 public:
  explicit CycleCounter(benchmark::State& s) : state_(s), start_(rte_rdtsc()) {}
  ~CycleCounter() {
    const double packets = static_cast<double>(state_.iterations()) * kBurstSize;
    state_.counters["cycles/pkt"] = (rte_rdtsc() - start_) / packets;
    state_.SetItemsProcessed(static_cast<int64_t>(packets));
  }

 private:
  benchmark::State& state_;
  uint64_t start_;
};

std::vector<rte_mbuf*> Burst(const std::vector<uint8_t>& frame) {
  std::vector<rte_mbuf*> b(kBurstSize);
  for (auto& m : b) m = ToMbuf(Pool(), frame);
  return b;
}

void FreeBurst(std::vector<rte_mbuf*>& b) {
  for (auto* m : b) rte_pktmbuf_free(m);
}

void BM_Parse(benchmark::State& state) {
  auto b = Burst(ClientSynToNodePort());
  PacketMeta meta[kBurstSize];
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) ParsePacket(b[i], 0, &meta[i]);
      benchmark::DoNotOptimize(meta);
    }
  }
  FreeBurst(b);
}
BENCHMARK(BM_Parse);

// The ServiceDirectory (lock-free rte_hash) as the service node uses it: a
// burst of ClusterIP keys of `n` Services, programmed as a cluster file is.
void BM_ServiceLookupBulk(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  NodeHarness node(Node228Model(n), 1, 1024);
  const ServiceDirectory& dir = node.directory();
  std::vector<ServiceKey> keys(4096);
  for (auto& k : keys)
    k = ServiceKey{Ip("10.112.0.0") + static_cast<uint32_t>(rte_rand_max(n)), 80, kProtoTcp, 0};
  const ServiceKey* kp[kBurstSize];
  ServiceRef found[kBurstSize];
  size_t at = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) kp[i] = &keys[(at + i) & 4095];
      at += kBurstSize;
      dir.LookupBulk(kp, kBurstSize, found);
      benchmark::DoNotOptimize(found);
    }
  }
  if (dir.Lookup(keys[0]) == kNoService) state.SkipWithError("key not programmed");
}
BENCHMARK(BM_ServiceLookupBulk)->Arg(100)->Arg(10000)->Arg(100000);

// The two conntrack tables behind one face, so that every conntrack
// benchmark runs on both: ConntrackTable (the production table) and
// RteHashConntrack (the previous rte_hash-based table, the baseline).
template <typename Table>
struct CtAdapter;

template <>
struct CtAdapter<ConntrackTable> {
  static constexpr uint32_t kMiss = ConntrackTable::kMiss;
  rte_rcu_qsbr* qs;
  std::unique_ptr<ConntrackTable> ct;
  explicit CtAdapter(uint32_t capacity) {
    qs = static_cast<rte_rcu_qsbr*>(rte_zmalloc("bq", rte_rcu_qsbr_get_memsize(1), 64));
    rte_rcu_qsbr_init(qs, 1);
    ConntrackTable::Config c;
    c.capacity = capacity;
    c.qsbr = qs;
    ct = *ConntrackTable::Create(c);
  }
  ~CtAdapter() {
    ct.reset();
    rte_free(qs);
  }
  void LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const {
    ct->LookupBulk(keys, n, refs);
  }
  bool ReplyTupleInUse(const FlowKey& reply) const { return ct->ReplyTupleInUse(reply); }
  void Prefetch(uint32_t ref) const { rte_prefetch0(&ct->entry(ref)); }
  void Touch(uint32_t ref, uint64_t now) { ct->Touch(ref, 0x10, now); }
  uint32_t Insert(const FlowKey& original, const FlowKey& reply, uint8_t flags, uint64_t now) {
    ConntrackEntry e;
    e.original = original;
    e.reply = reply;
    e.flags = flags;
    const ConntrackTable::InsertResult r = ct->Insert(0, e, now);
    return r.status == ConntrackTable::InsertStatus::kCreated ? r.ref : kMiss;
  }
  // Forgets the flows inserted with `now` earlier than `keep_since` by more
  // than the TCP unreplied timeout (the owner's aging, after a grace period).
  void ForgetOlder(const std::vector<uint32_t>&, uint64_t keep_since) {
    rte_rcu_qsbr_thread_register(qs, 0);
    rte_rcu_qsbr_thread_online(qs, 0);
    while (ct->Expire(0, keep_since, ct->capacity()) != 0) rte_rcu_qsbr_quiescent(qs, 0);
    rte_rcu_qsbr_quiescent(qs, 0);
    ct->Expire(0, keep_since, 0);
    rte_rcu_qsbr_thread_offline(qs, 0);
    rte_rcu_qsbr_thread_unregister(qs, 0);
  }
};

template <>
struct CtAdapter<RteHashConntrack> {
  static constexpr uint32_t kMiss = RteHashConntrack::kMiss;
  std::unique_ptr<RteHashConntrack> ct;
  explicit CtAdapter(uint32_t capacity) : ct(RteHashConntrack::Create(capacity)) {}
  void LookupBulk(const FlowKey* const* keys, uint32_t n, uint32_t* refs) const {
    ct->LookupBulk(keys, n, refs);
  }
  bool ReplyTupleInUse(const FlowKey& reply) const { return ct->Lookup(reply) != kMiss; }
  void Prefetch(uint32_t ref) const { rte_prefetch0(&ct->entry(ref)); }
  void Touch(uint32_t ref, uint64_t now) {
    RteHashConntrack::Entry& e = ct->entry(ref);
    if (ref & RteHashConntrack::kReplyBit) e.state.fetch_or(1, std::memory_order_relaxed);
    e.last_seen.store(now, std::memory_order_relaxed);
  }
  uint32_t Insert(const FlowKey& original, const FlowKey& reply, uint8_t, uint64_t now) {
    return ct->Insert(original, reply, now);
  }
  void ForgetOlder(const std::vector<uint32_t>& refs, uint64_t) {
    for (uint32_t r : refs) ct->Remove(r);
  }
};

// `flows` established flows (1k, 100k, 1M), ClusterIP DNAT, all last seen at
// kPrefillNow, in a table with 1/8 headroom as NodeRuntime sizes it.
constexpr uint64_t kPrefillNow = 1000;

// Flow i's original tuple: pods 10.244.26.2+ to a ClusterIP.
FlowKey ClusterIpFlow(uint32_t i) {
  static const uint32_t pods = Ip("10.244.26.2"), cluster_ip = Ip("10.112.0.1");
  FlowKey k;
  k.src_ip = pods + i / 60000;
  k.dst_ip = cluster_ip;
  k.src_port = static_cast<uint16_t>(1024 + i % 60000);
  k.dst_port = 80;
  k.proto = kProtoTcp;
  return k;
}

template <typename Table>
struct ConntrackFixture {
  std::unique_ptr<CtAdapter<Table>> table;
  std::vector<FlowKey> keys;
  double heap_bytes_per_flow = 0;
  explicit ConntrackFixture(uint32_t flows, uint32_t headroom = 0) {
    const uint32_t capacity = flows + flows / 8 + 64 + headroom;
    rte_malloc_socket_stats before, after;
    rte_malloc_get_socket_stats(rte_socket_id(), &before);
    table = std::make_unique<CtAdapter<Table>>(capacity);
    rte_malloc_get_socket_stats(rte_socket_id(), &after);
    heap_bytes_per_flow =
        static_cast<double>(after.heap_allocsz_bytes - before.heap_allocsz_bytes) / capacity;
    keys.resize(flows);
    for (uint32_t i = 0; i < flows; ++i) {
      const FlowKey& k = keys[i] = ClusterIpFlow(i);
      FlowKey reply = k.Reversed();
      reply.src_ip = Ip("10.244.25.100");
      reply.src_port = 8080;
      table->Insert(k, reply, ConntrackEntry::kDnat, kPrefillNow);
    }
  }
};

// Tracked keys in random order, read sequentially by the benchmarks: the
// table's memory is accessed at random, the keys (as a worker has them in its
// packet metadata) cost next to nothing.
constexpr size_t kHitStream = 1 << 16;
std::vector<FlowKey> RandomHits(const std::vector<FlowKey>& keys) {
  std::vector<FlowKey> v(kHitStream);
  for (auto& k : v) k = keys[rte_rand_max(keys.size())];
  return v;
}

template <typename Table>
void BM_ConntrackHit(benchmark::State& state) {
  ConntrackFixture<Table> f(static_cast<uint32_t>(state.range(0)));
  const std::vector<FlowKey> stream = RandomHits(f.keys);
  const FlowKey* kp[kBurstSize];
  uint32_t refs[kBurstSize];
  size_t at = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) kp[i] = &stream[(at + i) & (kHitStream - 1)];
      at += kBurstSize;
      f.table->LookupBulk(kp, kBurstSize, refs);
      benchmark::DoNotOptimize(refs);
    }
  }
  state.counters["heap_bytes/flow"] = f.heap_bytes_per_flow;
}
BENCHMARK_TEMPLATE(BM_ConntrackHit, ConntrackTable)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_ConntrackHit, RteHashConntrack)->Arg(1000)->Arg(100000)->Arg(1000000);

// A hit as the worker uses it: the lookup, then the entry's last_seen and
// state (Touch), which the translation reads next.
template <typename Table>
void BM_ConntrackHitTouch(benchmark::State& state) {
  ConntrackFixture<Table> f(static_cast<uint32_t>(state.range(0)));
  const std::vector<FlowKey> stream = RandomHits(f.keys);
  const FlowKey* kp[kBurstSize];
  uint32_t refs[kBurstSize];
  size_t at = 0;
  uint64_t now = kPrefillNow;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) kp[i] = &stream[(at + i) & (kHitStream - 1)];
      at += kBurstSize;
      f.table->LookupBulk(kp, kBurstSize, refs);
      // As Worker::ProcessBurst: prefetch every hit's entry, then use them.
      for (uint16_t i = 0; i < kBurstSize; ++i)
        if (refs[i] != CtAdapter<Table>::kMiss) f.table->Prefetch(refs[i]);
      ++now;
      for (uint16_t i = 0; i < kBurstSize; ++i)
        if (refs[i] != CtAdapter<Table>::kMiss) f.table->Touch(refs[i], now);
    }
  }
}
BENCHMARK_TEMPLATE(BM_ConntrackHitTouch, ConntrackTable)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_ConntrackHitTouch, RteHashConntrack)->Arg(1000)->Arg(100000)->Arg(1000000);

template <typename Table>
void BM_ConntrackMiss(benchmark::State& state) {
  ConntrackFixture<Table> f(static_cast<uint32_t>(state.range(0)));
  std::vector<FlowKey> absent(4096);
  for (uint32_t i = 0; i < absent.size(); ++i) {
    absent[i] = f.keys[i % f.keys.size()];
    absent[i].dst_port = 81;
  }
  const FlowKey* kp[kBurstSize];
  uint32_t refs[kBurstSize];
  size_t at = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) kp[i] = &absent[(at + i) & 4095];
      at += kBurstSize;
      f.table->LookupBulk(kp, kBurstSize, refs);
      benchmark::DoNotOptimize(refs);
    }
  }
}
BENCHMARK_TEMPLATE(BM_ConntrackMiss, ConntrackTable)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK_TEMPLATE(BM_ConntrackMiss, RteHashConntrack)->Arg(1000)->Arg(100000)->Arg(1000000);

// A flow's first packet on the slow path, into a table already holding
// 1k/100k/1M flows: conntrack insert of both tuples with a masquerade port
// search (the SNAT allocation), as Worker does it. Every 4096 inserts the
// new flows are forgotten again, untimed (cycles/pkt counts only the timed
// part; a "packet" is one insert).
template <typename Table>
void BM_ConntrackInsertWithSnatPort(benchmark::State& state) {
  constexpr uint32_t kBatch = 4096;
  ConntrackFixture<Table> f(static_cast<uint32_t>(state.range(0)), 2 * kBatch);
  std::vector<uint32_t> batch;
  batch.reserve(kBatch);
  uint32_t i = 0;
  uint64_t inserted = 0, cycles = 0, start = rte_rdtsc();
  for (auto _ : state) {
    for (uint16_t b = 0; b < kBurstSize; ++b, ++i) {
      FlowKey original;
      original.src_ip = Ip("172.16.0.0") + i;
      original.dst_ip = Ip("10.10.100.228");
      original.src_port = 40000;
      original.dst_port = 8014;
      original.proto = kProtoTcp;
      FlowKey reply = original.Reversed();
      reply.src_ip = Ip("10.244.25.149");
      reply.src_port = 22;
      reply.dst_ip = Ip("10.244.26.0");
      for (int attempt = 0; attempt < 32; ++attempt) {
        reply.dst_port = static_cast<uint16_t>(1024 + rte_rand_max(64512));
        if (f.table->ReplyTupleInUse(reply)) continue;
        // Inserted at time 1: older than the prefill by more than a timeout.
        const uint32_t ref =
            f.table->Insert(original, reply, ConntrackEntry::kDnat | ConntrackEntry::kSnat, 1);
        if (ref != CtAdapter<Table>::kMiss) batch.push_back(ref);
        break;
      }
      if (batch.size() == kBatch) {
        cycles += rte_rdtsc() - start;
        state.PauseTiming();
        inserted += batch.size();
        f.table->ForgetOlder(batch, kPrefillNow);
        batch.clear();
        state.ResumeTiming();
        start = rte_rdtsc();
      }
    }
  }
  cycles += rte_rdtsc() - start;
  inserted += batch.size();
  const double attempts = static_cast<double>(state.iterations()) * kBurstSize;
  state.counters["cycles/pkt"] = cycles / attempts;
  state.counters["inserted"] = static_cast<double>(inserted) / attempts;
  state.SetItemsProcessed(static_cast<int64_t>(attempts));
}
BENCHMARK_TEMPLATE(BM_ConntrackInsertWithSnatPort, ConntrackTable)
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000);
BENCHMARK_TEMPLATE(BM_ConntrackInsertWithSnatPort, RteHashConntrack)
    ->Arg(1000)
    ->Arg(100000)
    ->Arg(1000000);

void BM_NatRewrite(benchmark::State& state) {
  auto b = Burst(ClientSynToNodePort());
  PacketMeta meta[kBurstSize];
  for (uint16_t i = 0; i < kBurstSize; ++i) ParsePacket(b[i], 0, &meta[i]);
  // The per-packet path: a whole-tuple rewrite with the flow's precomputed
  // deltas (DNAT to the endpoint and masquerade), and back, alternately.
  const FlowKey client = meta[0].key;
  FlowKey translated = client;
  translated.dst_ip = Ip("10.244.25.149");
  translated.dst_port = 22;
  translated.src_ip = Ip("10.244.26.0");
  translated.src_port = 40000;
  const RewriteDeltas there = ComputeRewriteDeltas(client, translated);
  const RewriteDeltas back = ComputeRewriteDeltas(translated, client);
  uint32_t flip = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      const bool out = (++flip & 1) != 0;
      for (uint16_t i = 0; i < kBurstSize; ++i)
        ApplyRewrite(b[i], &meta[i], out ? translated : client, out ? there : back);
      benchmark::DoNotOptimize(meta);
    }
  }
  FreeBurst(b);
}
BENCHMARK(BM_NatRewrite);

void BM_SubnetLpm(benchmark::State& state) {
  NodeHarness node(Node228Model());
  const TableSet* t = &node.tables();
  uint32_t ip = Ip("10.244.0.0");
  const uint32_t base = Ip("10.244.24.0");
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) {
        ip = base + ((ip * 2654435761u) & 0x3ff);
        benchmark::DoNotOptimize(RouteTo(*t, ip));
      }
    }
  }
}
BENCHMARK(BM_SubnetLpm);

void BM_VxlanEncapDecap(benchmark::State& state) {
  const bool encap_only = state.range(0) == 0;
  auto b = Burst(PodToRemotePodSyn());
  PacketMeta meta[kBurstSize];
  for (uint16_t i = 0; i < kBurstSize; ++i) ParsePacket(b[i], 0, &meta[i]);
  VxlanEncapParams p = {};
  p.outer_src_ip = Ip("10.10.100.228");
  p.outer_dst_ip = Ip("10.10.100.227");
  p.vni = 1;
  p.udp_dst_port = 8472;
  p.udp_src_port = 40000;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) {
        VxlanEncapsulate(b[i], meta[i], p);
        if (encap_only) {
          rte_pktmbuf_adj(b[i], kVxlanOverhead);  // undo, cheaply
        } else {
          PacketMeta outer;
          ParsePacket(b[i], 0, &outer);
          VxlanDecapsulate(b[i], outer, 1);
        }
      }
      benchmark::DoNotOptimize(b.data());
    }
  }
  FreeBurst(b);
}
BENCHMARK(BM_VxlanEncapDecap)->ArgName("with_decap")->Arg(0)->Arg(1);

}  // namespace
}  // namespace sluice::bench

namespace sluice::bench {
namespace {

// Flow i of pod 10.244.26.x -> the bench Service i % services
// (10.112.0.0 + that, Node228Model's extra Services).
std::vector<uint8_t> PodToBenchService(uint32_t i, uint32_t services, uint8_t proto,
                                       uint16_t dst_port, uint8_t tcp_flags) {
  FrameSpec s;
  s.src_mac = Mac("0a:58:0a:f4:1a:14");
  s.dst_mac = Mac("02:00:0a:f4:1a:01");
  s.src_ip = Ip("10.244.26.2") + (i / 60000) % 250;
  s.dst_ip = Ip("10.112.0.0") + (i % services);
  s.l4.proto = proto;
  s.l4.src_port = static_cast<uint16_t>(1024 + i % 60000);
  s.l4.dst_port = dst_port;
  s.l4.tcp_flags = tcp_flags;
  return BuildFrame(s);
}

// Per graph stage (the node statistics), cycles a packet between two
// snapshots, as counters named after the node.
void StageCounters(benchmark::State& state, const std::vector<NodeStats>& before,
                   const std::vector<NodeStats>& after, double packets) {
  for (size_t i = 0; i < after.size() && i < before.size(); ++i) {
    const uint64_t cycles = after[i].cycles - before[i].cycles;
    if (cycles == 0 || packets == 0) continue;
    std::string name = after[i].node;
    if (name.rfind("sluice_", 0) == 0) name = name.substr(7);
    state.counters[name] = static_cast<double>(cycles) / packets;
  }
}

// One burst, frames[first, first + kBurstSize) (wrapping), copied into
// mbufs and through worker 0 as arriving on `port`; what it sends is freed.
void RunBurst(NodeHarness& node, PortRole port, const std::vector<std::vector<uint8_t>>& frames,
              size_t first) {
  rte_mbuf* burst[kBurstSize];
  rte_mbuf* out[Worker::kTxCapacity];
  for (uint16_t i = 0; i < kBurstSize; ++i) {
    const auto& f = frames[(first + i) % frames.size()];
    rte_mbuf* m = rte_pktmbuf_alloc(Pool());
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
    burst[i] = m;
  }
  node.worker(0).ProcessBurst(port, burst, kBurstSize, 1);
  for (int p = 0; p < kPortRoleCount; ++p) {
    const uint16_t n = node.worker(0).TakeTx(static_cast<PortRole>(p), out);
    rte_pktmbuf_free_bulk(out, n);
  }
}

// The whole pipeline (Worker::ProcessBurst, no I/O) on established flows:
// pod -> ClusterIP of one of `services` Services, DNAT + VXLAN encapsulation.
void BM_PipelineEstablished(benchmark::State& state) {
  const uint32_t services = static_cast<uint32_t>(state.range(0));
  const uint32_t flows = static_cast<uint32_t>(state.range(1));
  NodeHarness node(Node228Model(services), 1, flows + flows / 2 + 1024);
  std::vector<std::vector<uint8_t>> frames(flows);
  for (uint32_t i = 0; i < flows; ++i) frames[i] = PodToBenchService(i, services, kProtoTcp, 80, 0x10);
  auto run_burst = [&](size_t first) { RunBurst(node, PortRole::kPods, frames, first); };
  for (size_t at = 0; at < flows; at += kBurstSize) run_burst(at);  // create the flows
  const uint64_t drops_before = node.counter(k_neighbor_miss) + node.counter(k_tx_full);
  size_t at = 0;
  const std::vector<NodeStats> before = node.worker(0).Stats();
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      run_burst(at);
      at += kBurstSize * 977;  // jump around the flow set
    }
  }
  StageCounters(state, before, node.worker(0).Stats(),
                static_cast<double>(state.iterations()) * kBurstSize);
  state.counters["created"] = static_cast<double>(node.counter(k_conntrack_created));
  state.counters["drops"] =
      static_cast<double>(node.counter(k_neighbor_miss) + node.counter(k_tx_full) - drops_before);
}
// The reply path of NodePort flows (client -> node-228:NodePort -> the ssh
// pod on node-227): the endpoint's replies in VXLAN from node-227, decap and
// reverse NAT, out of the uplink towards the client.
void BM_PipelineReply(benchmark::State& state) {
  const uint32_t flows = static_cast<uint32_t>(state.range(0));
  NodeHarness node(Node228Model(), 1, 2 * flows + 1024);
  auto run_burst = [&](const std::vector<std::vector<uint8_t>>& frames, size_t first) {
    RunBurst(node, PortRole::kUplink, frames, first);
  };
  // Client flows: the seed's scp SYN with a distinct source port each.
  const std::vector<uint8_t> syn = ClientSynToNodePort();
  std::vector<std::vector<uint8_t>> clients(flows, syn);
  for (uint32_t i = 0; i < flows; ++i) {
    const uint16_t port = static_cast<uint16_t>(10000 + i);
    clients[i][34] = static_cast<uint8_t>(port >> 8);
    clients[i][35] = static_cast<uint8_t>(port);
  }
  for (size_t at = 0; at < flows; at += kBurstSize) run_burst(clients, at);
  const std::vector<std::vector<uint8_t>> replies = RepliesViaNode227(clients, node.conntrack());
  if (replies.empty()) return state.SkipWithError("no flows created");
  const uint64_t out_before = node.counter(k_conntrack_hit_reply);
  size_t at = 0;
  const std::vector<NodeStats> before = node.worker(0).Stats();
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      run_burst(replies, at);
      at += kBurstSize * 977;
    }
  }
  StageCounters(state, before, node.worker(0).Stats(),
                static_cast<double>(state.iterations()) * kBurstSize);
  state.counters["flows"] = static_cast<double>(replies.size());
  state.counters["reply_hits"] = static_cast<double>(node.counter(k_conntrack_hit_reply) - out_before);
}
BENCHMARK(BM_PipelineReply)->Arg(10000);

// New flows: every packet opens a connection, pod -> ClusterIP of one of
// `services` Services (DNAT + VXLAN), UDP or a TCP SYN (range 2: 0 / 1),
// 100k of them into a table of range(1) entries, as the throughput bench's
// new-flow rows do; the 128k-entry table, which fits the LLC, tells what the
// 1M table's cache misses cost. A fixed iteration count: the table must not
// fill.
constexpr int kNewFlowBursts = 3125;  // 100k flows
void BM_PipelineNewFlow(benchmark::State& state) {
  const uint32_t services = static_cast<uint32_t>(state.range(0));
  const uint32_t capacity = static_cast<uint32_t>(state.range(1));
  const bool tcp = state.range(2) != 0;
  ClusterModel model = Node228Model(services);  // and udp/53 on each bench Service
  for (auto& s : model.services)
    if (s.namespace_name == "bench") s.ports.push_back({"dns", L4Protocol::kUdp, 53, 0});
  for (auto& e : model.endpoint_slices)
    if (e.namespace_name == "bench") e.ports.push_back({"dns", L4Protocol::kUdp, 53});
  NodeHarness node(model, 1, capacity);
  const uint32_t flows = kNewFlowBursts * kBurstSize;
  std::vector<std::vector<uint8_t>> frames(flows);
  for (uint32_t i = 0; i < flows; ++i)
    frames[i] = tcp ? PodToBenchService(i, services, kProtoTcp, 80, 0x02)
                    : PodToBenchService(i, services, kProtoUdp, 53, 0);
  size_t at = 0;
  const std::vector<NodeStats> before = node.worker(0).Stats();
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      RunBurst(node, PortRole::kPods, frames, at);
      at += kBurstSize;
    }
  }
  StageCounters(state, before, node.worker(0).Stats(), flows);  // cycles a new flow
  state.counters["created"] = static_cast<double>(node.counter(k_conntrack_created));
  if (node.counter(k_conntrack_created) != flows || node.counter(k_service_dnat) != flows)
    state.SkipWithError("not every packet made a DNAT flow");
}
BENCHMARK(BM_PipelineNewFlow)
    ->Args({10000, 1 << 20, 0})
    ->Args({10000, 1 << 20, 1})
    ->Args({10000, 1 << 17, 0})
    ->Iterations(kNewFlowBursts);

BENCHMARK(BM_PipelineEstablished)
    ->Args({10000, 10000})
    ->Args({100, 100000})
    ->Args({10000, 100000})
    ->Args({100000, 100000})
    ->Args({10000, 1000000});

}  // namespace
}  // namespace sluice::bench
