// sluice-bench-etcd: from an etcd put of a flannel lease to EtcdSource's
// callback, on loopback against a real etcd (Debian's etcd-server, started
// here as the tests start it: tests/testing/etcd_server.h). Each run starts a
// source, waits for its snapshot, then puts the same lease key `--puts`
// times with a new VtepMAC each time, one at a time, and times each put from
// just before its HTTP request to the callback that carries it (etcd's raft
// commit and WAL fsync included), and from the put's answer to the callback.
// Writes JSON (--out) with every run's quantiles and their medians.
//
//   sluice-bench-etcd [--puts N] [--repeat R] [--out FILE]
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control/sources/etcd_source.h"
#include "tests/testing/etcd_server.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kLeaseKey[] = "/coreos.com/network/subnets/10.244.1.0-24";

struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  size_t events = 0;
  Clock::time_point last;
};

double Quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

}  // namespace

int main(int argc, char** argv) {
  int puts = 200;
  int repeat = 3;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--puts" && i + 1 < argc) {
      puts = std::atoi(argv[++i]);
    } else if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (arg == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--puts N] [--repeat R] [--out FILE]\n", argv[0]);
      return 2;
    }
  }
  if (puts < 2 || repeat < 1) {
    std::fprintf(stderr, "--puts must be >= 2 and --repeat >= 1\n");
    return 2;
  }

  auto etcd = sluice::testing::EtcdServer::Start();
  if (!etcd.ok()) {
    std::fprintf(stderr, "sluice-bench-etcd: %s\n", etcd.status().ToString().c_str());
    return 1;
  }
  if (!(*etcd)
           ->Put("/coreos.com/network/config",
                 R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}})")
           .ok()) {
    std::fprintf(stderr, "sluice-bench-etcd: cannot write the config\n");
    return 1;
  }

  nlohmann::json runs = nlohmann::json::array();
  std::vector<double> p50s, p99s, maxes, ack_p50s, ack_p99s;
  int counter = 0;
  for (int run = 0; run < repeat; ++run) {
    Seen seen;
    sluice::EtcdSourceOptions options;
    options.endpoint = (*etcd)->source_endpoint();
    auto source = sluice::EtcdSource::Start(
        options,
        [&](const sluice::FlannelEvent&) {
          std::lock_guard<std::mutex> lock(seen.mu);
          ++seen.events;
          seen.last = Clock::now();
          seen.cv.notify_all();
        },
        [](const absl::Status& s) {
          std::fprintf(stderr, "reported: %s\n", s.ToString().c_str());
        });
    if (!source.ok()) {
      std::fprintf(stderr, "sluice-bench-etcd: %s\n", source.status().ToString().c_str());
      return 1;
    }
    const auto wait_for = [&](size_t n, Clock::time_point* at) {
      std::unique_lock<std::mutex> lock(seen.mu);
      const bool ok =
          seen.cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen.events >= n; });
      *at = seen.last;
      return ok;
    };
    Clock::time_point at;
    if (!wait_for(1, &at)) {
      std::fprintf(stderr, "sluice-bench-etcd: no snapshot within 10 s\n");
      return 1;
    }
    std::vector<double> put_us, ack_us;
    for (int i = 0; i < puts; ++i, ++counter) {
      const std::string value = absl::StrFormat(
          R"({"PublicIP":"10.10.100.227","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"5e:36:5f:%02x:%02x:%02x"}})",
          (counter >> 16) & 0xff, (counter >> 8) & 0xff, counter & 0xff);
      const Clock::time_point sent = Clock::now();
      if (!(*etcd)->Put(kLeaseKey, value).ok()) {
        std::fprintf(stderr, "sluice-bench-etcd: put failed\n");
        return 1;
      }
      const Clock::time_point acked = Clock::now();
      if (!wait_for(static_cast<size_t>(i) + 2, &at)) {
        std::fprintf(stderr, "sluice-bench-etcd: put %d not seen within 10 s\n", i);
        return 1;
      }
      put_us.push_back(std::chrono::duration<double, std::micro>(at - sent).count());
      ack_us.push_back(std::chrono::duration<double, std::micro>(at - acked).count());
    }
    (*source)->Stop();
    const nlohmann::json r = {{"p50_us", Quantile(put_us, 0.5)},
                              {"p99_us", Quantile(put_us, 0.99)},
                              {"max_us", Quantile(put_us, 1.0)},
                              {"ack_p50_us", Quantile(ack_us, 0.5)},
                              {"ack_p99_us", Quantile(ack_us, 0.99)}};
    runs.push_back(r);
    p50s.push_back(r["p50_us"]);
    p99s.push_back(r["p99_us"]);
    maxes.push_back(r["max_us"]);
    ack_p50s.push_back(r["ack_p50_us"]);
    ack_p99s.push_back(r["ack_p99_us"]);
  }
  const nlohmann::json result = {{"puts_per_run", puts},          {"runs", runs},
                                 {"p50_us", Median(p50s)},        {"p99_us", Median(p99s)},
                                 {"max_us", Median(maxes)},       {"ack_p50_us", Median(ack_p50s)},
                                 {"ack_p99_us", Median(ack_p99s)}};
  std::printf(
      "etcd put -> EtcdSource callback, %d puts x %d runs (medians): p50 %.0f us, p99 %.0f us, "
      "max %.0f us; put answered -> callback p50 %.0f us, p99 %.0f us\n",
      puts, repeat, Median(p50s), Median(p99s), Median(maxes), Median(ack_p50s), Median(ack_p99s));
  if (!out.empty()) {
    std::ofstream file(out);
    file << result.dump(2) << "\n";
    if (!file) {
      std::fprintf(stderr, "sluice-bench-etcd: cannot write %s\n", out.c_str());
      return 1;
    }
  }
  return 0;
}
