// EtcdSource against a real etcd (Debian's etcd-server) on loopback: the
// initial listing, lease changes through the watch, malformed values, etcd
// killed and restarted, a compaction while the source is disconnected, a
// prompt Stop(), TLS (a CA and a client certificate against an etcd with
// --client-cert-auth; no client certificate, or a CA that did not sign the
// server, refused and retried), users (the right password; none, or a
// wrong one, refused and retried; a token etcd forgot in a restart, renewed;
// a user for an etcd with auth off), and the latency from a put to the
// callback.
//
// Every wait is bounded (kWait); each test starts its own etcd, which the
// fixture kills and whose data dir it removes however the test ends; the
// TLS tests' certificates (tests/testing/pki.h) live in a temporary folder
// removed with the fixture.
#include "control/sources/etcd_source.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/testing/etcd_server.h"
#include "tests/testing/pki.h"
#include "tests/testing/temp_dir.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kWait{10000};

constexpr char kConfigKey[] = "/coreos.com/network/config";
constexpr char kConfig[] = R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}})";
constexpr char kLease1Key[] = "/coreos.com/network/subnets/10.244.1.0-24";
constexpr char kLease2Key[] = "/coreos.com/network/subnets/10.244.2.0-24";
constexpr char kLease3Key[] = "/coreos.com/network/subnets/10.244.3.0-24";

// flannel's lease JSON, as flanneld writes it.
std::string Lease(const std::string& public_ip, const std::string& mac) {
  return absl::StrCat(
      R"({"PublicIP":")", public_ip,
      R"(","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":")", mac,
      R"("}})");
}

Ipv4Prefix Subnet(uint32_t third_octet) {
  Ipv4Prefix p;
  p.address = (10u << 24) | (244u << 16) | (third_octet << 8);
  p.length = 24;
  return p;
}

