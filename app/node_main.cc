// sluice-node: the dataplane on a node's real ports.
//
//   sluice-node [EAL options] -- --cluster FILE --uplink PORT --pods PORT
//       [--host PORT] [--workers N] [--conntrack-capacity N]
//       [--service-ports N] [--stats-interval SECONDS] [--run-seconds N]
//
// PORT is a DPDK port name (a PCI address such as 0000:3b:00.0, or a vdev
// name such as net_tap0) or a port number. Each port gets one rx and one tx
// queue per worker, with RSS when the device has it. The port's MAC is set
// to the cluster file's. The main lcore is the control thread: SIGHUP
// reloads the cluster file (a rejected file is reported and the last good
// tables keep serving), SIGINT/SIGTERM stop, learned neighbours age once a
// second, counters are printed every --stats-interval seconds and at exit.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "app/node_runtime.h"
#include "control/cluster_file.h"
#include "dataplane/common/eal_cleanup.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_reload = 0;

void OnSignal(int sig) {
  if (sig == SIGHUP)
    g_reload = 1;
  else
    g_stop = 1;
}

struct Options {
  std::string cluster;
  std::string port[sluice::kPortRoleCount];
  uint16_t workers = 1;
  uint32_t conntrack_capacity = 1 << 20;
  uint32_t service_ports = 65536;
  uint32_t stats_interval = 0;
  uint32_t run_seconds = 0;
};

bool Parse(int argc, char** argv, Options* o, std::string* error) {
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      *error = a + " needs a value";
      return false;
    }
    const std::string v = argv[++i];
    uint32_t n = 0;
    const bool numeric = absl::SimpleAtoi(v, &n);
    if (a == "--cluster")
      o->cluster = v;
    else if (a == "--uplink")
      o->port[0] = v;
    else if (a == "--pods")
      o->port[1] = v;
    else if (a == "--host")
      o->port[2] = v;
    else if (a == "--workers" && numeric && n >= 1 && n <= 64)
      o->workers = static_cast<uint16_t>(n);
    else if (a == "--conntrack-capacity" && numeric && n >= 1024)
      o->conntrack_capacity = n;
    else if (a == "--service-ports" && numeric && n >= 1 && n <= (1u << 24))
      o->service_ports = n;
    else if (a == "--stats-interval" && numeric)
      o->stats_interval = n;
    else if (a == "--run-seconds" && numeric)
      o->run_seconds = n;
    else {
      *error = "bad option or value: " + a + " " + v;
      return false;
    }
  }
  if (o->cluster.empty() || o->port[0].empty() || o->port[1].empty()) {
    *error = "--cluster, --uplink and --pods are required";
    return false;
  }
  return true;
}

