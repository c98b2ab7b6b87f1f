// sluice-bench-update: what a Service change costs, measured on the
// dataplane's control thread with a worker lcore running its loop (so that
// every grace period is a real one):
//  - one endpoint change (api::EndpointSetReplace of a Service port with 10
//    endpoints, one of them replaced), "call received -> pointer
//    published" (ServiceProgrammer::Stats::last_publish_tsc) and the whole
//    call, p50/p99/max, at 100, 10k and 100k Services x 10 endpoints; TCP
//    (flows are left alone) and UDP (the call also waits a grace period and
//    scans the connection table for flows to remove, after the publish);
//  - a full sync of n Services (the protocol's objects, as sluice-control
//    sends them) into an empty directory, again unchanged, and with 1% of
//    the endpoint sets changed; and NodeRuntime::Reload of the whole
//    ClusterModel (the standalone path: gathering, node tables, sync);
//  - memory per Service port and per endpoint, from what is allocated: the
//    directory's fixed allocation per configured slot, the DPDK heap the
//    endpoint sets take (two syncs of n Services, with 1 and with 10
//    endpoints each, into fresh directories), and the control thread's own
//    records (malloc'd).
// Writes JSON (--out FILE, or stdout). Timings are TSC-based.
#include <malloc.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "app/node_runtime.h"
#include "control/model_messages.h"
#include "dataplane/common/eal_cleanup.h"
#include "tests/fixtures/node_harness.h"

namespace sluice::bench {
namespace {

constexpr uint32_t kEndpointsPerService = 10;
constexpr const char* kDnsIp = "10.96.0.10";

uint32_t Ip(const char* s) { return testing::Ip(s); }

// node-228 with `services` ClusterIP Services bench/svc-i (10.112.0.0 + i,
// TCP 80), each with `endpoints` endpoints on node-226/227, and one UDP
// Service bench/dns (10.96.0.10:53) with 10.
ClusterModel UpdateModel(uint32_t services, uint32_t endpoints = kEndpointsPerService) {
  ClusterModel m = testing::Node228Model();
  auto add = [&](const std::string& name, uint32_t vip, L4Protocol proto, uint16_t port,
                 uint32_t first_ip, uint32_t count) {
    ServiceSpec s;
    s.namespace_name = "bench";
    s.name = name;
    s.type = "ClusterIP";
    s.cluster_ips = {vip};
    s.ports = {{"p", proto, port, 0}};
    m.services.push_back(s);
    EndpointSliceSpec e;
    e.namespace_name = "bench";
    e.name = name + "-1";
    e.service_name = name;
    for (uint32_t j = 0; j < count; ++j)
      e.endpoints.push_back({first_ip + j, true, true, false, j % 2 ? "node-227" : "node-226"});
    e.ports = {{"p", proto, static_cast<uint16_t>(port == 53 ? 53 : 8080)}};
    m.endpoint_slices.push_back(e);
  };
  for (uint32_t i = 0; i < services; ++i)
    add(absl::StrFormat("svc-%u", i), Ip("10.112.0.0") + i, L4Protocol::kTcp, 80,
        Ip("10.128.0.0") + i * 16, endpoints);
  add("dns", Ip(kDnsIp), L4Protocol::kUdp, 53, Ip("10.127.0.0"), kEndpointsPerService);
  return m;
}

size_t HeapBytes() {
  size_t total = 0;
  for (unsigned i = 0; i < rte_socket_count(); ++i) {
    rte_malloc_socket_stats st;
    if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(i), &st) == 0)
      total += st.heap_allocsz_bytes;
  }
  return total;
}

size_t MallocBytes() { return mallinfo2().uordblks; }

double Us(uint64_t cycles) { return static_cast<double>(cycles) * 1e6 / rte_get_tsc_hz(); }

// Involuntary context switches of this thread so far: a sample taken
// across one was preempted (the cores are shared) and is told apart.
long Preemptions() {
  rusage u;
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nivcsw;
}

