// sluice-bench-throughput: packets per second through one worker lcore.
//
// The worker runs Sluice's real loop (NodeRuntime, Worker::PollOnce) on
// net_ring ports. A generator on the main lcore keeps the rx ring full of
// pre-built packets and recycles what the worker transmits, restoring each
// packet's bytes from its template (a copy of < 128 bytes), so the worker's
// figure is the pipeline's cost, not the generator's. The same setup with a
// worker that only forwards (rx burst -> tx burst, testpmd's io mode) gives
// the limit of this I/O path; every figure is also reported as a fraction of
// it.
//
// Output: JSON on stdout (or --out FILE), one object per scenario with the
// median, min and max of --repeat runs.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_ring.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

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
using testing::BuildVxlan;
using testing::Example;
using testing::FrameSpec;
using testing::Ip;
using testing::Mac;

constexpr unsigned kMaxFrame = 128;
constexpr unsigned kInFlight = 4096;

struct Template {
  uint8_t bytes[kMaxFrame];
  uint16_t len;
};

struct Options {
  double seconds = 2.0;
  int repeat = 3;
  uint32_t flows = 1 << 20;
  uint32_t services = 10000;
  bool quick = false;
  std::string out;
};

// Ring ports for the uplink and the pods side; one queue each.
struct RingPorts {
  rte_ring* ring[2];  // rx and tx of a port are separate rings
  rte_ring* tx[2];
  uint16_t port[2];
};

std::vector<Template> ToTemplates(const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<Template> t(frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    t[i].len = static_cast<uint16_t>(frames[i].size());
    std::memcpy(t[i].bytes, frames[i].data(), frames[i].size());
  }
  return t;
}

// Feeds `templates` into the rx ring of `port_index` and recycles mbufs from
// every tx ring, for `seconds` or until `limit` packets were fed (0: none).
// Returns packets fed.
uint64_t Generate(const RingPorts& rp, int port_index, rte_mempool* pool,
                  const std::vector<Template>& templates, double seconds, uint64_t limit) {
  // Room for every mbuf of the pool: the worker may add some (ARP requests).
  std::vector<rte_mbuf*> spare(rte_mempool_avail_count(pool) + kInFlight);
  if (rte_pktmbuf_alloc_bulk(pool, spare.data(), kInFlight) != 0) return 0;
  size_t nspare = kInFlight;
  size_t next = 0;
  uint64_t fed = 0;
  const uint64_t end = rte_get_tsc_cycles() + static_cast<uint64_t>(seconds * rte_get_tsc_hz());
  while (rte_get_tsc_cycles() < end && (limit == 0 || fed < limit)) {
    for (int p = 0; p < 2; ++p) {
      rte_mbuf* back[64];
      unsigned n;
      while ((n = rte_ring_dequeue_burst(rp.tx[p], reinterpret_cast<void**>(back), 64, nullptr)) !=
             0) {
        for (unsigned i = 0; i < n; ++i) {
          if (back[i]->refcnt != 1 || back[i]->nb_segs != 1) {
            rte_pktmbuf_free(back[i]);
            rte_mbuf* fresh = rte_pktmbuf_alloc(pool);
            if (fresh == nullptr) continue;
            back[i] = fresh;
          }
          if (nspare == spare.size())
            rte_pktmbuf_free(back[i]);
          else
            spare[nspare++] = back[i];
        }
      }
    }
    // Packets the worker dropped went back to the pool: top up.
    if (nspare < 64 && nspare + 64 <= spare.size()) {
      const unsigned want = 64;
      if (rte_pktmbuf_alloc_bulk(pool, &spare[nspare], want) == 0) nspare += want;
    }
    unsigned burst = std::min<size_t>(nspare, 64);
    if (limit != 0) burst = std::min<uint64_t>(burst, limit - fed);
    rte_mbuf* out[64];
    for (unsigned i = 0; i < burst; ++i) {
      rte_mbuf* m = spare[--nspare];
      const Template& t = templates[next];
      next = next + 1 == templates.size() ? 0 : next + 1;
      m->data_off = RTE_PKTMBUF_HEADROOM;
      m->data_len = m->pkt_len = t.len;
      std::memcpy(rte_pktmbuf_mtod(m, void*), t.bytes, t.len);
      out[i] = m;
    }
    const unsigned sent =
        rte_ring_enqueue_burst(rp.ring[port_index], reinterpret_cast<void**>(out), burst, nullptr);
    for (unsigned i = sent; i < burst; ++i) spare[nspare++] = out[i];
    fed += sent;
  }
  // Drain: everything in flight comes back or is dropped by the worker.
  for (rte_mbuf* m : std::vector<rte_mbuf*>(spare.begin(), spare.begin() + nspare))
    rte_pktmbuf_free(m);
  return fed;
}