uint32_t Ip(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

// What the callbacks saw, with when.
class Recorder {
 public:
  void OnEvent(const FlannelEvent& event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(event);
    times_.push_back(Clock::now());
    cv_.notify_all();
  }
  void OnProblem(const absl::Status& status) {
    std::printf("reported: %s\n", status.ToString().c_str());  // for the test log
    std::lock_guard<std::mutex> lock(mu_);
    problems_.push_back(status);
    cv_.notify_all();
  }

  // Waits (at most kWait) until `done` holds over what was seen; looks again
  // at each callback and every 5 ms (for conditions on the source's stats).
  bool WaitFor(const std::function<bool(const std::vector<FlannelEvent>&,
                                        const std::vector<absl::Status>&)>& done) {
    const Clock::time_point deadline = Clock::now() + kWait;
    std::unique_lock<std::mutex> lock(mu_);
    while (!done(events_, problems_)) {
      if (Clock::now() >= deadline) return false;
      cv_.wait_for(lock, milliseconds(5));
    }
    return true;
  }
  bool WaitForEvents(size_t n) {
    return WaitFor([n](const auto& events, const auto&) { return events.size() >= n; });
  }
  bool WaitForProblem(const std::string& text) {
    return WaitFor([&](const auto&, const auto& problems) {
      return std::any_of(problems.begin(), problems.end(), [&](const absl::Status& s) {
        return std::string(s.message()).find(text) != std::string::npos;
      });
    });
  }

  std::vector<FlannelEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::vector<absl::Status> problems() {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  Clock::time_point time_of(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return times_.at(i);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<FlannelEvent> events_;
  std::vector<Clock::time_point> times_;
  std::vector<absl::Status> problems_;
};

std::string ProblemsText(const std::vector<absl::Status>& problems) {
  std::string text;
  for (const absl::Status& p : problems) absl::StrAppend(&text, "\n  ", p.ToString());
  return text;
}

class EtcdSourceTest : public ::testing::Test {
 protected:
  void SetUp() override { StartEtcd({}); }

  void StartEtcd(std::vector<std::string> extra_args, testing::EtcdServer::Tls tls = {}) {
    absl::StatusOr<std::unique_ptr<testing::EtcdServer>> server =
        testing::EtcdServer::Start(std::move(extra_args), std::move(tls));
    ASSERT_TRUE(server.ok()) << server.status();
    etcd_ = *std::move(server);
  }

  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
    source_.reset();
    etcd_.reset();  // kills etcd, removes its data dir
  }

  int64_t Put(const std::string& key, const std::string& value) {
    absl::StatusOr<int64_t> revision = etcd_->Put(key, value);
    EXPECT_TRUE(revision.ok()) << revision.status();
    return revision.value_or(0);
  }
  int64_t Delete(const std::string& key) {
    absl::StatusOr<int64_t> revision = etcd_->Delete(key);
    EXPECT_TRUE(revision.ok()) << revision.status();
    return revision.value_or(0);
  }

  void StartSource(EtcdSourceOptions options = {}) {
    options.endpoint = etcd_->source_endpoint();
    options.backoff_initial = milliseconds(50);
    options.backoff_max = milliseconds(200);
    absl::StatusOr<std::unique_ptr<EtcdSource>> source = EtcdSource::Start(
        options, [this](const FlannelEvent& e) { recorder_.OnEvent(e); },
        [this](const absl::Status& s) { recorder_.OnProblem(s); });
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = *std::move(source);
  }

  // The first event, which must be the initial snapshot.
  FlannelSnapshot InitialSnapshot() {
    EXPECT_TRUE(recorder_.WaitForEvents(1)) << ProblemsText(recorder_.problems());
    const std::vector<FlannelEvent> events = recorder_.events();
    if (events.empty()) return {};
    EXPECT_EQ(events[0].kind, FlannelEvent::Kind::kSnapshot);
    return events[0].snapshot;
  }

  std::unique_ptr<testing::EtcdServer> etcd_;
  Recorder recorder_;
  std::unique_ptr<EtcdSource> source_;
};

TEST_F(EtcdSourceTest, InitialListIsOneSnapshotOfConfigAndLeasesAtTheRangeRevision) {
  Put(kConfigKey, kConfig);
  Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  Put("/coreos.com/network/other", "not flannel's");  // under the prefix, not ours
  const int64_t last = Put("/coreos.com/networkx/config", "outside the prefix");

  StartSource();
  const FlannelSnapshot snapshot = InitialSnapshot();
  EXPECT_EQ(snapshot.revision, last);
  ASSERT_TRUE(snapshot.network.has_value());
  EXPECT_EQ(snapshot.network->network.address, Ip(10, 244, 0, 0));
  EXPECT_EQ(snapshot.network->network.length, 16);
  EXPECT_EQ(snapshot.network->subnet_len, 24);
  EXPECT_EQ(snapshot.network->vni, 1u);
  EXPECT_EQ(snapshot.network->port, 8472);
  ASSERT_EQ(snapshot.leases.size(), 2u);
  EXPECT_EQ(snapshot.lease_keys[0], kLease1Key);  // key order
  EXPECT_EQ(snapshot.leases[0].subnet.address, Subnet(1).address);
  EXPECT_EQ(snapshot.leases[0].public_ip, Ip(10, 10, 100, 227));
  EXPECT_EQ(FormatMac(snapshot.leases[0].vtep_mac), "5e:36:5f:2f:1c:01");
  EXPECT_EQ(snapshot.leases[1].public_ip, Ip(10, 10, 100, 228));
  EXPECT_TRUE(recorder_.problems().empty()) << ProblemsText(recorder_.problems());

  // A small page size reads the same state in several range requests.
  Recorder paged;
  EtcdSourceOptions options;
  options.endpoint = etcd_->source_endpoint();
  options.page_size = 1;
  auto second = EtcdSource::Start(
      options, [&](const FlannelEvent& e) { paged.OnEvent(e); }, nullptr);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(paged.WaitForEvents(1));
  EXPECT_EQ(paged.events()[0].snapshot.lease_keys, snapshot.lease_keys);
  EXPECT_EQ(paged.events()[0].snapshot.revision, last);
  (*second)->Stop();
  EXPECT_EQ((*second)->stats().lists, 1u);
}

TEST_F(EtcdSourceTest, LeaseAddedChangedAndRemovedReachTheCallbackInOrder) {
  Put(kConfigKey, kConfig);
  StartSource();
  EXPECT_TRUE(InitialSnapshot().leases.empty());

  const int64_t added = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));  // a renewal: same value
  const int64_t changed = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:99"));
  const int64_t removed = Delete(kLease1Key);
  ASSERT_TRUE(recorder_.WaitForEvents(4)) << ProblemsText(recorder_.problems());

  const std::vector<FlannelEvent> events = recorder_.events();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[1].kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(events[1].revision, added);
  EXPECT_EQ(events[1].key, kLease1Key);
  EXPECT_EQ(events[1].lease.subnet.address, Subnet(1).address);
  EXPECT_EQ(events[1].lease.public_ip, Ip(10, 10, 100, 227));
  EXPECT_EQ(FormatMac(events[1].lease.vtep_mac), "5e:36:5f:2f:1c:01");
  EXPECT_EQ(events[2].kind, FlannelEvent::Kind::kLeaseUpsert);  // the renewal sent nothing
  EXPECT_EQ(events[2].revision, changed);
  EXPECT_EQ(FormatMac(events[2].lease.vtep_mac), "5e:36:5f:2f:1c:99");
  EXPECT_EQ(events[3].kind, FlannelEvent::Kind::kLeaseDelete);
  EXPECT_EQ(events[3].revision, removed);
  EXPECT_EQ(events[3].lease.subnet.address, Subnet(1).address);
  EXPECT_EQ(source_->stats().revision, removed);
  EXPECT_EQ(source_->stats().lists, 1u);
  EXPECT_TRUE(recorder_.problems().empty()) << ProblemsText(recorder_.problems());

  // A config change is the whole state again, leases parsed under it.
  Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  Put(kConfigKey, R"({"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":7}})");
  ASSERT_TRUE(recorder_.WaitForEvents(6));
  const FlannelEvent config = recorder_.events()[5];
  EXPECT_EQ(config.kind, FlannelEvent::Kind::kConfig);
  ASSERT_TRUE(config.snapshot.network.has_value());
  EXPECT_EQ(config.snapshot.network->vni, 7u);
  ASSERT_EQ(config.snapshot.leases.size(), 1u);
  EXPECT_EQ(config.snapshot.leases[0].vni, 1u);  // the lease names its VNI
}