struct Samples {
  std::vector<double> v;
  double At(double q) {
    std::sort(v.begin(), v.end());
    if (v.empty()) return 0;
    size_t i = static_cast<size_t>(q * v.size());
    return v[std::min(i, v.size() - 1)];
  }
  double p50() { return At(0.5); }
  double p99() { return At(0.99); }
  double max() { return At(1.0); }
  std::string Json(bool with_samples) {
    std::string s = absl::StrFormat("{\"p50\": %.2f, \"p99\": %.2f, \"max\": %.2f, \"count\": %u",
                                    p50(), p99(), max(), v.size());
    if (with_samples) {
      std::vector<std::string> xs;
      for (double x : v) xs.push_back(absl::StrFormat("%.1f", x));
      s += ", \"samples\": [" + absl::StrJoin(xs, ", ") + "]";
    }
    return s + "}";
  }
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

struct Options {
  bool quick = false;
  uint32_t samples = 2000;
  uint32_t udp_samples = 40;
  uint32_t conntrack_capacity = 1 << 20;
  std::vector<uint32_t> services = {100, 10000, 100000};
  std::string out;
};

NodeRuntime::Config RuntimeConfig(const Options& o, uint32_t services) {
  NodeRuntime::Config rc;
  rc.workers = 1;
  rc.conntrack_capacity = o.conntrack_capacity;
  rc.services.service_ports = services + 1024;
  rc.services.keys = 2 * rc.services.service_ports;
  return rc;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const std::string v = i + 1 < argc ? argv[i + 1] : "";
    bool ok = true;
    if (a == "--quick") {
      o.quick = true;
      continue;
    }
    ++i;
    if (a == "--out")
      o.out = v;
    else if (a == "--samples")
      ok = absl::SimpleAtoi(v, &o.samples) && o.samples > 0;
    else if (a == "--conntrack-capacity")
      ok = absl::SimpleAtoi(v, &o.conntrack_capacity) && o.conntrack_capacity >= 1024;
    else if (a == "--services") {
      o.services.clear();
      for (absl::string_view x : absl::StrSplit(v, ',')) {
        uint32_t n;
        ok = ok && absl::SimpleAtoi(x, &n) && n >= 100;
        o.services.push_back(n);
      }
    } else
      ok = false;
    if (!ok) {
      std::fprintf(stderr,
                   "usage: sluice-bench-update [--quick] [--samples N] [--conntrack-capacity N] "
                   "[--services N,N,...] [--out FILE]\n");
      return 2;
    }
  }
  if (o.quick) {
    o.samples = std::min<uint32_t>(o.samples, 300);
    o.udp_samples = 10;
  }
  std::vector<std::string> eal = {"sluice-bench-update",
                                  "--no-pci",
                                  "--no-telemetry",
                                  "--lcores",
                                  "0@0,1@1",
                                  "--log-level=*:warning",
                                  "-m",
                                  "2048"};
  const bool hugepages = HugepagesAvailable();
  AppendPrivateMemoryArgs(&eal, "sluice-bench-update");
  if (!InitEal(std::move(eal), "sluice-bench-update")) return 1;
  rte_srand(1);
  rte_mempool* pool = CreatePacketPool("update_pool", 1023, 0, rte_socket_id());
  if (pool == nullptr) {
    std::fprintf(stderr, "no packet pool\n");
    return 1;
  }
  const WorkerPorts no_ports;  // the worker polls nothing: its loop, grace periods
  std::vector<std::string> changes, udp_changes, syncs;
  std::string memory;