bool ResolvePort(const std::string& name, uint16_t* id) {
  uint32_t n;
  if (absl::SimpleAtoi(name, &n)) {
    if (n >= RTE_MAX_ETHPORTS) return false;  // never truncated into another port's number
    *id = static_cast<uint16_t>(n);
    return rte_eth_dev_is_valid_port(*id);
  }
  return rte_eth_dev_get_port_by_name(name.c_str(), id) == 0;
}

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const int eal_args = rte_eal_init(argc, argv);
  if (eal_args < 0) {
    std::fprintf(stderr, "sluice-node: DPDK EAL init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  sluice::RemoveEalRuntimeDir();
  Options o;
  std::string error;
  if (!Parse(argc - eal_args - 1, argv + eal_args + 1, &o, &error)) {
    std::fprintf(stderr,
                 "sluice-node: %s\nusage: sluice-node [EAL options] -- --cluster FILE --uplink "
                 "PORT --pods PORT [--host PORT] [--workers N] [--conntrack-capacity N] "
                 "[--service-ports N] [--stats-interval S] [--run-seconds N]\n",
                 error.c_str());
    return 2;
  }
  absl::StatusOr<sluice::ClusterModel> model = sluice::LoadClusterFile(o.cluster);
  if (!model.ok()) {
    std::fprintf(stderr, "sluice-node: cluster file %s rejected: %s\n", o.cluster.c_str(),
                 std::string(model.status().message()).c_str());
    return 2;
  }
  if (rte_lcore_count() < o.workers + 1u) {
    std::fprintf(stderr, "sluice-node: %u workers need %u lcores (-l), have %u\n", o.workers,
                 o.workers + 1, rte_lcore_count());
    return 2;
  }
  rte_mempool* pool = sluice::CreatePacketPool("sluice_pool", 32767, 256, rte_socket_id());
  if (pool == nullptr) {
    std::fprintf(stderr, "sluice-node: cannot allocate packet buffers: %s\n",
                 rte_strerror(rte_errno));
    return 1;
  }
  sluice::WorkerPorts ports;
  const sluice::MacAddress* macs[sluice::kPortRoleCount] = {
      &model->node.uplink_mac, &model->node.pods_mac, &model->node.host_mac};
  for (int r = 0; r < sluice::kPortRoleCount; ++r) {
    if (o.port[r].empty()) continue;
    const char* role = sluice::PortRoleName(static_cast<sluice::PortRole>(r));
    uint16_t id;
    if (!ResolvePort(o.port[r], &id)) {
      std::fprintf(stderr, "sluice-node: %s port %s: no such DPDK port\n", role, o.port[r].c_str());
      return 2;
    }
    rte_ether_addr mac;
    std::copy(macs[r]->begin(), macs[r]->end(), mac.addr_bytes);
    if (rte_eth_dev_default_mac_addr_set(id, &mac) != 0) {
      std::fprintf(stderr,
                   "sluice-node: %s port %s cannot take MAC from the cluster file; "
                   "using promiscuous mode\n",
                   role, o.port[r].c_str());
      rte_eth_promiscuous_enable(id);
    }
    if (!sluice::ConfigurePort(id, o.workers, pool, /*rss=*/true, &error)) {
      std::fprintf(stderr, "sluice-node: %s port %s: %s\n", role, o.port[r].c_str(), error.c_str());
      return 1;
    }
    ports.present[r] = true;
    ports.port_id[r] = id;
  }
  sluice::NodeRuntime::Config rc;
  rc.workers = o.workers;
  rc.conntrack_capacity = o.conntrack_capacity;
  rc.services.service_ports = o.service_ports;
  rc.services.keys = 2 * o.service_ports;  // addresses and NodePorts
  auto runtime = sluice::NodeRuntime::Create(rc, *model, ports, pool);
  if (!runtime.ok()) {
    std::fprintf(stderr, "sluice-node: %s\n", std::string(runtime.status().message()).c_str());
    return 2;
  }
  sluice::NodeRuntime& rt = **runtime;
  std::signal(SIGHUP, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::printf("sluice-node: node %s (%s), %u Service entries, %zu flannel leases, %u workers\n",
              rt.tables().node.name.c_str(), sluice::FormatIpv4(rt.tables().node.node_ip).c_str(),
              rt.service_directory().key_count(), rt.tables().overlay->size(), o.workers);
  std::fflush(stdout);
  rt.Launch();
  const double start = Now();
  double last_stats = start;
  double last_age = start;
  while (!g_stop) {
    rte_delay_us_sleep(50 * 1000);
    const double now = Now();
    if (o.run_seconds != 0 && now - start >= o.run_seconds) break;
    if (g_reload) {
      g_reload = 0;
      auto next = sluice::LoadClusterFile(o.cluster);
      absl::Status s = next.ok() ? rt.Reload(*next) : next.status();
      if (s.ok())
        std::printf("sluice-node: reloaded %s: %u Service entries, %zu flannel leases\n",
                    o.cluster.c_str(), rt.service_directory().key_count(), rt.tables().overlay->size());
      else
        std::fprintf(stderr,
                     "sluice-node: reload of %s rejected, last good tables keep "
                     "serving: %s\n",
                     o.cluster.c_str(), std::string(s.message()).c_str());
      std::fflush(stdout);
    }
    if (now - last_age >= 1.0) {  // neighbours learned from ARP and gone quiet
      last_age = now;
      rt.AgeNeighbors();
    }
    rt.FlushFlowRemovals();  // UDP flow cleanups a worker had no room for yet
    if (o.stats_interval != 0 && now - last_stats >= o.stats_interval) {
      last_stats = now;
      rt.PrintCounters(stdout);
      rt.PrintStageStats(stdout);
      std::fflush(stdout);
    }
  }
  rt.StopAndJoin();
  rt.PrintCounters(stdout);
  rt.PrintStageStats(stdout);
  for (int r = 0; r < sluice::kPortRoleCount; ++r) {
    if (!ports.present[r]) continue;
    rte_eth_dev_stop(ports.port_id[r]);
    rte_eth_dev_close(ports.port_id[r]);
  }
  std::fflush(stdout);
  runtime->reset();
  sluice::CleanupEal();
  return 0;
}