void DrainAll(const RingPorts& rp) {
  for (int p = 0; p < 2; ++p) {
    rte_mbuf* m[64];
    unsigned n;
    for (rte_ring* r : {rp.ring[p], rp.tx[p]})
      while ((n = rte_ring_dequeue_burst(r, reinterpret_cast<void**>(m), 64, nullptr)) != 0)
        rte_pktmbuf_free_bulk(m, n);
  }
}

// testpmd-style io forwarding on the worker lcore.
struct IoFwd {
  uint16_t port;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> packets{0};
};
int IoFwdMain(void* arg) {
  auto* f = static_cast<IoFwd*>(arg);
  uint64_t local = 0;
  while (!f->stop.load(std::memory_order_relaxed)) {
    rte_mbuf* b[kBurstSize];
    const uint16_t n = rte_eth_rx_burst(f->port, 0, b, kBurstSize);
    if (n == 0) continue;
    const uint16_t s = rte_eth_tx_burst(f->port, 0, b, n);
    for (uint16_t i = s; i < n; ++i) rte_pktmbuf_free(b[i]);
    local += n;
    f->packets.store(local, std::memory_order_relaxed);
  }
  return 0;
}

struct Stats {
  std::vector<double> mpps;
  double median() const {
    std::vector<double> v = mpps;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  double min() const { return mpps.empty() ? 0 : *std::min_element(mpps.begin(), mpps.end()); }
  double max() const { return mpps.empty() ? 0 : *std::max_element(mpps.begin(), mpps.end()); }
};

std::string DropReasons(const NodeRuntime& rt) {
  std::vector<std::string> parts;
  for (int c = 0; c < kCounterCount; ++c) {
    const CounterInfo& info = CounterInfoOf(static_cast<Counter>(c));
    const uint64_t v = rt.Total(static_cast<Counter>(c));
    if (info.kind == CounterKind::kDrop && v != 0)
      parts.push_back(absl::StrFormat("\"%s\": %u", info.name, v));
  }
  return "{" + absl::StrJoin(parts, ", ") + "}";
}

uint64_t Drops(const NodeRuntime& rt) {
  uint64_t drops = 0;
  for (int c = 0; c < kCounterCount; ++c)
    if (CounterInfoOf(static_cast<Counter>(c)).kind == CounterKind::kDrop)
      drops += rt.Total(static_cast<Counter>(c));
  return drops;
}

// --- traffic shapes ---------------------------------------------------------

const MacAddress kGatewayMac = Mac("02:00:0a:0a:64:01");
const MacAddress kUplinkMac = Mac("02:00:0a:0a:64:e4");
const MacAddress kPodsMac = Mac("02:00:0a:f4:1a:01");

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
    s.l4.dst_port = 80;
    s.l4.tcp_flags = flags;
    v.push_back(BuildFrame(s));
  }
  return v;
}

// External clients -> NodePort 8014: DNAT + masquerade + VXLAN.
std::vector<std::vector<uint8_t>> ClientsToNodePort(uint32_t flows) {
  std::vector<std::vector<uint8_t>> v;
  for (uint32_t i = 0; i < flows; ++i) {
    FrameSpec s;
    s.src_mac = kGatewayMac;
    s.dst_mac = kUplinkMac;
    s.src_ip = Ip("172.16.0.1") + i / 50000;
    s.dst_ip = Ip(Example::kNode228);
    s.ttl = 62;
    s.l4.src_port = static_cast<uint16_t>(10000 + i % 50000);
    s.l4.dst_port = Example::kNodePort;
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

// What node-227 sends back for each NodePort flow: VXLAN to us, inner reply
// from the endpoint to our masquerade address and port.
std::vector<std::vector<uint8_t>> RepliesFor(const std::vector<std::vector<uint8_t>>& originals,
                                             ConntrackTable* ct) {
  std::vector<std::vector<uint8_t>> v;
  for (const auto& o : originals) {
    const testing::ParsedFrame p = testing::ParseFrame(o);
    FlowKey k;
    k.src_ip = p.src_ip;
    k.dst_ip = p.dst_ip;
    k.src_port = p.src_port;
    k.dst_port = p.dst_port;
    k.proto = p.proto;
    const uint32_t ref = ct->Lookup(k);
    if (ref == ConntrackTable::kMiss) continue;
    const ConntrackEntry& e = ct->entry(ref);
    v.push_back(testing::TcpViaNode227(e.reply.src_ip, e.reply.src_port, e.reply.dst_ip,
                                       e.reply.dst_port, 0x10, 1000, 1));
  }
  return v;
}

}  // namespace
}  // namespace sluice::bench

