// Per-stage micro-benchmarks at burst size kBurstSize, on the journey
// fixtures' packets: ns per packet (Google Benchmark's time / items) and
// TSC cycles per packet (counter "cycles/pkt").
#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>

#include <memory>
#include <vector>

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
  static rte_mempool* pool =
      rte_pktmbuf_pool_create("micro_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
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

void BM_ServiceLookupBulk(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  auto t = BuildTableSet(Node228Model(n), 1);
  if (!t.ok()) return state.SkipWithError("table build failed");
  std::vector<ServiceKey> keys(4096);
  for (auto& k : keys)
    k = ServiceKey{Ip("10.112.0.0") + static_cast<uint32_t>(rte_rand_max(n)), 80, kProtoTcp, 0};
  const ServiceKey* kp[kBurstSize];
  const ServiceEntry* found[kBurstSize];
  size_t at = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) kp[i] = &keys[(at + i) & 4095];
      at += kBurstSize;
      (*t)->services->LookupBulk(kp, kBurstSize, found);
      benchmark::DoNotOptimize(found);
    }
  }
}
BENCHMARK(BM_ServiceLookupBulk)->Arg(100)->Arg(10000)->Arg(100000);

struct ConntrackFixture {
  rte_rcu_qsbr* qs;
  std::unique_ptr<ConntrackTable> ct;
  std::vector<FlowKey> keys;
  explicit ConntrackFixture(uint32_t flows) {
    qs = static_cast<rte_rcu_qsbr*>(rte_zmalloc("bq", rte_rcu_qsbr_get_memsize(1), 64));
    rte_rcu_qsbr_init(qs, 1);
    ConntrackTable::Config c;
    c.capacity = flows + flows / 8 + 64;
    c.qsbr = qs;
    ct = *ConntrackTable::Create(c);
    keys.resize(flows);
    for (uint32_t i = 0; i < flows; ++i) {
      FlowKey& k = keys[i];
      k.src_ip = Ip("10.244.26.2") + i / 60000;
      k.dst_ip = Ip("10.112.0.1");
      k.src_port = static_cast<uint16_t>(1024 + i % 60000);
      k.dst_port = 80;
      k.proto = kProtoTcp;
      ConntrackEntry e;
      e.original = k;
      e.dnat_ip = Ip("10.244.25.100");
      e.dnat_port = 8080;
      e.snat_ip = k.src_ip;
      e.snat_port = k.src_port;
      e.flags = ConntrackEntry::kDnat;
      ct->Insert(0, e, 1);
    }
  }
  ~ConntrackFixture() {
    ct.reset();
    rte_free(qs);
  }
};

void BM_ConntrackHit(benchmark::State& state) {
  ConntrackFixture f(static_cast<uint32_t>(state.range(0)));
  const FlowKey* kp[kBurstSize];
  uint32_t refs[kBurstSize];
  uint64_t x = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        kp[i] = &f.keys[(x >> 33) % f.keys.size()];
      }
      f.ct->LookupBulk(kp, kBurstSize, refs);
      benchmark::DoNotOptimize(refs);
    }
  }
}
BENCHMARK(BM_ConntrackHit)->Arg(1000)->Arg(100000)->Arg(1000000);

void BM_ConntrackMiss(benchmark::State& state) {
  ConntrackFixture f(static_cast<uint32_t>(state.range(0)));
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
      f.ct->LookupBulk(kp, kBurstSize, refs);
      benchmark::DoNotOptimize(refs);
    }
  }
}
BENCHMARK(BM_ConntrackMiss)->Arg(1000)->Arg(100000)->Arg(1000000);

// A flow's first packet on the slow path: conntrack insert of both tuples
// with a masquerade port search (the SNAT allocation), as Worker does it.
void BM_ConntrackInsertWithSnatPort(benchmark::State& state) {
  ConntrackFixture f(1000);
  uint32_t i = 0;
  uint64_t inserted = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t b = 0; b < kBurstSize; ++b, ++i) {
        ConntrackEntry e;
        e.original.src_ip = Ip("172.16.0.0") + i;
        e.original.dst_ip = Ip("10.10.100.228");
        e.original.src_port = 40000;
        e.original.dst_port = 8014;
        e.original.proto = kProtoTcp;
        e.dnat_ip = Ip("10.244.25.149");
        e.dnat_port = 22;
        e.snat_ip = Ip("10.244.26.0");
        e.flags = ConntrackEntry::kDnat | ConntrackEntry::kSnat;
        for (int attempt = 0; attempt < 32; ++attempt) {
          e.snat_port = static_cast<uint16_t>(1024 + rte_rand_max(64512));
          if (f.ct->ReplyTupleInUse(e.ReplyKey())) continue;
          inserted += f.ct->Insert(0, e, 1).status == ConntrackTable::InsertStatus::kCreated;
          break;
        }
        if (i % 4096 == 4095) {  // keep the table from filling: expire everything
          state.PauseTiming();
          rte_rcu_qsbr_thread_register(f.qs, 0);
          rte_rcu_qsbr_thread_online(f.qs, 0);
          f.ct->Expire(0, 1ull << 40, f.ct->capacity());
          rte_rcu_qsbr_quiescent(f.qs, 0);
          f.ct->Expire(0, 1ull << 40, 0);
          rte_rcu_qsbr_thread_offline(f.qs, 0);
          rte_rcu_qsbr_thread_unregister(f.qs, 0);
          state.ResumeTiming();
        }
      }
    }
  }
  state.counters["inserted"] = static_cast<double>(inserted);
}
BENCHMARK(BM_ConntrackInsertWithSnatPort);

