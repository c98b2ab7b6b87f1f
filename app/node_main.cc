// sluice-node: the dataplane on a node's real ports.
//
//   sluice-node [EAL options] -- [--cluster FILE] [--socket PATH] --uplink PORT
//       --pods PORT [--host PORT] [--workers N] [--conntrack-capacity N]
//       [--service-ports N]
//       [--socket-mode OCTAL] [--socket-group GID] [--writer-uid UID]
//       [--writer-gid GID] [--stats-interval SECONDS] [--run-seconds N]
//
// With --socket, sluice-control (or any writer the socket's mode and the
// peer-credential rule admit: root, --writer-uid, --writer-gid) feeds the
// tables over the socket, and sluicectl reads them; with --cluster, the
// node starts from the file's tables (SIGHUP re-reads it). At least one of
// the two. Without --cluster the ports keep their own MACs until the node
// settings arrive, and workers drop what they receive (no_tables) until
// node settings, flannel's network and this node's lease are known.
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
#include <rte_random.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "app/control_server.h"
#include "app/dataplane_state.h"
#include "app/inspect.h"
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
  std::string socket;
  uint32_t socket_mode = 0660;
  int64_t socket_group = -1, writer_uid = -1, writer_gid = -1;
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
    uint32_t octal = 0;
    if (a == "--cluster")
      o->cluster = v;
    else if (a == "--socket")
      o->socket = v;
    else if (a == "--socket-mode" && absl::numbers_internal::safe_strtou32_base(v, &octal, 8) &&
             octal <= 0777)
      o->socket_mode = octal;
    else if (a == "--socket-group" && numeric)
      o->socket_group = n;
    else if (a == "--writer-uid" && numeric)
      o->writer_uid = n;
    else if (a == "--writer-gid" && numeric)
      o->writer_gid = n;
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
  if ((o->cluster.empty() && o->socket.empty()) || o->port[0].empty() || o->port[1].empty()) {
    *error = "--uplink, --pods and one of --cluster or --socket are required";
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

namespace {

// Gives port `id` the MAC `mac` (or promiscuous mode when the device cannot
// take it).
void SetPortMac(uint16_t id, const char* role, const sluice::MacAddress& mac) {
  rte_ether_addr want;
  std::copy(mac.begin(), mac.end(), want.addr_bytes);
  rte_ether_addr have;
  if (rte_eth_macaddr_get(id, &have) == 0 && rte_is_same_ether_addr(&have, &want)) return;
  if (rte_eth_dev_default_mac_addr_set(id, &want) != 0) {
    std::fprintf(stderr,
                 "sluice-node: %s port cannot take MAC %s; using promiscuous mode\n", role,
                 sluice::FormatMac(mac).c_str());
    rte_eth_promiscuous_enable(id);
  }
}

std::string Describe(sluice::NodeRuntime& rt) {
  if (!rt.has_tables()) return "no tables yet";
  return absl::StrFormat("%u Service entries, %zu flannel leases",
                         rt.service_directory().key_count(), rt.tables().overlay->size());
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
                 "sluice-node: %s\nusage: sluice-node [EAL options] -- [--cluster FILE] [--socket "
                 "PATH] --uplink PORT --pods PORT [--host PORT] [--workers N] "
                 "[--conntrack-capacity N] [--service-ports N] [--socket-mode OCTAL] [--socket-group GID] "
                 "[--writer-uid UID] [--writer-gid GID] [--stats-interval S] [--run-seconds N]\n",
                 error.c_str());
    return 2;
  }
  std::optional<sluice::ClusterModel> model;
  if (!o.cluster.empty()) {
    absl::StatusOr<sluice::ClusterModel> m = sluice::LoadClusterFile(o.cluster);
    if (!m.ok()) {
      std::fprintf(stderr, "sluice-node: cluster file %s rejected: %s\n", o.cluster.c_str(),
                   std::string(m.status().message()).c_str());
      return 2;
    }
    model = *std::move(m);
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
  for (int r = 0; r < sluice::kPortRoleCount; ++r) {
    if (o.port[r].empty()) continue;
    const char* role = sluice::PortRoleName(static_cast<sluice::PortRole>(r));
    uint16_t id;
    if (!ResolvePort(o.port[r], &id)) {
      std::fprintf(stderr, "sluice-node: %s port %s: no such DPDK port\n", role, o.port[r].c_str());
      return 2;
    }
    if (model) {
      const sluice::MacAddress* macs[sluice::kPortRoleCount] = {
          &model->node.uplink_mac, &model->node.pods_mac, &model->node.host_mac};
      SetPortMac(id, role, *macs[r]);
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
  auto runtime = model ? sluice::NodeRuntime::Create(rc, *model, ports, pool)
                       : sluice::NodeRuntime::Create(rc, ports, pool);
  if (!runtime.ok()) {
    std::fprintf(stderr, "sluice-node: %s\n", std::string(runtime.status().message()).c_str());
    return 2;
  }
  sluice::NodeRuntime& rt = **runtime;

  // The socket protocol's state, fed by writers (and seeded by the file).
  sluice::DataplaneState::Targets targets;
  targets.publish_network = [&](const sluice::ClusterModel& m) -> absl::StatusOr<uint64_t> {
    const sluice::MacAddress* macs[sluice::kPortRoleCount] = {&m.node.uplink_mac,
                                                              &m.node.pods_mac, &m.node.host_mac};
    auto g = rt.PublishNetwork(m);
    if (g.ok())
      for (int r = 0; r < sluice::kPortRoleCount; ++r)
        if (ports.present[r] && (r != 2 || m.node.has_host_port))
          SetPortMac(ports.port_id[r], sluice::PortRoleName(static_cast<sluice::PortRole>(r)),
                     *macs[r]);
    return g;
  };
  targets.replace_neighbors = [&](const std::vector<sluice::NeighborEntry>& n) {
    return rt.ReplaceStaticNeighbors(n);
  };
  targets.generation = [&] { return rt.generation(); };
  sluice::ProgrammerServiceSink service_sink(&rt.services());
  targets.services = &service_sink;
  sluice::DataplaneState state(std::move(targets), rte_rand());
  if (model) {
    if (absl::Status s = state.Seed(*model); !s.ok())
      std::fprintf(stderr, "sluice-node: %s\n", std::string(s.message()).c_str());
  }
  std::unique_ptr<sluice::ControlServer> control;
  if (!o.socket.empty()) {
    sluice::api::ServerOptions so;
    so.path = o.socket;
    so.mode = static_cast<mode_t>(o.socket_mode);
    if (o.socket_group >= 0) so.group = static_cast<gid_t>(o.socket_group);
    if (o.writer_uid >= 0) so.writer_uid = static_cast<uid_t>(o.writer_uid);
    if (o.writer_gid >= 0) so.writer_gid = static_cast<gid_t>(o.writer_gid);
    auto c = sluice::ControlServer::Start(so, &rt, &state, [&rt](uint32_t address, uint16_t port) {
      return sluice::ServicesJson(rt.services(), address, port).dump();
    });
    if (!c.ok()) {
      std::fprintf(stderr, "sluice-node: socket %s: %s\n", o.socket.c_str(),
                   std::string(c.status().message()).c_str());
      return 2;
    }
    control = *std::move(c);
  }
  std::signal(SIGHUP, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::printf("sluice-node: node %s, %s, %u workers%s%s\n",
              model ? model->node.name.c_str() : "(from the socket)", Describe(rt).c_str(),
              o.workers, o.socket.empty() ? "" : ", socket ", o.socket.c_str());
  std::fflush(stdout);
  rt.Launch();
  const double start = Now();
  double last_stats = start;
  double last_age = start;
  uint64_t shown_generation = rt.generation();
  while (!g_stop) {
    if (control)
      control->Poll(50);
    else
      rte_delay_us_sleep(50 * 1000);
    const double now = Now();
    if (o.run_seconds != 0 && now - start >= o.run_seconds) break;
    if (g_reload && !o.cluster.empty()) {
      g_reload = 0;
      auto next = sluice::LoadClusterFile(o.cluster);
      absl::Status s = next.ok() ? rt.Reload(*next) : next.status();
      if (s.ok()) s = state.Seed(*next);
      if (s.ok())
        std::printf("sluice-node: reloaded %s: %s\n", o.cluster.c_str(), Describe(rt).c_str());
      else
        std::fprintf(stderr,
                     "sluice-node: reload of %s rejected, last good tables keep "
                     "serving: %s\n",
                     o.cluster.c_str(), std::string(s.message()).c_str());
      shown_generation = rt.generation();
      std::fflush(stdout);
    }
    if (rt.generation() != shown_generation) {
      shown_generation = rt.generation();
      std::printf("sluice-node: generation %lu from the socket: %s\n",
                  static_cast<unsigned long>(shown_generation), Describe(rt).c_str());
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
  control.reset();  // removes the socket file
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
