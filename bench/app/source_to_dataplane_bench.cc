// sluice-bench-source: from a source change to the dataplane applying it,
// end to end through the real processes: a running sluice-node (net_pcap
// ports on empty captures, its socket in a temporary folder) and
// sluice-control fed by one of two sources. The time of each of `--changes`
// changes is taken from just before the change is handed to the source's
// server until the dataplane's own answer (sluicectl's Show query, over the
// socket, polled every 100 us) shows it: the server's part, the source's
// watch, the agent's delta, the dataplane's validation, table build and RCU
// grace period, and the query's own cost. The first change also waits for
// sluice-control's first full sync and is not counted. Prints JSON (--out
// FILE too).
//
//   --source etcd (default): a real etcd (as the tests start it) holding
//     flannel's keys, sluice-control --etcd. Each change puts the lease
//     10.244.1.0/24 with a new VtepMAC, seen in Show "peers". The time
//     includes etcd's commit and WAL fsync.
//   --source kube: tests/control/sources/fake_apiserver.py (no API server
//     is packaged in Debian) listing the cluster file's Services and
//     EndpointSlices, sluice-control --kubeconfig. Each change is an
//     EndpointSlice MODIFIED event pushed on the watch stream, giving the
//     Service default/web a new second endpoint address, seen in Show
//     "services". The fake server writes an event as soon as it has read
//     the push command (no polling) and reports when it wrote it: its own
//     share, from the hand-over to the event being on the socket, is
//     reported beside the total ("server_*_ms").
//
//   sluice-bench-source --node BIN --control BIN --cluster FILE
//       [--source etcd|kube] [--changes N] [--out FILE]
// (--puts N is --changes N, as it was called before there were two sources.)
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/str_format.h"
#include "api/socket.h"
#include "control/cluster_file.h"
#include "tests/control/sources/fake_apiserver.h"
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

// The dataplane's answer to Show `what`; null when there is none.
nlohmann::json ShowJson(sluice::api::Client& c, const char* what, uint32_t address) {
  sluice::api::Show s;
  s.what = what;
  s.address = address;
  auto r = c.Call(s, std::chrono::seconds(2));
  if (!r.ok()) return nullptr;
  const auto* j = std::get_if<sluice::api::JsonReply>(&*r);
  if (j == nullptr) return nullptr;
  nlohmann::json doc = nlohmann::json::parse(j->json, nullptr, false);
  return doc.is_object() ? doc : nullptr;
}

// The source under measurement: what sluice-control is pointed at, how
// change i is handed to its server, how the dataplane's answer shows it,
// and (where the server says when it sent the change) the server's share.
struct Source {
  std::vector<std::string> control_args;
  const char* show = "";
  uint32_t show_address = 0;  // Show's filter (services: one ClusterIP)
  std::function<bool(int i)> change;
  std::function<bool(const nlohmann::json& doc, int i)> applied;
  std::function<double(int i, Clock::time_point t0)> server_ms;  // < 0: unknown
  std::function<bool()> sound = [] { return true; };             // nothing went wrong
  std::unique_ptr<sluice::testing::EtcdServer> etcd;
  std::unique_ptr<sluice::testing::FakeApiServer> api;
};

// flannel's etcd: each change puts 10.244.1.0/24 with a new VtepMAC.
absl::Status StartEtcd(const sluice::ClusterModel& model, Source* src) {
  auto etcd = sluice::testing::EtcdServer::Start();
  if (!etcd.ok()) return etcd.status();
  src->etcd = *std::move(etcd);
  sluice::testing::EtcdServer* e = src->etcd.get();
  (void)e->Put("/coreos.com/network/config",
               R"({"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}})");
  for (const sluice::FlannelLease& l : model.leases)
    (void)e->Put(absl::StrFormat("/coreos.com/network/subnets/%s-%u",
                                 sluice::FormatIpv4(l.subnet.address), l.subnet.length),
                 LeaseJson(l));
  src->control_args = {"--etcd", e->source_endpoint()};
  src->show = "peers";
  auto mac = [](int i) {
    return sluice::MacAddress{
        0x5e, 0x36, 0x5f, 0x00, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
  };
  src->change = [e, mac](int i) {
    sluice::FlannelLease lease;
    lease.subnet = {0x0af40100, 24};
    lease.public_ip = 0x0a0a64e7;
    lease.backend_type = "vxlan";
    lease.vni = 1;
    lease.vtep_mac = mac(i);
    return e->Put("/coreos.com/network/subnets/10.244.1.0-24", LeaseJson(lease)).ok();
  };
  src->applied = [mac](const nlohmann::json& doc, int i) {
    if (!doc.contains("peers") || !doc["peers"].is_array()) return false;
    for (const auto& p : doc["peers"])
      if (p.value("subnet", "") == "10.244.1.0/24")
        return p.value("vtep_mac", "") == sluice::FormatMac(mac(i));
    return false;
  };
  src->server_ms = [](int, Clock::time_point) { return -1.0; };
  return absl::OkStatus();
}