void BM_NatRewrite(benchmark::State& state) {
  auto b = Burst(ClientSynToNodePort());
  PacketMeta meta[kBurstSize];
  for (uint16_t i = 0; i < kBurstSize; ++i) ParsePacket(b[i], 0, &meta[i]);
  uint32_t flip = 0;
  const uint32_t endpoint = Ip("10.244.25.149"), masq = Ip("10.244.26.0");
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      ++flip;
      for (uint16_t i = 0; i < kBurstSize; ++i) {
        RewriteEndpoint(b[i], &meta[i], false, endpoint + (flip & 1), 22);
        RewriteEndpoint(b[i], &meta[i], true, masq, 40000 + (flip & 1));
      }
      benchmark::DoNotOptimize(meta);
    }
  }
  FreeBurst(b);
}
BENCHMARK(BM_NatRewrite);

void BM_SubnetLpm(benchmark::State& state) {
  auto t = BuildTableSet(Node228Model(), 1);
  if (!t.ok()) return state.SkipWithError("table build failed");
  uint32_t ip = Ip("10.244.0.0");
  const uint32_t base = Ip("10.244.24.0");
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      for (uint16_t i = 0; i < kBurstSize; ++i) {
        ip = base + ((ip * 2654435761u) & 0x3ff);
        benchmark::DoNotOptimize(RouteTo(**t, ip));
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

// The whole pipeline (Worker::ProcessBurst, no I/O) on established flows:
// pod -> ClusterIP of one of `services` Services, DNAT + VXLAN encapsulation.
void BM_PipelineEstablished(benchmark::State& state) {
  const uint32_t services = static_cast<uint32_t>(state.range(0));
  const uint32_t flows = static_cast<uint32_t>(state.range(1));
  NodeHarness node(Node228Model(services), 1, flows + flows / 2 + 1024);
  std::vector<std::vector<uint8_t>> frames(flows);
  for (uint32_t i = 0; i < flows; ++i) {
    FrameSpec s;
    s.src_mac = Mac("0a:58:0a:f4:1a:14");
    s.dst_mac = Mac("02:00:0a:f4:1a:01");
    s.src_ip = Ip("10.244.26.2") + (i / 60000) % 250;
    s.dst_ip = Ip("10.112.0.0") + (i % services);
    s.l4.src_port = static_cast<uint16_t>(1024 + i % 60000);
    s.l4.dst_port = 80;
    s.l4.tcp_flags = 0x10;
    frames[i] = BuildFrame(s);
  }
  rte_mbuf* burst[kBurstSize];
  rte_mbuf* out[Worker::kTxCapacity];
  auto run_burst = [&](size_t first) {
    for (uint16_t i = 0; i < kBurstSize; ++i) {
      const auto& f = frames[(first + i) % flows];
      rte_mbuf* m = rte_pktmbuf_alloc(Pool());
      std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(f.size())), f.data(), f.size());
      burst[i] = m;
    }
    node.worker(0).ProcessBurst(PortRole::kPods, burst, kBurstSize, 1);
    for (int p = 0; p < kPortRoleCount; ++p) {
      const uint16_t n = node.worker(0).TakeTx(static_cast<PortRole>(p), out);
      rte_pktmbuf_free_bulk(out, n);
    }
  };
  for (size_t at = 0; at < flows; at += kBurstSize) run_burst(at);  // create the flows
  const uint64_t drops_before = node.counter(k_neighbor_miss) + node.counter(k_tx_full);
  size_t at = 0;
  {
    CycleCounter cc(state);
    for (auto _ : state) {
      run_burst(at);
      at += kBurstSize * 977;  // jump around the flow set
    }
  }
  state.counters["created"] = static_cast<double>(node.counter(k_conntrack_created));
  state.counters["drops"] =
      static_cast<double>(node.counter(k_neighbor_miss) + node.counter(k_tx_full) - drops_before);
}
BENCHMARK(BM_PipelineEstablished)
    ->Args({100, 100000})
    ->Args({10000, 100000})
    ->Args({100000, 100000})
    ->Args({10000, 1000000});

}  // namespace
}  // namespace sluice::bench