TEST_F(EtcdSourceTest, MalformedLeaseIsReportedAndSkippedWhileOthersApply) {
  Put(kConfigKey, kConfig);
  Put(kLease1Key, Lease("10.10.100.227", "zz"));
  Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  StartSource();
  const FlannelSnapshot snapshot = InitialSnapshot();
  ASSERT_EQ(snapshot.leases.size(), 1u);
  EXPECT_EQ(snapshot.lease_keys[0], kLease2Key);
  ASSERT_TRUE(recorder_.WaitForProblem("BackendData.VtepMAC"));
  EXPECT_EQ(recorder_.problems()[0].message(),
            "etcd key /coreos.com/network/subnets/10.244.1.0-24: BackendData.VtepMAC: "
            "malformed MAC \"zz\"");
  EXPECT_EQ(recorder_.problems()[0].code(), absl::StatusCode::kInvalidArgument);

  // Through the watch: a good lease turned bad is reported and the consumer
  // keeps the last good value (no event); the next good change applies.
  Put(kLease2Key, R"({"PublicIP":"10.10.100.228","BackendType":"vxlan","BackendData":{}})");
  ASSERT_TRUE(recorder_.WaitForProblem("10.244.2.0-24: BackendData.VtepMAC: missing"));
  Put(kLease2Key, "{not json");
  ASSERT_TRUE(recorder_.WaitForProblem("10.244.2.0-24: value: not valid JSON"));
  Put(kConfigKey, R"({"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}})");
  ASSERT_TRUE(recorder_.WaitForProblem("config: Backend.Type: only vxlan is supported"));
  Put(kLease3Key, Lease("10.10.100.229", "5e:36:5f:2f:1c:03"));
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));  // now good
  ASSERT_TRUE(recorder_.WaitForEvents(3)) << ProblemsText(recorder_.problems());
  const std::vector<FlannelEvent> events = recorder_.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[1].kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(events[1].key, kLease3Key);
  EXPECT_EQ(events[2].key, kLease1Key);
  EXPECT_EQ(source_->stats().bad_values, 4u);
}

