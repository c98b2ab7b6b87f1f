#include "app/replay.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_hash_crc.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf_dyn.h>
#include <rte_random.h>
#include <rte_ring.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "app/node_runtime.h"
#include "control/cluster_file.h"
#include "control/table_builder.h"
#include "dataplane/common/eal_cleanup.h"
#include "dataplane/worker/worker.h"

namespace sluice {
namespace {

constexpr int kRoles = kPortRoleCount;

uint32_t FlowHash(const rte_mbuf* m) {
  // Software RSS over the outer IPv4 addresses and ports, as a NIC would.
  const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t len = rte_pktmbuf_data_len(m);
  if (len < 34 || d[12] != 0x08 || d[13] != 0x00) return 0;
  const uint32_t ihl = (d[14] & 0xf) * 4u;
  uint32_t h = rte_hash_crc(d + 26, 8, 0);
  if ((d[23] == 6 || d[23] == 17) && len >= 14 + ihl + 4) h = rte_hash_crc(d + 14 + ihl, 4, h);
  return h;
}

// An empty capture, for ports that have no input.
std::string EmptyPcap(const std::string& dir, const char* role) {
  const std::string path = absl::StrFormat("%s/empty-%s.pcap", dir, role);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return "";
  const uint32_t hdr[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
  std::fwrite(hdr, sizeof(hdr), 1, f);
  std::fclose(f);
  return path;
}

}  // namespace

bool ParseReplayArgs(int argc, char** argv, ReplayOptions* o, std::string* error) {
  const char* names[kRoles] = {"uplink", "pods", "host"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) {
        *error = a + " needs a value";
        return false;
      }
      *out = argv[++i];
      return true;
    };
    std::string v;
    bool matched = false;
    for (int r = 0; r < kRoles; ++r) {
      if (a == absl::StrFormat("--%s-in", names[r])) {
        if (!value(&o->in[r])) return false;
        matched = true;
      } else if (a == absl::StrFormat("--%s-out", names[r])) {
        if (!value(&o->out[r])) return false;
        matched = true;
      }
    }
    if (matched) continue;
    if (a == "--cluster") {
      if (!value(&o->cluster_file)) return false;
    } else if (a == "--workers") {
      uint32_t n;
      if (!value(&v) || !absl::SimpleAtoi(v, &n) || n == 0 || n > 16) {
        *error = "--workers takes 1..16";
        return false;
      }
      o->workers = static_cast<uint16_t>(n);
    } else if (a == "--seed") {
      if (!value(&v) || !absl::SimpleAtoi(v, &o->seed)) {
        *error = "--seed takes a number";
        return false;
      }
    } else if (a == "--causal-gap-us") {
      if (!value(&v) || !absl::SimpleAtoi(v, &o->causal_gap_us)) {
        *error = "--causal-gap-us takes a number";
        return false;
      }
    } else if (a == "--dispatch") {
      if (!value(&v) || (v != "flow" && v != "roundrobin")) {
        *error = "--dispatch takes flow or roundrobin";
        return false;
      }
      o->round_robin = v == "roundrobin";
    } else if (a == "--trace") {
      o->trace = true;
    } else if (a == "--counters-json") {
      if (!value(&o->counters_json)) return false;
    } else {
      *error = "unknown option " + a;
      return false;
    }
  }
  if (o->cluster_file.empty()) {
    *error = "--cluster FILE is required";
    return false;
  }
  return true;
}