constexpr const char* kServices = "/api/v1/services";
constexpr const char* kSlices = "/apis/discovery.k8s.io/v1/endpointslices";
constexpr uint64_t kListVersion = 9000000;  // above every resourceVersion of the example file

// The Kubernetes API: each change is an EndpointSlice MODIFIED event that
// gives default/web's second endpoint the address 10.244.(100 + i / 250).(1
// + i % 250).
absl::Status StartKube(const std::string& cluster, const std::string& dir, Source* src) {
  std::ifstream in(cluster);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json file = nlohmann::json::parse(text.str(), nullptr, false);
  if (!file.is_object() || !file.contains("kubernetes"))
    return absl::InvalidArgumentError(cluster + ": no kubernetes section");
  nlohmann::json services = nlohmann::json::array(), slices = nlohmann::json::array();
  nlohmann::json web;
  for (const auto& it : file["kubernetes"]["items"]) {
    const std::string kind = it.value("kind", "");
    if (kind == "Service") services.push_back(it);
    if (kind != "EndpointSlice") continue;
    slices.push_back(it);
    if (it["metadata"].value("name", "").rfind("web-", 0) == 0) web = it;
  }
  if (web.is_null() || !web.contains("endpoints") || web["endpoints"].size() < 2)
    return absl::InvalidArgumentError(cluster + ": no EndpointSlice web-* with two endpoints");
  auto api = sluice::testing::FakeApiServer::Start();
  if (!api.ok()) return api.status();
  src->api = *std::move(api);
  sluice::testing::FakeApiServer* a = src->api.get();
  auto list = [](const char* kind, const nlohmann::json& items) {
    return nlohmann::json{{"status", 200},
                          {"body",
                           {{"kind", kind},
                            {"apiVersion", "v1"},
                            {"metadata", {{"resourceVersion", std::to_string(kListVersion)}}},
                            {"items", items}}}};
  };
  a->Respond(kServices, false, list("ServiceList", services));
  a->Respond(kSlices, false, list("EndpointSliceList", slices));
  const std::string kubeconfig = dir + "/kubeconfig";
  std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                               "clusters:\n- name: fake\n  cluster:\n    server: "
                            << a->url()
                            << "\nusers:\n- name: bench\n  user:\n    token: bench\n"
                               "contexts:\n- name: fake\n  context:\n    cluster: fake\n"
                               "    user: bench\n";
  src->control_args = {"--kubeconfig", kubeconfig};
  src->show = "services";
  // Only default/web's port in the answer: the query's own cost must not
  // grow with the cluster's Services.
  src->show_address = *sluice::ParseIpv4("10.96.100.10");
  auto address = [](int i) { return absl::StrFormat("10.244.%d.%d", 100 + i / 250, 1 + i % 250); };
  src->change = [a, web, address](int i) {
    nlohmann::json slice = web;
    slice["metadata"]["resourceVersion"] = std::to_string(kListVersion + 1 + i);
    slice["endpoints"][1]["addresses"] = {address(i)};
    a->Push(kSlices, nlohmann::json::array({{{"type", "MODIFIED"}, {"object", slice}}}));
    return true;
  };
  src->applied = [address](const nlohmann::json& doc, int i) {
    if (!doc.contains("services") || !doc["services"].is_array()) return false;
    const std::string want = address(i);
    for (const auto& s : doc["services"]) {
      if (s.value("name", "") != "default/web:http/TCP" || !s.contains("endpoints")) continue;
      for (const auto& e : s["endpoints"])
        if (e.value("ip", "") == want) return true;
    }
    return false;
  };
  // The fake server's SENT line for change i: CLOCK_MONOTONIC, which is
  // steady_clock's clock here (libstdc++ on Linux).
  src->server_ms = [a](int i, Clock::time_point t0) {
    const std::string rv = std::to_string(kListVersion + 1 + i);
    const std::vector<std::string> sent = a->Lines("SENT ");
    for (auto it = sent.rbegin(); it != sent.rend(); ++it) {
      const nlohmann::json j = nlohmann::json::parse(*it, nullptr, false);
      if (!j.is_object() || j.value("resourceVersion", "") != rv) continue;
      const double t = j.value("monotonic_ns", 0.0);
      return (t - std::chrono::duration<double, std::nano>(t0.time_since_epoch()).count()) / 1e6;
    }
    return -1.0;
  };
  src->sound = [a] { return a->Lines("MISMATCH ").empty(); };
  return absl::OkStatus();
}