TEST_F(EtcdSourceTest, SurvivesEtcdKilledAndRestartedAndSeesWhatChangedMeanwhile) {
  Put(kConfigKey, kConfig);
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  StartSource();
  ASSERT_EQ(InitialSnapshot().leases.size(), 1u);
  ASSERT_TRUE(
      recorder_.WaitFor([&](const auto&, const auto&) { return source_->stats().watches >= 1; }));

  etcd_->Kill();
  ASSERT_TRUE(recorder_.WaitForProblem(": watch"));
  // Back, but on the admin port only: the source cannot reach it yet.
  ASSERT_TRUE(etcd_->Restart(/*serve_source_port=*/false).ok()) << etcd_->LogTail();
  const int64_t while_down = Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  const uint64_t failures = source_->stats().failures;
  ASSERT_TRUE(recorder_.WaitFor([&](const auto&, const auto&) {
    return source_->stats().failures > failures;  // it tried, and could not connect
  }));
  ASSERT_TRUE(etcd_->Restart(/*serve_source_port=*/true).ok()) << etcd_->LogTail();

  // The watch resumes from the last revision: the change made while the
  // source was cut off arrives as an event, not as a relist.
  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  FlannelEvent resumed = recorder_.events()[1];
  EXPECT_EQ(resumed.kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(resumed.key, kLease2Key);
  EXPECT_EQ(resumed.revision, while_down);
  const int64_t after = Delete(kLease1Key);
  ASSERT_TRUE(recorder_.WaitForEvents(3));
  EXPECT_EQ(recorder_.events()[2].kind, FlannelEvent::Kind::kLeaseDelete);
  EXPECT_EQ(recorder_.events()[2].revision, after);

  const EtcdSourceStats stats = source_->stats();
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_GE(stats.watches, 2u);
  EXPECT_GE(stats.watch_breaks, 1u);
  EXPECT_GE(stats.failures, 1u);
  EXPECT_EQ(stats.compactions, 0u);
}

TEST_F(EtcdSourceTest, CompactionWhileDisconnectedForcesARelistWithNoStaleLease) {
  Put(kConfigKey, kConfig);
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  StartSource();
  ASSERT_EQ(InitialSnapshot().leases.size(), 2u);
  ASSERT_TRUE(
      recorder_.WaitFor([&](const auto&, const auto&) { return source_->stats().watches >= 1; }));

  etcd_->Kill();
  ASSERT_TRUE(etcd_->Restart(/*serve_source_port=*/false).ok()) << etcd_->LogTail();
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:11"));
  Delete(kLease2Key);
  Put(kLease3Key, Lease("10.10.100.229", "5e:36:5f:2f:1c:03"));
  const int64_t last = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:21"));
  ASSERT_TRUE(etcd_->Compact(last).ok());
  ASSERT_TRUE(etcd_->Restart(/*serve_source_port=*/true).ok()) << etcd_->LogTail();

  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  const std::vector<FlannelEvent> events = recorder_.events();
  ASSERT_EQ(events.size(), 2u);
  ASSERT_EQ(events[1].kind, FlannelEvent::Kind::kSnapshot);
  const FlannelSnapshot& relisted = events[1].snapshot;
  EXPECT_EQ(relisted.revision, last);
  ASSERT_EQ(relisted.leases.size(), 2u);
  EXPECT_EQ(relisted.lease_keys[0], kLease1Key);
  EXPECT_EQ(FormatMac(relisted.leases[0].vtep_mac), "5e:36:5f:2f:1c:21");
  EXPECT_EQ(relisted.lease_keys[1], kLease3Key);  // 10.244.2.0/24 is gone
  EXPECT_TRUE(recorder_.WaitForProblem("compacted"));
  EXPECT_EQ(source_->stats().compactions, 1u);
  EXPECT_EQ(source_->stats().lists, 2u);

  // And the watch goes on from the relist's revision.
  const int64_t next = Delete(kLease3Key);
  ASSERT_TRUE(recorder_.WaitForEvents(3));
  EXPECT_EQ(recorder_.events()[2].kind, FlannelEvent::Kind::kLeaseDelete);
  EXPECT_EQ(recorder_.events()[2].revision, next);
}

TEST_F(EtcdSourceTest, ProgressNotificationsAdvanceTheRevision) {
  etcd_.reset();
  StartEtcd({"--experimental-watch-progress-notify-interval=200ms"});
  Put(kConfigKey, kConfig);
  StartSource();
  InitialSnapshot();
  // A change outside the prefix moves the store's revision but sends this
  // watch nothing; only a progress notification can carry it.
  const int64_t outside = Put("/elsewhere", "x");
  ASSERT_TRUE(recorder_.WaitFor(
      [&](const auto&, const auto&) { return source_->stats().revision >= outside; }));
  EXPECT_EQ(recorder_.events().size(), 1u);
}

// ---- TLS ------------------------------------------------------------------------

// etcd serving the source port over TLS with the Pki's server certificate
// and asking for a client certificate its CA signed (--client-cert-auth);
// the test's own calls use the plain admin port.
class EtcdSourceTlsTest : public EtcdSourceTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(pki_.ok()) << "openssl failed";
    testing::EtcdServer::Tls tls;
    tls.cert_file = pki_.path("server.crt");
    tls.key_file = pki_.path("server.key");
    tls.trusted_ca_file = pki_.path("ca.crt");
    tls.client_cert_auth = true;
    StartEtcd({}, tls);
  }

  // The CA file named, and the client certificate when `client_cert`.
  EtcdSourceOptions TlsOptions(const std::string& ca, bool client_cert) const {
    EtcdSourceOptions options;
    options.ca_file = pki_.path(ca);
    if (client_cert) {
      options.cert_file = pki_.path("client.crt");
      options.key_file = pki_.path("client.key");
    }
    return options;
  }

  // The source keeps failing: no event, no listing, at least three failed
  // attempts (so it retried), each reported as Unavailable (with `text`
  // unless empty); then Stop() returns at once.
  void ExpectRefusedAndRetried(const std::string& text) {
    ASSERT_TRUE(recorder_.WaitFor([&](const auto&, const auto&) {
      return source_->stats().failures >= 3;
    })) << ProblemsText(recorder_.problems());
    ASSERT_TRUE(
        recorder_.WaitFor([](const auto&, const auto& problems) { return problems.size() >= 3; }));
    const Clock::time_point before = Clock::now();
    source_->Stop();
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - before);
    EXPECT_LT(took.count(), 500) << "Stop() took " << took.count() << " ms";
    EXPECT_TRUE(recorder_.events().empty());
    const EtcdSourceStats stats = source_->stats();
    EXPECT_EQ(stats.lists, 0u);
    EXPECT_EQ(stats.watches, 0u);
    EXPECT_GE(stats.failures, 3u);
    for (const absl::Status& problem : recorder_.problems()) {
      EXPECT_EQ(problem.code(), absl::StatusCode::kUnavailable) << problem;
      EXPECT_THAT(std::string(problem.message()),
                  HasSubstr(absl::StrCat("etcd ", etcd_->source_endpoint(), ": range: ")));
      if (!text.empty()) {
        EXPECT_THAT(std::string(problem.message()), HasSubstr(text));
      }
    }
  }

  // A second source with the CA and the client certificate lists the same
  // etcd: what refused the first source was its TLS settings alone.
  void ExpectTheRightSettingsList() {
    Recorder good;
    EtcdSourceOptions options = TlsOptions("ca.crt", /*client_cert=*/true);
    options.endpoint = etcd_->source_endpoint();
    auto verified = EtcdSource::Start(
        options, [&](const FlannelEvent& e) { good.OnEvent(e); },
        [&](const absl::Status& s) { good.OnProblem(s); });
    ASSERT_TRUE(verified.ok()) << verified.status();
    ASSERT_TRUE(good.WaitForEvents(1)) << ProblemsText(good.problems());
    (*verified)->Stop();
    EXPECT_EQ(good.events()[0].kind, FlannelEvent::Kind::kSnapshot);
    EXPECT_TRUE(good.events()[0].snapshot.network.has_value());
    EXPECT_TRUE(good.problems().empty()) << ProblemsText(good.problems());
  }

  testing::Pki pki_;
};

