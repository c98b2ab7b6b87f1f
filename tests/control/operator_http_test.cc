// kube-proxy's HTTP surface as sluice-control serves it: real servers on
// loopback, fetched over TCP.
#include "control/operator_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

struct Reply {
  int status = 0;  // 0: could not connect
  std::string body;
};

// One HTTP/1.0 GET on 127.0.0.1:port (bounded: 2 s socket timeouts).
Reply Get(uint16_t port, const std::string& path) {
  Reply r;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return r;
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return r;
  }
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) all.append(buf, static_cast<size_t>(n));
  close(fd);
  std::smatch m;
  if (std::regex_search(all, m, std::regex("^HTTP/1\\.[01] (\\d{3})"))) r.status = std::stoi(m[1]);
  const size_t body = all.find("\r\n\r\n");
  if (body != std::string::npos) r.body = all.substr(body + 4);
  return r;
}

// A port nothing listens on right now.
uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

class OperatorHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OperatorHttp::Config c;
    c.metrics_bind = "127.0.0.1:0";
    c.health_bind = "127.0.0.1:0";
    c.health_check_address = "127.0.0.1";
    auto h = OperatorHttp::Start(c, &health_, &metrics_,
                                 [] { return std::string("sluice_rx_packets_total 42\n"); });
    ASSERT_TRUE(h.ok()) << h.status();
    http_ = *std::move(h);
    ASSERT_NE(http_->metrics_port(), 0);
    ASSERT_NE(http_->health_port(), 0);
  }
  ProxyHealth health_{std::chrono::milliseconds(100)};
  ProxyMetrics metrics_;
  std::unique_ptr<OperatorHttp> http_;
};

TEST_F(OperatorHttpTest, HealthzAnswersAsKubeProxyDoes) {
  const Reply r = Get(http_->health_port(), "/healthz");
  EXPECT_EQ(r.status, 200);
  // {"lastUpdated": "2026-12-01 12:00:00.5 +0000 UTC","currentTime": "...", "nodeEligible": true}
  EXPECT_TRUE(std::regex_match(
      r.body, std::regex(R"(\{"lastUpdated": "\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC",)"
                         R"("currentTime": "[^"]+ \+0000 UTC", "nodeEligible": true\})")))
      << r.body;
  EXPECT_EQ(Get(http_->health_port(), "/livez").status, 200);
  EXPECT_EQ(Get(http_->health_port(), "/other").status, 404);
}

TEST_F(OperatorHttpTest, AnUpdateNotAppliedWithinTheTimeoutMakesItUnhealthy) {
  health_.QueuedUpdate(WallClock::now());
  EXPECT_EQ(Get(http_->health_port(), "/healthz").status, 200);  // not late yet
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(Get(http_->health_port(), "/healthz").status, 503);
  EXPECT_EQ(Get(http_->health_port(), "/livez").status, 503);
  health_.Updated(WallClock::now());
  EXPECT_EQ(Get(http_->health_port(), "/healthz").status, 200);
}

TEST_F(OperatorHttpTest, ANodeBeingDeletedFailsHealthzButNotLivez) {
  health_.SetNodeEligible(false);
  const Reply r = Get(http_->health_port(), "/healthz");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr(R"("nodeEligible": false)"));
  EXPECT_EQ(Get(http_->health_port(), "/livez").status, 200);
}

TEST_F(OperatorHttpTest, MetricsCarryKubeProxyNamesAndTheDataplaneCounters) {
  metrics_.ObserveSync(0.0004, WallClock::now());
  metrics_.ObserveSync(0.003, WallClock::now());
  metrics_.ObserveNetworkProgramming(0.1);
  metrics_.SetNoLocalEndpoints(1, 2);
  const Reply r = Get(http_->metrics_port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram"));
  EXPECT_THAT(r.body, HasSubstr("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.001\"} 1\n"));
  EXPECT_THAT(r.body, HasSubstr("kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 2\n"));
  EXPECT_THAT(r.body, HasSubstr("kubeproxy_sync_proxy_rules_duration_seconds_count 2\n"));
  EXPECT_THAT(r.body, HasSubstr("kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 1\n"));
  EXPECT_THAT(r.body, HasSubstr(
      "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 2\n"));
  EXPECT_THAT(r.body, HasSubstr("sluice_rx_packets_total 42\n"));
}

TEST_F(OperatorHttpTest, HealthCheckNodePortReportsLocalEndpoints) {
  const uint16_t port = FreePort();
  const NamespacedName web{"default", "web"};
  ASSERT_TRUE(http_->SyncHealthCheckPorts({{web, port}}).ok());
  Reply r = Get(port, "/healthz");
  EXPECT_EQ(r.status, 503);  // no local endpoint yet
  EXPECT_THAT(r.body, HasSubstr("\"localEndpoints\": 0"));
  http_->SyncLocalEndpoints({{web, 2}});
  r = Get(port, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n"
            "\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}");
  // Node eligibility is /healthz's business, not the Service's (kube-proxy).
  health_.SetNodeEligible(false);
  EXPECT_EQ(Get(port, "/").status, 200);
  // A proxy that is behind on its updates fails every health check.
  health_.QueuedUpdate(WallClock::now() - std::chrono::seconds(1));
  r = Get(port, "/");
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("\"serviceProxyHealthy\": false"));
  ASSERT_TRUE(http_->SyncHealthCheckPorts({}).ok());
  EXPECT_EQ(Get(port, "/").status, 0);  // closed
}

TEST_F(OperatorHttpTest, AHealthCheckPortInUseIsReportedAndTheOthersServe) {
  const uint16_t busy = FreePort();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(busy);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  const uint16_t good = FreePort();
  const absl::Status s =
      http_->SyncHealthCheckPorts({{{"a", "taken"}, busy}, {{"b", "fine"}, good}});
  close(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("a/taken"));
  EXPECT_EQ(Get(good, "/").status, 503);
}

TEST(OperatorHttpConfig, AMalformedBindAddressIsRejected) {
  ProxyHealth h{std::chrono::seconds(1)};
  ProxyMetrics m;
  OperatorHttp::Config c;
  c.metrics_bind = "localhost";
  c.health_bind = "";
  EXPECT_EQ(OperatorHttp::Start(c, &h, &m, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sluice
