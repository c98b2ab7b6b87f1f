#include "control/operator_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace sluice {
namespace {

double UnixSeconds(WallClock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// Go's time.Time String() for a UTC time: "2006-01-02 15:04:05.999999999
// +0000 UTC", the fraction without trailing zeros (absent when zero).
std::string GoTime(WallClock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ns / 1000000000);
  long frac = static_cast<long>(ns % 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char base[32];
  std::strftime(base, sizeof(base), "%Y-%m-%d %H:%M:%S", &tm);
  std::string out = base;
  if (frac != 0) {
    std::string f = absl::StrFormat("%09d", frac);
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out + " +0000 UTC";
}

// A double as Prometheus' Go client prints it: the shortest text that reads
// back as the same value.
std::string Num(double v) {
  for (int precision = 1; precision < 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) return s;
  }
  return absl::StrFormat("%.17g", v);
}

std::vector<double> ExponentialBuckets(double start, double factor, int n) {
  std::vector<double> b;
  for (int i = 0; i < n; ++i, start *= factor) b.push_back(start);
  return b;
}

std::vector<double> LinearBuckets(double start, double width, int n) {
  std::vector<double> b;
  for (int i = 0; i < n; ++i) b.push_back(start + width * i);
  return b;
}

std::vector<double> NetworkProgrammingBuckets() {
  std::vector<double> b;
  for (const auto& part : {LinearBuckets(0.25, 0.25, 2), LinearBuckets(1, 1, 59),
                           LinearBuckets(60, 5, 12), LinearBuckets(120, 30, 7)})
    b.insert(b.end(), part.begin(), part.end());
  return b;
}

absl::StatusOr<sockaddr_in> ParseBind(const std::string& bind) {
  const size_t colon = bind.rfind(':');
  uint32_t port = 0;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  const std::string host = colon == std::string::npos ? "" : bind.substr(0, colon);
  if (colon == std::string::npos || !absl::SimpleAtoi(bind.substr(colon + 1), &port) ||
      port > 65535 || inet_pton(AF_INET, host.empty() ? "0.0.0.0" : host.c_str(), &sa.sin_addr) != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("bind address \"", bind, "\": want IPV4:PORT, e.g. 0.0.0.0:10249"));
  sa.sin_port = htons(static_cast<uint16_t>(port));
  return sa;
}

}  // namespace

// ---- ProxyHealth ----

void ProxyHealth::QueuedUpdate(WallClock::time_point now) {
  std::lock_guard<std::mutex> l(mu_);
  if (!pending_) {
    pending_ = true;
    oldest_pending_ = now;
  }
}

void ProxyHealth::Updated(WallClock::time_point now) {
  std::lock_guard<std::mutex> l(mu_);
  pending_ = false;
  updated_once_ = true;
  last_updated_ = now;
}

void ProxyHealth::SetNodeEligible(bool eligible) {
  std::lock_guard<std::mutex> l(mu_);
  node_eligible_ = eligible;
}

ProxyHealth::Verdict ProxyHealth::Check(WallClock::time_point now) const {
  std::lock_guard<std::mutex> l(mu_);
  Verdict v;
  v.node_eligible = node_eligible_;
  v.last_updated = last_updated_;
  // Healthy while starting up and while nothing waits longer than the timeout.
  v.healthy = !pending_ || now - oldest_pending_ < timeout_;
  return v;
}

std::pair<int, std::string> ProxyHealth::Healthz(WallClock::time_point now) const {
  const Verdict v = Check(now);
  const bool ok = v.healthy && v.node_eligible;
  return {ok ? 200 : 503,
          absl::StrFormat(R"({"lastUpdated": "%s","currentTime": "%s", "nodeEligible": %s})",
                          GoTime(ok ? now : v.last_updated), GoTime(now),
                          v.node_eligible ? "true" : "false")};
}

std::pair<int, std::string> ProxyHealth::Livez(WallClock::time_point now) const {
  const Verdict v = Check(now);
  return {v.healthy ? 200 : 503,
          absl::StrFormat(R"({"lastUpdated": "%s","currentTime": "%s"})",
                          GoTime(v.healthy ? now : v.last_updated), GoTime(now))};
}

// ---- metrics ----

void Histogram::Observe(double v) {
  ++count_;
  sum_ += v;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (v <= bounds_[i]) {
      ++counts_[i];
      break;
    }
  }
}

std::string Histogram::Render(const std::string& name, const std::string& help) const {
  std::string out = absl::StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(&out, name, "_bucket{le=\"", Num(bounds_[i]), "\"} ", cumulative, "\n");
  }
  absl::StrAppend(&out, name, "_bucket{le=\"+Inf\"} ", count_, "\n", name, "_sum ", Num(sum_),
                  "\n", name, "_count ", count_, "\n");
  return out;
}

ProxyMetrics::ProxyMetrics()
    : sync_(ExponentialBuckets(0.001, 2, 15)), programming_(NetworkProgrammingBuckets()) {}

void ProxyMetrics::ObserveSync(double seconds, WallClock::time_point at) {
  std::lock_guard<std::mutex> l(mu_);
  sync_.Observe(seconds);
  last_sync_unix_ = UnixSeconds(at);
}