TEST_F(EtcdSourceTlsTest, WithTheCaAndAClientCertificateListsAndWatchesOverHttps) {
  ASSERT_THAT(etcd_->source_endpoint(), ::testing::StartsWith("https://127.0.0.1:"));
  Put(kConfigKey, kConfig);
  const int64_t listed = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  StartSource(TlsOptions("ca.crt", /*client_cert=*/true));
  const FlannelSnapshot snapshot = InitialSnapshot();
  EXPECT_EQ(snapshot.revision, listed);
  ASSERT_TRUE(snapshot.network.has_value());
  EXPECT_EQ(snapshot.network->network.address, Ip(10, 244, 0, 0));
  EXPECT_EQ(snapshot.network->vni, 1u);
  ASSERT_EQ(snapshot.leases.size(), 1u);
  EXPECT_EQ(snapshot.lease_keys[0], kLease1Key);
  EXPECT_EQ(snapshot.leases[0].subnet.address, Subnet(1).address);
  EXPECT_EQ(snapshot.leases[0].public_ip, Ip(10, 10, 100, 227));
  EXPECT_EQ(FormatMac(snapshot.leases[0].vtep_mac), "5e:36:5f:2f:1c:01");

  // A lease put afterwards comes through the watch stream, over TLS too.
  const int64_t added = Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  const FlannelEvent event = recorder_.events()[1];
  EXPECT_EQ(event.kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(event.revision, added);
  EXPECT_EQ(event.key, kLease2Key);
  EXPECT_EQ(event.lease.subnet.address, Subnet(2).address);
  EXPECT_EQ(event.lease.subnet.length, 24);
  EXPECT_EQ(event.lease.public_ip, Ip(10, 10, 100, 228));
  EXPECT_EQ(FormatMac(event.lease.vtep_mac), "5e:36:5f:2f:1c:02");
  EXPECT_EQ(event.lease.vni, 1u);
  const EtcdSourceStats stats = source_->stats();
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_EQ(stats.watches, 1u);
  EXPECT_EQ(stats.failures, 0u);
  EXPECT_TRUE(recorder_.problems().empty()) << ProblemsText(recorder_.problems());
}

TEST_F(EtcdSourceTlsTest, WithoutAClientCertificateEtcdRefusesItAndTheSourceKeepsRetrying) {
  Put(kConfigKey, kConfig);
  StartSource(TlsOptions("ca.crt", /*client_cert=*/false));
  // The client's side of a refused handshake varies (an alert read, or the
  // connection already closed); etcd's log names the reason.
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedAndRetried(""));
  EXPECT_TRUE(recorder_.WaitFor([&](const auto&, const auto&) {
    return etcd_->LogTail().find("client didn't provide a certificate") != std::string::npos;
  })) << etcd_->LogTail();
  ExpectTheRightSettingsList();
}