namespace sluice::bench {
namespace {

std::string StatsJson(const Stats& s) {
  return absl::StrFormat("{\"median\": %.4f, \"min\": %.4f, \"max\": %.4f, \"runs\": [%s]}",
                         s.median(), s.min(), s.max(), absl::StrJoin(s.mpps, ", "));
}

double Seconds(uint64_t cycles) { return static_cast<double>(cycles) / rte_get_tsc_hz(); }

void WaitIdle(NodeRuntime& rt, uint64_t target) {
  const uint64_t end = rte_get_tsc_cycles() + 5 * rte_get_tsc_hz();
  while (rt.Processed() < target && rte_get_tsc_cycles() < end) rte_pause();
}

// Feeds `templates` once (creating their flows), then measures the
// established rate over `repeat` runs.
struct Measured {
  std::string drop_reasons;
  Stats established;
  double first_pass_flows_per_s = 0;
  uint64_t drops = 0;
};

Measured RunShape(NodeRuntime& rt, const RingPorts& rp, int port_index, rte_mempool* pool,
                  const std::vector<Template>& t, const Options& o, bool warm = true) {
  Measured m;
  if (t.empty()) {
    std::fprintf(stderr, "no packets for this scenario\n");
    std::exit(1);
  }
  if (warm) {
    const uint64_t before = rt.Processed();
    const uint64_t created0 = rt.Total(k_conntrack_created);
    const uint64_t c0 = rte_get_tsc_cycles();
    const uint64_t fed = Generate(rp, port_index, pool, t, 600, t.size());
    WaitIdle(rt, before + fed);
    const double secs = Seconds(rte_get_tsc_cycles() - c0);
    m.first_pass_flows_per_s = (rt.Total(k_conntrack_created) - created0) / secs;
  }
  for (int r = 0; r < o.repeat; ++r) {
    const uint64_t before = rt.Processed();
    const uint64_t c0 = rte_get_tsc_cycles();
    Generate(rp, port_index, pool, t, o.seconds, 0);
    const uint64_t done = rt.Processed() - before;
    m.established.mpps.push_back(done / Seconds(rte_get_tsc_cycles() - c0) / 1e6);
    DrainAll(rp);
  }
  m.drops = Drops(rt);
  m.drop_reasons = DropReasons(rt);
  return m;
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
    ++i;
    if (a == "--seconds")
      absl::SimpleAtod(v, &o.seconds);
    else if (a == "--repeat")
      absl::SimpleAtoi(v, &o.repeat);
    else if (a == "--flows")
      absl::SimpleAtoi(v, &o.flows);
    else if (a == "--services")
      absl::SimpleAtoi(v, &o.services);
    else if (a == "--out")
      o.out = v;
    else {
      std::fprintf(stderr,
                   "usage: sluice-bench-throughput [--quick] [--seconds S] [--repeat N] "
                   "[--flows N] [--services N] [--out FILE]\n");
      return 2;
    }
  }
  if (o.quick) {
    o.seconds = std::min(o.seconds, 1.0);
    o.repeat = 1;
    o.flows = std::min<uint32_t>(o.flows, 200000);
  }
  std::vector<std::string> eal = {"sluice-bench-throughput",
                                  "--no-pci",
                                  "--no-telemetry",
                                  "-l",
                                  "0-1",
                                  "--log-level=*:warning",
                                  "-m",
                                  "3072"};
  if (HugepagesAvailable()) {
    eal.push_back("--in-memory");
  } else {
    eal.push_back("--no-huge");
    eal.push_back("--no-shconf");
    eal.push_back(absl::StrFormat("--file-prefix=sluice-bench-%d", getpid()));
  }
  std::vector<char*> eal_argv;
  for (auto& s : eal) eal_argv.push_back(s.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "EAL init failed\n");
    return 1;
  }
  rte_srand(1);
  rte_mempool* pool = CreatePacketPool("bench_pool", 32767, 256, rte_socket_id());
  RingPorts rp;
  WorkerPorts ports;
  std::string error;
  for (int p = 0; p < 2; ++p) {
    rp.ring[p] = rte_ring_create(absl::StrFormat("brx%d", p).c_str(), 8192, SOCKET_ID_ANY,
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    rp.tx[p] = rte_ring_create(absl::StrFormat("btx%d", p).c_str(), 8192, SOCKET_ID_ANY,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
    const int id = rte_eth_from_rings(absl::StrFormat("bench_ring%d", p).c_str(), &rp.ring[p], 1,
                                      &rp.tx[p], 1, SOCKET_ID_ANY);
    if (pool == nullptr || id < 0 || !ConfigurePort(id, 1, pool, false, &error)) {
      std::fprintf(stderr, "port setup failed: %s\n", error.c_str());
      return 1;
    }
    rp.port[p] = static_cast<uint16_t>(id);
    ports.present[p] = true;
    ports.port_id[p] = static_cast<uint16_t>(id);
  }
  constexpr int kUplink = 0, kPods = 1;
  std::vector<std::string> results;
  const unsigned worker_lcore = rte_get_next_lcore(-1, 1, 0);

  // 1. The limit: io forwarding on the same ring ports, same generator.
  Stats iofwd;
  {
    const auto t = ToTemplates(ClientsToNodePort(4096));
    for (int r = 0; r < o.repeat; ++r) {
      IoFwd f;
      f.port = rp.port[kUplink];
      rte_eal_remote_launch(IoFwdMain, &f, worker_lcore);
      const uint64_t c0 = rte_get_tsc_cycles();
      Generate(rp, kUplink, pool, t, o.seconds, 0);
      const double secs = Seconds(rte_get_tsc_cycles() - c0);
      f.stop = true;
      rte_eal_wait_lcore(worker_lcore);
      iofwd.mpps.push_back(f.packets.load() / secs / 1e6);
      DrainAll(rp);
    }
  }
  std::fprintf(stderr, "io forwarding: %.2f Mpps\n", iofwd.median());
  auto scenario = [&](const char* name, uint32_t services, uint32_t flows, const Measured& m,
                      const char* what) {
    results.push_back(absl::StrFormat(
        "{\"name\": \"%s\", \"what\": \"%s\", \"services\": %u, \"flows\": %u, \"mpps\": %s, "
        "\"fraction_of_iofwd\": %.3f, \"cycles_per_packet\": %.1f, \"drops\": %u, "
        "\"drop_reasons_so_far\": %s}",
        name, what, services, flows, StatsJson(m.established),
        m.established.median() / iofwd.median(), rte_get_tsc_hz() / (m.established.median() * 1e6),
        m.drops, m.drop_reasons));
    std::fprintf(stderr, "%-34s services %6u flows %8u: %.2f Mpps (%.0f%% of io fwd), drops %lu\n",
                 name, services, flows, m.established.median(),
                 100 * m.established.median() / iofwd.median(),
                 static_cast<unsigned long>(m.drops));
  };
  std::vector<std::string> new_flows;
  std::vector<std::string> updates;

  std::vector<uint32_t> service_counts = {100, o.services};
  if (!o.quick) service_counts.push_back(100000);
  for (uint32_t n : service_counts) {
    const bool main_size = n == o.services;
    NodeRuntime::Config rc;
    rc.workers = 1;
    // The same table size for every Service count, so that only the Service
    // table differs between them: room for the established flows, the
    // new-flow runs and the NodePort/egress flows.
    const uint32_t new_flow_batch = std::min<uint32_t>(o.flows, 250000);
    rc.conntrack_capacity = o.flows + 2 * o.repeat * new_flow_batch + 4 * 50000 + (1 << 16);
    ClusterModel model = testing::Node228Model(n);
    auto rt = NodeRuntime::Create(rc, model, ports, pool);
    if (!rt.ok()) {
      std::fprintf(stderr, "%s\n", std::string(rt.status().message()).c_str());
      return 1;
    }
    (*rt)->Launch();
    const auto cip = ToTemplates(PodToClusterIp(o.flows, n));
    Measured m = RunShape(**rt, rp, kPods, pool, cip, o);
    scenario("established_clusterip_dnat_vxlan", n, o.flows, m,
             "pod -> ClusterIP, DNAT + VXLAN encap to a remote node");
    if (main_size) {
      new_flows.push_back(
          absl::StrFormat("{\"name\": \"tcp_first_packets\", \"services\": %u, \"flows\": %u, "
                          "\"flows_per_second\": %.0f}",
                          n, o.flows, m.first_pass_flows_per_s));
      // New flows: every packet a fresh tuple (UDP, then TCP SYN).
      for (int proto = 0; proto < 2; ++proto) {
        const uint32_t k = new_flow_batch;
        Stats rate;
        for (int r = 0; r < o.repeat; ++r) {
          const auto fresh = ToTemplates(PodToClusterIp(k, n, proto == 0 ? kProtoUdp : kProtoTcp,
                                                        0x02, o.flows + (r + 1 + proto * 8) * k));
          const uint64_t created0 = (*rt)->Total(k_conntrack_created);
          const uint64_t before = (*rt)->Processed();
          const uint64_t c0 = rte_get_tsc_cycles();
          const uint64_t fed = Generate(rp, kPods, pool, fresh, 600, fresh.size());
          WaitIdle(**rt, before + fed);
          const double secs = Seconds(rte_get_tsc_cycles() - c0);
          rate.mpps.push_back(((*rt)->Total(k_conntrack_created) - created0) / secs / 1e6);
        }
        new_flows.push_back(absl::StrFormat(
            "{\"name\": \"%s\", \"services\": %u, \"flows\": %u, \"mflows_per_second\": %s, "
            "\"drops\": %u}",
            proto == 0 ? "udp_new_flows" : "tcp_syn_new_flows", n, new_flow_batch, StatsJson(rate),
            Drops(**rt)));
        std::fprintf(stderr, "%-34s services %6u: %.2f M new flows/s\n",
                     proto == 0 ? "udp_new_flows" : "tcp_syn_new_flows", n, rate.median());
      }
      const uint32_t np_flows = std::min<uint32_t>(o.flows, 50000);
      const auto np = ClientsToNodePort(np_flows);
      m = RunShape(**rt, rp, kUplink, pool, ToTemplates(np), o);
      scenario("established_nodeport_dnat_snat_vxlan", n, np_flows, m,
               "client -> NodePort, DNAT + masquerade + VXLAN encap");
      m = RunShape(**rt, rp, kUplink, pool, ToTemplates(RepliesFor(np, &(*rt)->conntrack())), o,
                   false);
      scenario("reply_vxlan_decap_reverse_nat", n, np_flows, m,
               "endpoint reply in VXLAN -> decap + reverse NAT -> uplink");
      m = RunShape(**rt, rp, kPods, pool, ToTemplates(PodsToInternet(np_flows)), o);
      scenario("established_egress_masquerade", n, np_flows, m,
               "pod -> internet, masquerade to the node address");
    }
    // Programming latency: one endpoint change, applied while the worker runs.
    if (n <= 10000 || !o.quick) {
      std::vector<std::string> samples;
      const int k = o.quick ? 5 : 20;
      for (int i = 0; i < k; ++i) {
        ClusterModel changed = model;
        changed.endpoint_slices.back().endpoints[0].ip = Ip("10.244.25.200") + i;
        const uint64_t c0 = rte_get_tsc_cycles();
        absl::Status s = (*rt)->Reload(changed);
        const double us = Seconds(rte_get_tsc_cycles() - c0) * 1e6;
        if (!s.ok()) return 1;
        samples.push_back(absl::StrFormat("%.1f", us));
      }
      updates.push_back(absl::StrFormat("{\"services\": %u, \"microseconds\": [%s]}", n,
                                        absl::StrJoin(samples, ", ")));
    }
    (*rt)->StopAndJoin();
    DrainAll(rp);
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
  const std::string json = absl::StrFormat(
      "{\"machine\": {\"cpu\": \"%s\", \"tsc_hz\": %lu, \"hugepages\": %s},\n"
      " \"settings\": {\"seconds\": %.2f, \"repeat\": %d, \"flows\": %u, \"services\": %u, "
      "\"burst\": %u},\n"
      " \"iofwd\": %s,\n \"scenarios\": [\n  %s],\n \"new_flows\": [\n  %s],\n"
      " \"update_latency\": [\n  %s],\n \"memory\": %s}\n",
      cpu, static_cast<unsigned long>(rte_get_tsc_hz()), HugepagesAvailable() ? "true" : "false",
      o.seconds, o.repeat, o.flows, o.services, kBurstSize, StatsJson(iofwd),
      absl::StrJoin(results, ",\n  "), absl::StrJoin(new_flows, ",\n  "),
      absl::StrJoin(updates, ",\n  "), memory);
  if (o.out.empty()) {
    std::fputs(json.c_str(), stdout);
  } else {
    std::ofstream(o.out) << json;
  }
  rte_eal_cleanup();
  return 0;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