void ProxyMetrics::ObserveNetworkProgramming(double seconds) {
  std::lock_guard<std::mutex> l(mu_);
  programming_.Observe(seconds);
}

void ProxyMetrics::CountSyncFailure() {
  std::lock_guard<std::mutex> l(mu_);
  ++sync_failures_;
}

void ProxyMetrics::CountChanges(uint64_t services, uint64_t endpoints, WallClock::time_point at) {
  std::lock_guard<std::mutex> l(mu_);
  service_changes_ += services;
  endpoint_changes_ += endpoints;
  last_queued_unix_ = UnixSeconds(at);
}

void ProxyMetrics::SetNoLocalEndpoints(int internal, int external) {
  std::lock_guard<std::mutex> l(mu_);
  no_local_internal_ = internal;
  no_local_external_ = external;
}

std::string ProxyMetrics::Render() const {
  std::lock_guard<std::mutex> l(mu_);
  std::string out =
      sync_.Render("kubeproxy_sync_proxy_rules_duration_seconds",
                   "SyncProxyRules latency in seconds (a batch sent to the dataplane until "
                   "acknowledged)");
  out += programming_.Render("kubeproxy_network_programming_duration_seconds",
                             "In Cluster Network Programming Latency in seconds");
  absl::StrAppend(
      &out,
      "# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were "
      "successfully synced\n# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n"
      "kubeproxy_sync_proxy_rules_last_timestamp_seconds ",
      Num(last_sync_unix_), "\n",
      "# HELP kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds The last time a sync of "
      "proxy rules was queued\n# TYPE kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds "
      "gauge\nkubeproxy_sync_proxy_rules_last_queued_timestamp_seconds ",
      Num(last_queued_unix_), "\n");
  absl::StrAppend(
      &out,
      "# HELP kubeproxy_sync_proxy_rules_service_changes_total Cumulative proxy rules Service "
      "changes\n# TYPE kubeproxy_sync_proxy_rules_service_changes_total counter\n"
      "kubeproxy_sync_proxy_rules_service_changes_total ",
      service_changes_, "\n",
      "# HELP kubeproxy_sync_proxy_rules_endpoint_changes_total Cumulative proxy rules Endpoint "
      "changes\n# TYPE kubeproxy_sync_proxy_rules_endpoint_changes_total counter\n"
      "kubeproxy_sync_proxy_rules_endpoint_changes_total ",
      endpoint_changes_, "\n");
  absl::StrAppend(
      &out,
      "# HELP kubeproxy_sync_proxy_rules_no_local_endpoints_total Number of services with a "
      "Local traffic policy and no endpoints\n# TYPE "
      "kubeproxy_sync_proxy_rules_no_local_endpoints_total gauge\n"
      "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"internal\"} ",
      no_local_internal_, "\n",
      "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} ",
      no_local_external_, "\n");
  absl::StrAppend(&out,
                  "# HELP sluice_sync_failures_total Batches the dataplane rejected or did not "
                  "answer\n# TYPE sluice_sync_failures_total counter\nsluice_sync_failures_total ",
                  sync_failures_, "\n");
  return out;
}

// ---- HTTP servers ----

struct OperatorHttp::Daemon {
  using Handler = std::function<std::pair<int, std::string>(const std::string& url)>;
  Handler handler;
  std::string content_type;
  MHD_Daemon* d = nullptr;
  uint16_t port = 0;

  ~Daemon() {
    if (d != nullptr) MHD_stop_daemon(d);
  }

  static MHD_Result Answer(void* cls, MHD_Connection* c, const char* url, const char* method,
                           const char*, const char*, size_t* upload_size, void** state) {
    auto* self = static_cast<Daemon*>(cls);
    // libmicrohttpd calls twice for a request: once with the headers (state
    // still null), then to answer.
    if (*state == nullptr) {
      *state = self;
      return MHD_YES;
    }
    std::pair<int, std::string> r;
    if (std::strcmp(method, "GET") != 0 && std::strcmp(method, "HEAD") != 0) {
      r = {405, "method not allowed\n"};
    } else if (*upload_size != 0) {
      *upload_size = 0;
      return MHD_YES;
    } else {
      r = self->handler(url);
    }
    MHD_Response* resp = MHD_create_response_from_buffer(r.second.size(), r.second.data(),
                                                         MHD_RESPMEM_MUST_COPY);
    if (resp == nullptr) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", self->content_type.c_str());
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    const MHD_Result q = MHD_queue_response(c, static_cast<unsigned>(r.first), resp);
    MHD_destroy_response(resp);
    return q;
  }

  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const sockaddr_in& sa, Handler h,
                                                       std::string content_type) {
    auto self = std::make_unique<Daemon>();
    self->handler = std::move(h);
    self->content_type = std::move(content_type);
    self->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr,
                               nullptr, &Answer, self.get(), MHD_OPTION_SOCK_ADDR, &sa,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT,
                               64u, MHD_OPTION_END);
    if (self->d == nullptr) {
      char ip[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
      return absl::UnavailableError(
          absl::StrFormat("cannot listen on %s:%u", ip, unsigned{ntohs(sa.sin_port)}));
    }
    const MHD_DaemonInfo* info = MHD_get_daemon_info(self->d, MHD_DAEMON_INFO_LISTEN_FD);
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    if (info != nullptr && getsockname(info->listen_fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0)
      self->port = ntohs(bound.sin_port);
    return self;
  }
};