int RunReplay(const ReplayOptions& o) {
  // The cluster file first: a bad one stops everything before any packet.
  absl::StatusOr<ClusterModel> model = LoadClusterFile(o.cluster_file);
  if (!model.ok()) {
    std::fprintf(stderr, "%s: cluster file %s rejected: %s\n", o.program.c_str(),
                 o.cluster_file.c_str(), std::string(model.status().message()).c_str());
    return 2;
  }
  const bool has_host = model->node.has_host_port || !o.in[2].empty() || !o.out[2].empty();
  char tmpl[] = "/tmp/sluice-replay-XXXXXX";
  const char* tmpdir = mkdtemp(tmpl);
  if (tmpdir == nullptr) {
    std::fprintf(stderr, "%s: cannot create a temporary directory\n", o.program.c_str());
    return 1;
  }
  // Removed with what it holds (empty inputs, unrequested outputs) however
  // the run ends.
  struct RemoveOnExit {
    std::string dir;
    ~RemoveOnExit() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } tmp_guard{tmpdir};
  const char* names[kRoles] = {"uplink", "pods", "host"};
  std::vector<std::string> eal = {o.program,
                                  "--no-pci",
                                  "--no-telemetry",
                                  "--log-level=lib.*:warning",
                                  "--log-level=pmd.*:warning",
                                  "-m",
                                  "512"};
  AppendPrivateMemoryArgs(&eal, "sluice-replay");
  const long cpus = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  eal.push_back(absl::StrFormat("--lcores=(0-%u)@(0-%ld)", o.workers, cpus - 1));
  for (int r = 0; r < kRoles; ++r) {
    if (r == 2 && !has_host) continue;
    std::string in = o.in[r].empty() ? EmptyPcap(tmpdir, names[r]) : o.in[r];
    std::string out =
        o.out[r].empty() ? absl::StrFormat("%s/out-%s.pcap", tmpdir, names[r]) : o.out[r];
    if (access(in.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "%s: cannot read %s\n", o.program.c_str(), in.c_str());
      return 2;
    }
    eal.push_back("--vdev");
    eal.push_back(absl::StrFormat("net_pcap_%s,rx_pcap=%s,tx_pcap=%s", names[r], in, out));
  }
  if (!InitEal(std::move(eal), o.program.c_str())) return 1;
  if (o.seed != 0) rte_srand(o.seed);

  static const rte_mbuf_dynfield kSeqField = {"sluice_replay_seq", sizeof(uint64_t),
                                              alignof(uint64_t), 0};
  const int seq_offset = rte_mbuf_dynfield_register(&kSeqField);
  rte_mempool* pool = CreatePacketPool("replay_pool", 16383, 256, rte_socket_id());
  if (pool == nullptr || seq_offset < 0) {
    std::fprintf(stderr, "%s: cannot allocate packet buffers: %s\n", o.program.c_str(),
                 rte_strerror(rte_errno));
    return 1;
  }

  // Capture devices (main lcore only) and the ring devices workers poll.
  std::string error;
  uint16_t pcap_port[kRoles] = {};
  WorkerPorts ports;
  rte_ring* rx_ring[kRoles][16] = {};
  rte_ring* tx_ring[kRoles][16] = {};
  for (int r = 0; r < kRoles; ++r) {
    if (r == 2 && !has_host) continue;
    const std::string pcap_name = absl::StrFormat("net_pcap_%s", names[r]);
    if (rte_eth_dev_get_port_by_name(pcap_name.c_str(), &pcap_port[r]) != 0 ||
        !ConfigurePort(pcap_port[r], 1, pool, false, &error)) {
      std::fprintf(stderr, "%s: %s: %s\n", o.program.c_str(), pcap_name.c_str(), error.c_str());
      return 1;
    }
    for (uint16_t w = 0; w < o.workers; ++w) {
      rx_ring[r][w] = rte_ring_create(absl::StrFormat("rx_%s_%u", names[r], w).c_str(), 4096,
                                      SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      tx_ring[r][w] = rte_ring_create(absl::StrFormat("tx_%s_%u", names[r], w).c_str(), 4096,
                                      SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (rx_ring[r][w] == nullptr || tx_ring[r][w] == nullptr) {
        std::fprintf(stderr, "%s: cannot create rings\n", o.program.c_str());
        return 1;
      }
    }
    const int id = rte_eth_from_rings(absl::StrFormat("ring_%s", names[r]).c_str(), rx_ring[r],
                                      o.workers, tx_ring[r], o.workers, SOCKET_ID_ANY);
    if (id < 0 || !ConfigurePort(static_cast<uint16_t>(id), o.workers, pool, false, &error)) {
      std::fprintf(stderr, "%s: ring port %s: %s\n", o.program.c_str(), names[r], error.c_str());
      return 1;
    }
    ports.present[r] = true;
    ports.port_id[r] = static_cast<uint16_t>(id);
  }
  int ts_offset = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, nullptr);

  NodeRuntime::Config rc;
  rc.workers = o.workers;
  rc.conntrack_capacity = 1 << 16;
  rc.trace = o.trace;
  rc.seq_offset = seq_offset;
  auto runtime = NodeRuntime::Create(rc, *model, ports, pool);
  if (!runtime.ok()) {
    std::fprintf(stderr, "%s: cluster file %s rejected: %s\n", o.program.c_str(),
                 o.cluster_file.c_str(), std::string(runtime.status().message()).c_str());
    return 2;
  }
  NodeRuntime& rt = **runtime;
  std::printf("sluice-replay: node %s (%s), %u Service entries, %zu flannel leases, %u workers\n",
              rt.tables().node.name.c_str(), FormatIpv4(rt.tables().node.node_ip).c_str(),
              rt.service_directory().key_count(), rt.tables().overlay->size(), o.workers);
  rt.Launch();

  // Feeder: merge the input captures by timestamp and dispatch.
  struct Head {
    rte_mbuf* buf[kBurstSize];
    uint16_t n = 0, next = 0;
    bool eof = false;
  } head[kRoles];
  uint64_t dispatched = 0, seq = 0, last_ts = 0, rr = 0;
  auto processed = [&] { return rt.Processed(); };
  // The feeder is also the control loop: learned neighbours age once a second.
  const uint64_t tsc_hz = rte_get_tsc_hz();
  uint64_t last_age = rte_rdtsc();
  auto age = [&] {
    const uint64_t now = rte_rdtsc();
    if (now - last_age < tsc_hz) return;
    last_age = now;
    rt.AgeNeighbors();
    rt.FlushFlowRemovals();
  };
  auto drain = [&] {
    for (int r = 0; r < kRoles; ++r) {
      if (!ports.present[r]) continue;
      for (uint16_t w = 0; w < o.workers; ++w) {
        rte_mbuf* out[kBurstSize];
        unsigned n;
        while ((n = rte_ring_dequeue_burst(tx_ring[r][w], reinterpret_cast<void**>(out), kBurstSize,
                                           nullptr)) != 0) {
          const uint16_t sent = rte_eth_tx_burst(pcap_port[r], 0, out, static_cast<uint16_t>(n));
          for (unsigned i = sent; i < n; ++i) rte_pktmbuf_free(out[i]);
        }
      }
    }
  };
  auto wait_all = [&] {
    while (processed() < dispatched) {
      drain();
      rte_pause();
    }
    drain();
  };
  for (;;) {
    age();
    int best = -1;
    uint64_t best_ts = 0;
    for (int r = 0; r < kRoles; ++r) {
      if (!ports.present[r]) continue;
      Head& h = head[r];
      if (h.next == h.n && !h.eof) {
        h.n = rte_eth_rx_burst(pcap_port[r], 0, h.buf, kBurstSize);
        h.next = 0;
        if (h.n == 0) h.eof = true;  // net_pcap returns 0 only at the end of the file
      }
      if (h.next == h.n) continue;
      const uint64_t ts =
          ts_offset >= 0 ? *RTE_MBUF_DYNFIELD(h.buf[h.next], ts_offset, uint64_t*) : 0;
      if (best < 0 || ts < best_ts) {
        best = r;
        best_ts = ts;
      }
    }
    if (best < 0) break;
    rte_mbuf* m = head[best].buf[head[best].next++];
    // net_pcap's rx timestamp is the capture time in microseconds.
    if (dispatched > 0 && best_ts > last_ts && best_ts - last_ts > o.causal_gap_us) wait_all();
    last_ts = best_ts;
    *RTE_MBUF_DYNFIELD(m, seq_offset, uint64_t*) = ++seq;
    const uint16_t w =
        static_cast<uint16_t>(o.round_robin ? rr++ % o.workers : FlowHash(m) % o.workers);
    while (rte_ring_enqueue(rx_ring[best][w], m) != 0) {
      drain();
      rte_pause();
    }
    ++dispatched;
    drain();
  }
  wait_all();
  rt.StopAndJoin();
  drain();

  if (o.trace) {
    uint64_t current = 0;
    for (const Tracer::Line& l : rt.TakeTrace()) {
      if (l.seq != current) {
        current = l.seq;
        std::printf("\npacket #%lu (worker %u)\n", static_cast<unsigned long>(l.seq), l.worker);
      }
      std::printf("%s\n", l.text.c_str());
    }
  }
  rt.PrintCounters(stdout);
  rt.PrintStageStats(stdout);
  if (!o.counters_json.empty()) {
    std::ofstream f(o.counters_json);
    f << rt.CountersJson();
  }
  for (int r = 0; r < kRoles; ++r) {
    if (!ports.present[r]) continue;
    rte_eth_dev_stop(pcap_port[r]);
    rte_eth_dev_close(pcap_port[r]);  // flushes the output capture
  }
  std::printf("\n%lu packets in, %lu processed\n", static_cast<unsigned long>(dispatched),
              static_cast<unsigned long>(processed()));
  std::fflush(stdout);
  runtime->reset();  // DPDK objects go back before the EAL does
  CleanupEal();
  return 0;
}

}  // namespace sluice
