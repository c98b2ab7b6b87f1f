// sluice-bench-source: from a source change to the dataplane applying it,
// end to end through the real processes: a real etcd (as the tests start
// it), a running sluice-node (net_pcap ports on empty captures, its socket
// in a temporary folder) and sluice-control watching etcd. Each of `--puts`
// changes puts flannel's lease 10.244.1.0/24 with a new VtepMAC; the time is
// taken from just before the put's HTTP request until the dataplane's own
// answer (sluicectl's query, over the socket, polled every 100 us) shows the
// new VtepMAC in its subnet map: etcd's commit and fsync, the watch, the
// agent's delta, the dataplane's validation, table build and RCU grace
// period, and the query's own cost. Prints JSON (--out FILE too).
//
//   sluice-bench-source --node BIN --control BIN --cluster FILE [--puts N] [--out FILE]
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/str_format.h"
#include "api/socket.h"
#include "control/cluster_file.h"
#include "tests/testing/etcd_server.h"

namespace {

using Clock = std::chrono::steady_clock;

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    std::FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

void Stop(pid_t pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

std::string LeaseJson(const sluice::FlannelLease& l) {
  return absl::StrFormat(
      R"({"PublicIP":"%s","BackendType":"vxlan","BackendData":{"VNI":%u,"VtepMAC":"%s"}})",
      sluice::FormatIpv4(l.public_ip), l.vni, sluice::FormatMac(l.vtep_mac));
}

// The VtepMAC the dataplane holds for 10.244.1.0/24 ("" if none).
std::string DataplaneMac(sluice::api::Client& c) {
  sluice::api::Show s;
  s.what = "peers";
  auto r = c.Call(s, std::chrono::seconds(2));
  if (!r.ok()) return "";
  const auto* j = std::get_if<sluice::api::JsonReply>(&*r);
  if (j == nullptr) return "";
  const nlohmann::json doc = nlohmann::json::parse(j->json, nullptr, false);
  if (!doc.is_object() || !doc.contains("peers")) return "";
  for (const auto& p : doc["peers"])
    if (p.value("subnet", "") == "10.244.1.0/24") return p.value("vtep_mac", "");
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::string node, control, cluster, out;
  int puts = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--node") node = argv[i + 1];
    else if (a == "--control") control = argv[i + 1];
    else if (a == "--cluster") cluster = argv[i + 1];
    else if (a == "--puts") puts = std::atoi(argv[i + 1]);
    else if (a == "--out") out = argv[i + 1];
  }
  if (node.empty() || control.empty() || cluster.empty() || puts < 2) {
    std::fprintf(stderr, "usage: %s --node BIN --control BIN --cluster FILE [--puts N] [--out F]\n",
                 argv[0]);
    return 2;
  }
  auto model = sluice::LoadClusterFile(cluster);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto etcd = sluice::testing::EtcdServer::Start();
  if (!etcd.ok()) {
    std::fprintf(stderr, "sluice-bench-source: %s\n", etcd.status().ToString().c_str());
    return 1;
  }
  (void)(*etcd)->Put("/coreos.com/network/config",
                     R"({"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}})");
  for (const sluice::FlannelLease& l : model->leases)
    (void)(*etcd)->Put(absl::StrFormat("/coreos.com/network/subnets/%s-%u",
                                       sluice::FormatIpv4(l.subnet.address), l.subnet.length),
                       LeaseJson(l));
  char tmpl[] = "/tmp/sluice-bench-source-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  { std::ofstream(dir + "/empty.pcap", std::ios::binary).write("\xd4\xc3\xb2\xa1\x02\x00\x04\x00\0\0\0\0\0\0\0\0\xff\xff\0\0\x01\0\0\0", 24); }
  const std::string sock = dir + "/sluice.sock";
  const pid_t node_pid = Spawn(
      {node, "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry",
       "--file-prefix=sluice-bench-source-" + std::to_string(getpid()), "-l", "0-1",
       "--log-level=*:warning", "--vdev",
       "net_pcap_u,rx_pcap=" + dir + "/empty.pcap,tx_pcap=" + dir + "/u.pcap", "--vdev",
       "net_pcap_p,rx_pcap=" + dir + "/empty.pcap,tx_pcap=" + dir + "/p.pcap", "--", "--socket",
       sock, "--uplink", "net_pcap_u", "--pods", "net_pcap_p"},
      dir + "/node.log");
  pid_t control_pid = -1;
  nlohmann::json result;
  int rc = 1;
  std::vector<double> ms;
  for (int i = 0; i < 200; ++i) {
    struct stat st;
    if (stat(sock.c_str(), &st) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  control_pid = Spawn({control, "--socket", sock, "--cluster", cluster, "--etcd",
                       (*etcd)->source_endpoint(), "--metrics-bind", "127.0.0.1:0",
                       "--healthz-bind", "127.0.0.1:0"},
                      dir + "/control.log");
  auto client = sluice::api::Client::Connect(sock, std::chrono::seconds(5));
  if (client.ok()) {
    sluice::api::Hello h;
    h.client = "sluice-bench-source";
    (void)client->Call(h, std::chrono::seconds(2));
    sluice::FlannelLease lease;
    lease.subnet = {0x0af40100, 24};
    lease.public_ip = 0x0a0a64e7;
    lease.backend_type = "vxlan";
    lease.vni = 1;
    bool ok = true;
    for (int i = 0; i < puts && ok; ++i) {
      lease.vtep_mac = {0x5e, 0x36, 0x5f, 0x00, static_cast<uint8_t>(i >> 8),
                        static_cast<uint8_t>(i)};
      const std::string want = sluice::FormatMac(lease.vtep_mac);
      const auto t0 = Clock::now();
      if (!(*etcd)->Put("/coreos.com/network/subnets/10.244.1.0-24", LeaseJson(lease)).ok()) {
        ok = false;
        break;
      }
      // The first change also waits for sluice-control's first full sync.
      const auto deadline = t0 + std::chrono::seconds(i == 0 ? 20 : 5);
      while (DataplaneMac(*client) != want) {
        if (Clock::now() > deadline) {
          ok = false;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (ok && i > 0) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    if (ok) {
      result = {{"changes", ms.size()},
                {"p50_ms", Quantile(ms, 0.5)},
                {"p99_ms", Quantile(ms, 0.99)},
                {"max_ms", Quantile(ms, 1.0)},
                {"goal_p99_ms", 10}};
      rc = 0;
    } else {
      std::fprintf(stderr, "sluice-bench-source: a change did not reach the dataplane\n");
    }
  } else {
    std::fprintf(stderr, "sluice-bench-source: %s\n", client.status().ToString().c_str());
  }
  Stop(control_pid, SIGTERM);
  Stop(node_pid, SIGINT);
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
  if (rc == 0) {
    std::printf("%s\n", result.dump(1).c_str());
    if (!out.empty()) std::ofstream(out) << result.dump(1) << "\n";
  }
  return rc;
}