TEST_F(EtcdSourceTlsTest, ACaThatDidNotSignTheServerIsRefusedAndRetried) {
  Put(kConfigKey, kConfig);
  StartSource(TlsOptions("other-ca.crt", /*client_cert=*/true));
  ASSERT_NO_FATAL_FAILURE(ExpectRefusedAndRetried("SSL certificate problem"));
  ExpectTheRightSettingsList();
}

// etcd with auth on (EnableAuth through the admin port): a user "flannel"
// that may read the prefix; the test's own puts go as root.
class EtcdSourceAuthTest : public EtcdSourceTest {
 protected:
  static constexpr char kUser[] = "flannel";
  static constexpr char kPassword[] = "s3cret-flannel-pw";

  void SetUp() override {
    EtcdSourceTest::SetUp();
    ASSERT_TRUE(etcd_ != nullptr);
    const absl::Status enabled = etcd_->EnableAuth(kUser, kPassword, "/coreos.com/network");
    ASSERT_TRUE(enabled.ok()) << enabled << "\n" << etcd_->LogTail();
  }

  static EtcdSourceOptions AuthOptions(const std::string& password) {
    EtcdSourceOptions options;
    options.username = kUser;
    options.password = password;
    return options;
  }
};

TEST_F(EtcdSourceAuthTest, WithTheRightPasswordListsAndWatches) {
  Put(kConfigKey, kConfig);
  Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  StartSource(AuthOptions(kPassword));
  const FlannelSnapshot snapshot = InitialSnapshot();
  ASSERT_TRUE(snapshot.network.has_value());
  ASSERT_EQ(snapshot.leases.size(), 1u);
  EXPECT_EQ(snapshot.lease_keys[0], kLease1Key);

  const int64_t added = Put(kLease2Key, Lease("10.10.100.228", "5e:36:5f:2f:1c:02"));
  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  const FlannelEvent event = recorder_.events()[1];
  EXPECT_EQ(event.kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(event.key, kLease2Key);
  EXPECT_EQ(event.revision, added);
  const EtcdSourceStats stats = source_->stats();
  EXPECT_EQ(stats.authentications, 1u);
  EXPECT_EQ(stats.lists, 1u);
  EXPECT_EQ(stats.watches, 1u);
  EXPECT_EQ(stats.failures, 0u);
  EXPECT_TRUE(recorder_.problems().empty()) << ProblemsText(recorder_.problems());
}

TEST_F(EtcdSourceAuthTest, WithoutAUserEtcdRefusesTheListingAndTheSourceRetries) {
  Put(kConfigKey, kConfig);
  StartSource();
  ASSERT_TRUE(recorder_.WaitFor([&](const auto&, const auto& problems) {
    return source_->stats().failures >= 2 && problems.size() >= 2;
  })) << ProblemsText(recorder_.problems());
  const absl::Status first = recorder_.problems()[0];
  EXPECT_EQ(first.code(), absl::StatusCode::kUnauthenticated) << first;
  EXPECT_THAT(std::string(first.message()), HasSubstr("user name is empty"));
  EXPECT_THAT(std::string(first.message()), HasSubstr("etcd wants a user (username)"));
  EXPECT_TRUE(recorder_.events().empty());
  EXPECT_EQ(source_->stats().bad_values, 0u);  // not a value's fault
}

TEST_F(EtcdSourceAuthTest, AWrongPasswordIsReportedNamingTheUserAndRetried) {
  Put(kConfigKey, kConfig);
  const std::string wrong = "not-the-password-42";
  StartSource(AuthOptions(wrong));
  ASSERT_TRUE(recorder_.WaitFor([&](const auto&, const auto& problems) {
    return source_->stats().failures >= 3 && problems.size() >= 3;
  })) << ProblemsText(recorder_.problems());
  for (const absl::Status& problem : recorder_.problems()) {
    EXPECT_EQ(problem.code(), absl::StatusCode::kUnauthenticated) << problem;
    EXPECT_THAT(std::string(problem.message()),
                HasSubstr(absl::StrCat(etcd_->source_endpoint(),
                                       ": authenticating as user \"flannel\": etcdserver: "
                                       "authentication failed, invalid user ID or password")));
    EXPECT_EQ(std::string(problem.message()).find(wrong), std::string::npos) << problem;
    EXPECT_EQ(std::string(problem.message()).find(kPassword), std::string::npos) << problem;
  }
  EXPECT_TRUE(recorder_.events().empty());
  const EtcdSourceStats stats = source_->stats();
  EXPECT_EQ(stats.lists, 0u);
  EXPECT_EQ(stats.authentications, 0u);
  EXPECT_EQ(stats.bad_values, 0u);

  const Clock::time_point before = Clock::now();
  source_->Stop();
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - before);
  EXPECT_LT(took.count(), 500) << "Stop() took " << took.count() << " ms";
}