  for (uint32_t n : o.services) {
    const ClusterModel model = UpdateModel(n);
    const ModelMessages msgs = MessagesFromModel(model);
    auto created = NodeRuntime::Create(RuntimeConfig(o, n), UpdateModel(0), no_ports, pool);
    if (!created.ok()) {
      std::fprintf(stderr, "%s\n", std::string(created.status().message()).c_str());
      return 1;
    }
    NodeRuntime& rt = **created;
    ServiceProgrammer& p = rt.services();
    rt.Launch();

    // Full syncs (the protocol's objects; a worker running).
    const size_t heap0 = HeapBytes(), malloc0 = MallocBytes();
    uint64_t t0 = rte_rdtsc();
    absl::Status s = p.Sync(msgs.ports, msgs.endpoints, model.node.name);
    const double initial_ms = Us(rte_rdtsc() - t0) / 1000;
    const size_t heap1 = HeapBytes(), malloc1 = MallocBytes();
    if (!s.ok()) {
      std::fprintf(stderr, "sync: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    Samples unchanged, changed, reload;
    std::vector<api::EndpointSetReplace> sets = msgs.endpoints;
    size_t first = 0;  // bench/svc-0's set (node-228's own Services come first)
    while (sets[first].key.service_name != "svc-0") ++first;
    for (int r = 0; r < (o.quick ? 2 : 5); ++r) {
      t0 = rte_rdtsc();
      s = p.Sync(msgs.ports, sets, model.node.name);
      unchanged.v.push_back(Us(rte_rdtsc() - t0) / 1000);
      // 1% of the TCP Services get one endpoint replaced.
      for (uint32_t i = 0; i < n; i += 100) sets[first + i].endpoints[0].ip ^= 0x00010000;
      t0 = rte_rdtsc();
      s.Update(p.Sync(msgs.ports, sets, model.node.name));
      changed.v.push_back(Us(rte_rdtsc() - t0) / 1000);
      t0 = rte_rdtsc();
      s.Update(rt.Reload(model));  // back to the model, through the standalone path
      reload.v.push_back(Us(rte_rdtsc() - t0) / 1000);
      sets = msgs.endpoints;
      if (!s.ok()) {
        std::fprintf(stderr, "sync: %s\n", std::string(s.message()).c_str());
        return 1;
      }
    }
    syncs.push_back(
        absl::StrFormat("{\"services\": %u, \"endpoints_per_service\": %u, \"initial_ms\": %.2f, "
                        "\"unchanged_ms\": %s, \"one_percent_changed_ms\": %s, \"reload_ms\": %s}",
                        n, kEndpointsPerService, initial_ms, unchanged.Json(false),
                        changed.Json(false), reload.Json(false)));
    std::fprintf(stderr,
                 "full sync, %6u Services x %u endpoints: %.1f ms from empty, %.1f ms unchanged, "
                 "%.1f ms with 1%% changed; Reload(model) %.1f ms\n",
                 n, kEndpointsPerService, initial_ms, unchanged.p50(), changed.p50(), reload.p50());

    // One endpoint change at a time, TCP Service ports picked at random.
    Samples publish, call, unpreempted;
    uint32_t preempted = 0;
    for (uint32_t k = 0; k < o.samples; ++k) {
      api::EndpointSetReplace& r = sets[first + rte_rand_max(n)];
      r.endpoints[k % kEndpointsPerService].ip ^= 0x00010000;
      const long before = Preemptions();
      t0 = rte_rdtsc();
      s = p.ReplaceEndpoints(r);
      const uint64_t published = p.stats().last_publish_tsc;
      const uint64_t t1 = rte_rdtsc();
      const bool was_preempted = Preemptions() != before;
      if (!s.ok()) {
        std::fprintf(stderr, "replace: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      publish.v.push_back(Us(published - t0));
      call.v.push_back(Us(t1 - t0));
      if (was_preempted)
        ++preempted;
      else
        unpreempted.v.push_back(Us(published - t0));
    }
    changes.push_back(
        absl::StrFormat("{\"services\": %u, \"endpoints_per_service\": %u, \"protocol\": \"TCP\", "
                        "\"publish_us\": %s, \"call_us\": %s, \"publish_us_not_preempted\": %s, "
                        "\"preempted_samples\": %u}",
                        n, kEndpointsPerService, publish.Json(true), call.Json(false),
                        unpreempted.Json(false), preempted));
    std::fprintf(stderr,
                 "endpoint change, %6u Services: received -> published p50 %.1f p99 %.1f max "
                 "%.1f us (not preempted: p99 %.1f max %.1f; %u of %u preempted); call p99 %.1f "
                 "us\n",
                 n, publish.p50(), publish.p99(), publish.max(), unpreempted.p99(),
                 unpreempted.max(), preempted, o.samples, call.p99());

    // UDP: the same, then a grace period and a scan of the connection table.
    Samples udp_publish, udp_call, scan;
    api::EndpointSetReplace& dns = sets.back();
    for (uint32_t k = 0; k < o.udp_samples; ++k) {
      dns.endpoints[k % kEndpointsPerService].ip ^= 0x00010000;
      t0 = rte_rdtsc();
      s = p.ReplaceEndpoints(dns);
      const uint64_t published = p.stats().last_publish_tsc;
      const uint64_t t1 = rte_rdtsc();
      if (!s.ok()) return 1;
      udp_publish.v.push_back(Us(published - t0));
      udp_call.v.push_back(Us(t1 - t0));
      scan.v.push_back(Us(p.stats().last_scan_cycles) / 1000);
    }
    udp_changes.push_back(absl::StrFormat(
        "{\"services\": %u, \"protocol\": \"UDP\", \"conntrack_capacity\": %u, \"publish_us\": %s, "
        "\"call_us\": %s, \"scan_ms\": %s}",
        n, o.conntrack_capacity, udp_publish.Json(false), udp_call.Json(false), scan.Json(false)));
    std::fprintf(stderr,
                 "UDP endpoint change, %6u Services: published p99 %.1f us; call p50 %.2f ms "
                 "(grace period + scan of %u entries %.2f ms)\n",
                 n, udp_publish.p99(), udp_call.p50() / 1000, o.conntrack_capacity, scan.p50());

    if (n == 10000) {
      // Memory: the sets of n Services with 10 endpoints took heap1 - heap0;
      // a fresh directory with 1 endpoint each gives the per-port share.
      const double set10 = static_cast<double>(heap1 - heap0) / n;
      const double ctl10 = static_cast<double>(malloc1 - malloc0) / n;
      rt.StopAndJoin();
      created->reset();
      auto one = NodeRuntime::Create(RuntimeConfig(o, n), UpdateModel(0), no_ports, pool);
      if (!one.ok()) return 1;
      const ModelMessages m1 = MessagesFromModel(UpdateModel(n, 1));
      const size_t h0 = HeapBytes(), c0 = MallocBytes();
      if (!(*one)->services().Sync(m1.ports, m1.endpoints, model.node.name).ok()) return 1;
      const double set1 = static_cast<double>(HeapBytes() - h0) / n;
      const double ctl1 = static_cast<double>(MallocBytes() - c0) / n;
      const ServiceDirectory& d = (*one)->service_directory();
      const double fixed_per_port = static_cast<double>(d.fixed_bytes()) / d.slot_capacity();
      const double per_endpoint = (set10 - set1) / (kEndpointsPerService - 1);
      const double ctl_per_endpoint = (ctl10 - ctl1) / (kEndpointsPerService - 1);
      memory = absl::StrFormat(
          "{\"services\": %u, \"slot_capacity\": %u, \"key_capacity\": %u, "
          "\"directory_fixed_bytes\": %u, \"fixed_bytes_per_service_port\": %.1f, "
          "\"set_heap_bytes_per_service_port_10_endpoints\": %.1f, "
          "\"set_heap_bytes_per_service_port_1_endpoint\": %.1f, "
          "\"dataplane_bytes_per_service_port\": %.1f, \"dataplane_bytes_per_endpoint\": %.1f, "
          "\"control_bytes_per_service_port\": %.1f, \"control_bytes_per_endpoint\": %.1f, "
          "\"note\": \"dataplane = DPDK heap: the directory's allocation per configured slot "
          "(hash with 2 keys per slot, slot, defer queue) plus the endpoint set less its "
          "endpoints; per endpoint = (set with 10 - set with 1) / 9 (8 B each in the set, "
          "twice when local; allocator headers and 64 B rounding included); control = the "
          "programmer's records (malloc)\"}",
          n, d.slot_capacity(), d.key_capacity(), d.fixed_bytes(), fixed_per_port, set10, set1,
          fixed_per_port + set1 - per_endpoint, per_endpoint, ctl1 - ctl_per_endpoint,
          ctl_per_endpoint);
      std::fprintf(stderr,
                   "memory: %.0f B per Service port in the dataplane (%.0f fixed per slot), %.1f "
                   "B per endpoint; control records %.0f B per port, %.0f B per endpoint\n",
                   fixed_per_port + set1 - per_endpoint, fixed_per_port, per_endpoint,
                   ctl1 - ctl_per_endpoint, ctl_per_endpoint);
      one->reset();
      continue;
    }
    rt.StopAndJoin();
    created->reset();
  }

  const std::string json = absl::StrFormat(
      "{\"machine\": {\"cpu\": \"%s\", \"tsc_hz\": %lu, \"hugepages\": %s},\n"
      " \"settings\": {\"workers\": 1, \"samples\": %u, \"udp_samples\": %u, "
      "\"conntrack_capacity\": %u, \"endpoints_per_service\": %u},\n"
      " \"goals\": {\"endpoint_change_p99_us_at_10k\": 1000, \"flat_100k_vs_10k\": 1.5, "
      "\"full_sync_10k_ms\": 100},\n"
      " \"endpoint_change\": [\n  %s],\n \"udp_endpoint_change\": [\n  %s],\n"
      " \"full_sync\": [\n  %s],\n \"memory\": %s}\n",
      CpuModel(), static_cast<unsigned long>(rte_get_tsc_hz()), hugepages ? "true" : "false",
      o.samples, o.udp_samples, o.conntrack_capacity, kEndpointsPerService,
      absl::StrJoin(changes, ",\n  "), absl::StrJoin(udp_changes, ",\n  "),
      absl::StrJoin(syncs, ",\n  "), memory.empty() ? "null" : memory);
  if (o.out.empty())
    std::fputs(json.c_str(), stdout);
  else
    std::ofstream(o.out) << json;
  rte_mempool_free(pool);
  CleanupEal();
  return 0;
}

}  // namespace
}  // namespace sluice::bench

int main(int argc, char** argv) { return sluice::bench::Main(argc, argv); }