nlohmann::json Summary(const std::vector<double>& ms) {
  return {
      {"p50_ms", Quantile(ms, 0.5)}, {"p99_ms", Quantile(ms, 0.99)}, {"max_ms", Quantile(ms, 1.0)}};
}

}  // namespace

int main(int argc, char** argv) {
  std::string node, control, cluster, out, kind = "etcd";
  int changes = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--node")
      node = argv[i + 1];
    else if (a == "--control")
      control = argv[i + 1];
    else if (a == "--cluster")
      cluster = argv[i + 1];
    else if (a == "--source")
      kind = argv[i + 1];
    else if (a == "--changes" || a == "--puts")
      changes = std::atoi(argv[i + 1]);
    else if (a == "--out")
      out = argv[i + 1];
  }
  if (node.empty() || control.empty() || cluster.empty() || changes < 2 ||
      (kind != "etcd" && kind != "kube")) {
    std::fprintf(stderr,
                 "usage: %s --node BIN --control BIN --cluster FILE [--source etcd|kube] "
                 "[--changes N] [--out F]\n",
                 argv[0]);
    return 2;
  }
  auto model = sluice::LoadClusterFile(cluster);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  char tmpl[] = "/tmp/sluice-bench-source-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  Source src;
  const absl::Status started =
      kind == "etcd" ? StartEtcd(*model, &src) : StartKube(cluster, dir, &src);
  if (!started.ok()) {
    std::fprintf(stderr, "sluice-bench-source: %s\n", started.ToString().c_str());
    if (std::system(("rm -rf '" + dir + "'").c_str()) != 0)
      std::fprintf(stderr, "could not remove %s\n", dir.c_str());
    return 1;
  }
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
  std::vector<double> ms, server_ms;
  std::vector<std::pair<int, Clock::time_point>> started_at;  // the timed changes
  for (int i = 0; i < 200; ++i) {
    struct stat st;
    if (stat(sock.c_str(), &st) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> control_argv = {control, "--socket", sock, "--cluster", cluster};
  control_argv.insert(control_argv.end(), src.control_args.begin(), src.control_args.end());
  control_argv.insert(control_argv.end(),
                      {"--metrics-bind", "127.0.0.1:0", "--healthz-bind", "127.0.0.1:0"});
  control_pid = Spawn(control_argv, dir + "/control.log");
  auto client = sluice::api::Client::Connect(sock, std::chrono::seconds(5));
  if (client.ok()) {
    sluice::api::Hello h;
    h.client = "sluice-bench-source";
    (void)client->Call(h, std::chrono::seconds(2));
    bool ok = true;
    for (int i = 0; i < changes && ok; ++i) {
      const auto t0 = Clock::now();
      if (!src.change(i)) {
        ok = false;
        break;
      }
      // The first change also waits for sluice-control's first full sync.
      const auto deadline = t0 + std::chrono::seconds(i == 0 ? 20 : 5);
      while (!src.applied(ShowJson(*client, src.show, src.show_address), i)) {
        if (Clock::now() > deadline) {
          ok = false;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (!ok || i == 0) continue;
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      started_at.emplace_back(i, t0);
    }
    // The server's share, once all it said has been read (it reports a
    // write after making it, so its line can come after the dataplane's
    // answer).
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (const auto& [i, t0] : started_at)
      if (const double s = src.server_ms(i, t0); s >= 0) server_ms.push_back(s);
    if (ok && src.sound()) {
      result = {{"source", kind}, {"changes", ms.size()}, {"goal_p99_ms", 10}};
      result.update(Summary(ms));
      if (!server_ms.empty()) {
        const nlohmann::json s = Summary(server_ms);
        result["server_samples"] = server_ms.size();
        result["server_p50_ms"] = s["p50_ms"];
        result["server_p99_ms"] = s["p99_ms"];
        result["server_max_ms"] = s["max_ms"];
      }
      rc = 0;
    } else {
      std::fprintf(stderr, "sluice-bench-source: %s\n",
                   ok ? "the fake API server refused a request or push (MISMATCH)"
                      : "a change did not reach the dataplane");
    }
  } else {
    std::fprintf(stderr, "sluice-bench-source: %s\n", client.status().ToString().c_str());
  }
  Stop(control_pid, SIGTERM);
  Stop(node_pid, SIGINT);
  src.api.reset();
  src.etcd.reset();
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "could not remove %s\n", dir.c_str());
  if (rc == 0) {
    std::printf("%s\n", result.dump(1).c_str());
    if (!out.empty()) std::ofstream(out) << result.dump(1) << "\n";
  }
  return rc;
}