// etcd's simple tokens live in its memory: after a restart the source's
// token means nothing, and the source authenticates again.
TEST_F(EtcdSourceAuthTest, AfterEtcdRestartsTheSourceAuthenticatesAgainAndWatchesOn) {
  Put(kConfigKey, kConfig);
  StartSource(AuthOptions(kPassword));
  ASSERT_TRUE(InitialSnapshot().leases.empty());
  ASSERT_TRUE(
      recorder_.WaitFor([&](const auto&, const auto&) { return source_->stats().watches >= 1; }));
  ASSERT_EQ(source_->stats().authentications, 1u);

  etcd_->Kill();
  ASSERT_TRUE(recorder_.WaitForProblem(": watch"));
  ASSERT_TRUE(etcd_->Restart(/*serve_source_port=*/true).ok()) << etcd_->LogTail();
  ASSERT_TRUE(recorder_.WaitFor([&](const auto&, const auto&) {
    return source_->stats().watches >= 2;
  })) << ProblemsText(recorder_.problems());
  const int64_t after = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  const FlannelEvent event = recorder_.events()[1];
  EXPECT_EQ(event.kind, FlannelEvent::Kind::kLeaseUpsert);
  EXPECT_EQ(event.key, kLease1Key);
  EXPECT_EQ(event.revision, after);
  const EtcdSourceStats stats = source_->stats();
  EXPECT_GE(stats.authentications, 2u);
  EXPECT_EQ(stats.lists, 1u);  // the watch resumed: no relist
  EXPECT_GE(stats.watch_breaks, 1u);
  for (const absl::Status& problem : recorder_.problems()) {
    EXPECT_EQ(std::string(problem.message()).find(kPassword), std::string::npos) << problem;
  }
}

// A username for an etcd with auth off: etcd says "authentication is not
// enabled", and the source lists and watches without a token.
TEST_F(EtcdSourceTest, AUserForAnEtcdWithAuthOffIsNoError) {
  Put(kConfigKey, kConfig);
  EtcdSourceOptions options;
  options.username = "flannel";
  options.password = "unused";
  StartSource(options);
  EXPECT_TRUE(InitialSnapshot().network.has_value());
  const int64_t added = Put(kLease1Key, Lease("10.10.100.227", "5e:36:5f:2f:1c:01"));
  ASSERT_TRUE(recorder_.WaitForEvents(2)) << ProblemsText(recorder_.problems());
  EXPECT_EQ(recorder_.events()[1].revision, added);
  EXPECT_EQ(source_->stats().authentications, 0u);
  EXPECT_TRUE(recorder_.problems().empty()) << ProblemsText(recorder_.problems());
}

// Stop() returns at once even while a request hangs: a listener that never
// answers (the kernel completes the handshake, nobody reads).
TEST(EtcdSourceStopTest, StopIsPromptWhileARequestHangs) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);

  Recorder recorder;
  EtcdSourceOptions options;
  options.endpoint = absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port));
  options.request_timeout = milliseconds(60000);
  auto source = EtcdSource::Start(
      options, [&](const FlannelEvent& e) { recorder.OnEvent(e); },
      [&](const absl::Status& s) { recorder.OnProblem(s); });
  ASSERT_TRUE(source.ok());
  std::this_thread::sleep_for(milliseconds(300));  // let the range request be sent
  const Clock::time_point before = Clock::now();
  (*source)->Stop();
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - before);
  close(fd);
  EXPECT_LT(took.count(), 500) << "Stop() took " << took.count() << " ms";
  EXPECT_TRUE(recorder.events().empty());
  EXPECT_EQ((*source)->stats().lists, 0u);
}