absl::StatusOr<std::unique_ptr<OperatorHttp>> OperatorHttp::Start(
    const Config& config, ProxyHealth* health, ProxyMetrics* metrics,
    std::function<std::string()> extra_metrics) {
  std::unique_ptr<OperatorHttp> h(new OperatorHttp());
  h->config_ = config;
  h->health_ = health;
  h->metrics_ = metrics;
  h->extra_metrics_ = std::move(extra_metrics);
  OperatorHttp* self = h.get();
  if (!config.metrics_bind.empty()) {
    auto sa = ParseBind(config.metrics_bind);
    if (!sa.ok()) return sa.status();
    auto d = Daemon::Start(
        *sa,
        [self](const std::string& url) -> std::pair<int, std::string> {
          if (url != "/metrics") return {404, "404 page not found\n"};
          std::string body = self->metrics_->Render();
          if (self->extra_metrics_) body += self->extra_metrics_();
          return {200, body};
        },
        "text/plain; version=0.0.4; charset=utf-8");
    if (!d.ok()) return d.status();
    h->metrics_port_ = (*d)->port;
    h->metrics_daemon_ = *std::move(d);
  }
  if (!config.health_bind.empty()) {
    auto sa = ParseBind(config.health_bind);
    if (!sa.ok()) return sa.status();
    auto d = Daemon::Start(
        *sa,
        [self](const std::string& url) -> std::pair<int, std::string> {
          if (url == "/healthz") return self->health_->Healthz(WallClock::now());
          if (url == "/livez") return self->health_->Livez(WallClock::now());
          return {404, "404 page not found\n"};
        },
        "application/json");
    if (!d.ok()) return d.status();
    h->health_port_ = (*d)->port;
    h->health_daemon_ = *std::move(d);
  }
  // Validated once here: SyncHealthCheckPorts reuses it.
  if (absl::StatusOr<sockaddr_in> sa = ParseBind(config.health_check_address + ":0"); !sa.ok())
    return sa.status();
  return h;
}

OperatorHttp::~OperatorHttp() {
  // Stop every server (joining its thread) before the state it reads goes.
  std::map<NamespacedName, HealthCheck> checks;
  {
    std::lock_guard<std::mutex> l(mu_);
    checks.swap(checks_);
  }
  checks.clear();
  metrics_daemon_.reset();
  health_daemon_.reset();
}

std::pair<int, std::string> OperatorHttp::ServiceHealth(const NamespacedName& n) const {
  int count = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = checks_.find(n);
    if (it != checks_.end()) count = it->second.local_endpoints;
  }
  const bool proxy_healthy = health_->Check(WallClock::now()).healthy;
  return {count != 0 && proxy_healthy ? 200 : 503,
          absl::StrFormat("{\n\t\"service\": {\n\t\t\"namespace\": \"%s\",\n\t\t\"name\": "
                          "\"%s\"\n\t},\n\t\"localEndpoints\": %d,\n\t\"serviceProxyHealthy\": "
                          "%s\n}",
                          n.namespace_name, n.name, count, proxy_healthy ? "true" : "false")};
}

absl::Status OperatorHttp::SyncHealthCheckPorts(const std::map<NamespacedName, uint16_t>& ports) {
  std::vector<std::unique_ptr<Daemon>> closing;
  std::vector<std::string> failed;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto it = checks_.begin(); it != checks_.end();) {
      auto want = ports.find(it->first);
      if (want == ports.end() || want->second != it->second.port) {
        closing.push_back(std::move(it->second.daemon));
        it = checks_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Daemons are stopped outside the lock: their threads may be waiting for it.
  closing.clear();
  for (const auto& [name, port] : ports) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (checks_.count(name) != 0) continue;
    }
    sockaddr_in sa = *ParseBind(absl::StrCat(config_.health_check_address, ":", port));
    NamespacedName n = name;
    auto d = Daemon::Start(
        sa, [this, n](const std::string&) { return ServiceHealth(n); }, "application/json");
    if (!d.ok()) {
      failed.push_back(absl::StrCat(name.namespace_name, "/", name.name, ": ", d.status().message()));
      continue;
    }
    std::lock_guard<std::mutex> l(mu_);
    HealthCheck& hc = checks_[name];
    hc.port = port;
    hc.daemon = *std::move(d);
  }
  if (!failed.empty())
    return absl::UnavailableError(
        absl::StrCat("healthCheckNodePort: ", absl::StrJoin(failed, "; ")));
  return absl::OkStatus();
}

void OperatorHttp::SyncLocalEndpoints(const std::map<NamespacedName, int>& counts) {
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [name, hc] : checks_) {
    auto it = counts.find(name);
    hc.local_endpoints = it == counts.end() ? 0 : it->second;
  }
}

}  // namespace sluice