TEST(EtcdSourceStartTest, RejectsBadOptions) {
  EtcdSourceOptions options;
  options.endpoint = "127.0.0.1:2379";
  EXPECT_THAT(std::string(EtcdSource::Start(options, nullptr, nullptr).status().message()),
              HasSubstr("must start with http://"));
  options = {};
  options.prefix = "/";
  EXPECT_EQ(EtcdSource::Start(options, nullptr, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.backoff_initial = milliseconds(10000);
  EXPECT_EQ(EtcdSource::Start(options, nullptr, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = {};
  options.password = "pw";
  const absl::Status no_user = EtcdSource::Start(options, nullptr, nullptr).status();
  EXPECT_EQ(no_user.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(no_user.message(), "etcd password is set without username (a password needs its user)");
}

// TLS options that could not work are refused at Start, naming the option;
// nothing is started.
TEST(EtcdSourceStartTest, RejectsTlsOptionsThatCannotWork) {
  testing::TempDir dir;
  const std::string ca = dir.Write("ca.crt", "a CA\n");
  const std::string cert = dir.Write("client.crt", "a certificate\n");
  const std::string key = dir.Write("client.key", "a key\n");
  const std::string https = "https://127.0.0.1:2379";
  const auto refusal = [](const EtcdSourceOptions& options) {
    const absl::Status s = EtcdSource::Start(options, nullptr, nullptr).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  };
  EtcdSourceOptions options;
  options.endpoint = https;
  options.cert_file = cert;
  EXPECT_EQ(refusal(options),
            "etcd cert_file is set without key_file (a client certificate needs its key)");
  options = {};
  options.endpoint = https;
  options.key_file = key;
  EXPECT_EQ(refusal(options),
            "etcd key_file is set without cert_file (a client key needs its certificate)");

  // On http:// they would not be used.
  options = {};
  options.ca_file = ca;
  EXPECT_EQ(refusal(options),
            "etcd ca_file is set but endpoint http://127.0.0.1:2379 is not https://: it would "
            "not be used");
  options = {};
  options.cert_file = cert;
  options.key_file = key;
  EXPECT_THAT(refusal(options), HasSubstr("etcd cert_file is set but endpoint http://"));

  // A file that cannot be read, whichever it is.
  const std::string missing = dir.path() + "/missing.pem";
  options = {};
  options.endpoint = https;
  options.ca_file = missing;
  EXPECT_EQ(refusal(options),
            absl::StrCat("etcd ca_file ", missing, ": cannot read: No such file or directory"));
  options.ca_file = ca;
  options.cert_file = missing;
  options.key_file = key;
  EXPECT_THAT(refusal(options), HasSubstr("etcd cert_file " + missing + ": cannot read"));
  options.cert_file = cert;
  options.key_file = missing;
  EXPECT_THAT(refusal(options), HasSubstr("etcd key_file " + missing + ": cannot read"));
}

// From the start of a put to the callback, on loopback: etcd's commit (a WAL
// fsync in the test's data dir), the watch stream and the source's parsing.
// Printed for the record; speed is judged in bench/, so the test only checks
// that every put arrived, in order.
TEST_F(EtcdSourceTest, PutToCallbackLatency) {
  Put(kConfigKey, kConfig);
  StartSource();
  InitialSnapshot();
  constexpr int kPuts = 200;
  std::vector<double> put_to_callback_us;
  std::vector<double> ack_to_callback_us;
  for (int i = 0; i < kPuts; ++i) {
    const std::string mac = absl::StrFormat("5e:36:5f:2f:%02x:%02x", i / 256, i % 256);
    const Clock::time_point sent = Clock::now();
    Put(kLease1Key, Lease("10.10.100.227", mac));
    const Clock::time_point acked = Clock::now();
    ASSERT_TRUE(recorder_.WaitForEvents(static_cast<size_t>(i) + 2));
    const Clock::time_point seen = recorder_.time_of(static_cast<size_t>(i) + 1);
    put_to_callback_us.push_back(std::chrono::duration<double, std::micro>(seen - sent).count());
    ack_to_callback_us.push_back(std::chrono::duration<double, std::micro>(seen - acked).count());
    ASSERT_EQ(FormatMac(recorder_.events().back().lease.vtep_mac), mac);
  }
  const auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
  };
  std::printf(
      "etcd put -> callback over %d puts: p50 %.0f us, p99 %.0f us, max %.0f us "
      "(put acknowledged -> callback: p50 %.0f us, p99 %.0f us)\n",
      kPuts, quantile(put_to_callback_us, 0.5), quantile(put_to_callback_us, 0.99),
      quantile(put_to_callback_us, 1.0), quantile(ack_to_callback_us, 0.5),
      quantile(ack_to_callback_us, 0.99));
  RecordProperty("put_to_callback_p50_us", static_cast<int>(quantile(put_to_callback_us, 0.5)));
  RecordProperty("put_to_callback_p99_us", static_cast<int>(quantile(put_to_callback_us, 0.99)));
}

}  // namespace
}  // namespace sluice
