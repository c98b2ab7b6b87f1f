#include "tests/testing/etcd_server.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "control/sources/etcd_gateway.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kHealthyWithin = std::chrono::seconds(15);
constexpr long kCallTimeoutMs = 5000;

// A port the kernel considers free on 127.0.0.1 right now. etcd binds it a
// moment later; Start() retries with new ports if one was taken meanwhile.
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, "bind 127.0.0.1:0");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string Url(int port, bool tls = false) {
  return absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", port);
}

size_t Collect(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One blocking request; the body in *answer, the HTTP status returned.
absl::StatusOr<long> Request(const std::string& url, const std::string* post_body,
                             std::string* answer, const std::string& token = "") {
  CURL* easy = curl_easy_init();
  if (easy == nullptr) return absl::InternalError("curl_easy_init");
  char error[CURL_ERROR_SIZE] = {};
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (!token.empty()) {
    headers = curl_slist_append(headers, absl::StrCat("Authorization: ", token).c_str());
  }
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, kCallTimeoutMs);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, answer);
  if (post_body != nullptr) {
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, post_body->c_str());
  }
  const CURLcode code = curl_easy_perform(easy);
  long http = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  if (code != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(url, ": ", error[0] != '\0' ? error : curl_easy_strerror(code)));
  }
  return http;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(std::vector<std::string> extra_args) {
  return Start(std::move(extra_args), Tls());
}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(std::vector<std::string> extra_args,
                                                              Tls tls) {
  const char* from_env = std::getenv("SLUICE_ETCD");
  const std::string binary =
      from_env != nullptr && from_env[0] != '\0' ? from_env : "/usr/bin/etcd";
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no etcd binary at ", binary,
                     ": install Debian's etcd-server (scripts/deps.sh does), or set SLUICE_ETCD"));
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::unique_ptr<EtcdServer> server(new EtcdServer());
  server->binary_ = binary;
  server->extra_args_ = std::move(extra_args);
  server->tls_ = !tls.cert_file.empty();
  server->tls_files_ = std::move(tls);
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp", "/sluice-etcd-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return absl::ErrnoToStatus(errno, "mkdtemp");
  server->dir_ = pattern;

  // The reaper: removes the folder if this process dies without doing so.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::ErrnoToStatus(errno, "pipe2");
  const std::string dir = server->dir_;
  const pid_t reaper = fork();
  if (reaper < 0) return absl::ErrnoToStatus(errno, "fork");
  if (reaper == 0) {
    const int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    close(fds[1]);
    if (fds[0] != 3) dup2(fds[0], 3);
    close_range(4, ~0U, 0);  // other servers' pipes among them
    fds[0] = 3;
    pid_t etcd = -1;
    char command = 0;
    for (;;) {
      const ssize_t n = read(fds[0], &command, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      if (command == 'D') _exit(0);  // cleaned up by the test itself
      if (command == 'P' && read(fds[0], &etcd, sizeof(etcd)) != sizeof(etcd)) break;
    }
    if (etcd > 0) {
      kill(etcd, SIGKILL);
      for (int i = 0; i < 40 && kill(etcd, 0) == 0; ++i) usleep(50 * 1000);
    }
    execl("/bin/rm", "rm", "-rf", "--", dir.c_str(), static_cast<char*>(nullptr));
    _exit(1);
  }
  close(fds[0]);
  server->reaper_pid_ = reaper;
  server->reaper_fd_ = fds[1];

  absl::Status started;
  for (int attempt = 0; attempt < 3; ++attempt) {
    absl::StatusOr<int> source = FreePort();
    absl::StatusOr<int> admin = FreePort();
    absl::StatusOr<int> peer = FreePort();
    if (!source.ok()) return source.status();
    if (!admin.ok()) return admin.status();
    if (!peer.ok()) return peer.status();
    if (*source == *admin || *source == *peer || *admin == *peer) continue;
    server->source_port_ = *source;
    server->admin_port_ = *admin;
    server->peer_port_ = *peer;
    started = server->Restart(true);
    if (started.ok()) return server;
  }
  return started;
}

EtcdServer::~EtcdServer() {
  Kill();
  if (!dir_.empty()) {
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
    if (error)
      std::fprintf(stderr, "etcd_server: cannot remove %s: %s\n", dir_.c_str(),
                   error.message().c_str());
  }
  if (reaper_fd_ >= 0) {
    const char done = 'D';
    (void)!write(reaper_fd_, &done, 1);
    close(reaper_fd_);
  }
  if (reaper_pid_ > 0) waitpid(reaper_pid_, nullptr, 0);
}

void EtcdServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

absl::Status EtcdServer::Restart(bool serve_source_port) {
  Kill();
  absl::Status launched = Launch(serve_source_port);
  if (!launched.ok()) return launched;
  return WaitHealthy();
}

absl::Status EtcdServer::Launch(bool serve_source_port) {
  std::vector<std::string> args = {
      binary_,
      "--name=sluice-test",
      absl::StrCat("--data-dir=", dir_, "/data"),
      absl::StrCat("--listen-client-urls=",
                   serve_source_port ? absl::StrCat(Url(source_port_, tls_), ",") : "",
                   Url(admin_port_)),
      absl::StrCat("--advertise-client-urls=", Url(admin_port_)),
      absl::StrCat("--listen-peer-urls=", Url(peer_port_)),
      absl::StrCat("--initial-advertise-peer-urls=", Url(peer_port_)),
      absl::StrCat("--initial-cluster=sluice-test=", Url(peer_port_)),
      "--logger=zap",
      "--log-level=warn",
  };
  if (tls_) {
    args.push_back(absl::StrCat("--cert-file=", tls_files_.cert_file));
    args.push_back(absl::StrCat("--key-file=", tls_files_.key_file));
    if (!tls_files_.trusted_ca_file.empty()) {
      args.push_back(absl::StrCat("--trusted-ca-file=", tls_files_.trusted_ca_file));
    }
    if (tls_files_.client_cert_auth) args.push_back("--client-cert-auth");
  }
  for (const std::string& arg : extra_args_) args.push_back(arg);
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const std::string log = absl::StrCat(dir_, "/etcd.log");
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork");
  if (pid == 0) {
    // etcd dies with the test process, whatever ends it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    const int null_fd = open("/dev/null", O_RDONLY);
    const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd < 0 || log_fd < 0) _exit(1);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    close_range(3, ~0U, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  const char command = 'P';
  if (write(reaper_fd_, &command, 1) != 1 || write(reaper_fd_, &pid, sizeof(pid)) != sizeof(pid)) {
    return absl::ErrnoToStatus(errno, "telling the reaper");
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::WaitHealthy() {
  const Clock::time_point deadline = Clock::now() + kHealthyWithin;
  std::string last;
  while (Clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("etcd exited (status ", status,
                                                 ") before it was healthy; its log:\n", LogTail()));
    }
    std::string answer;
    absl::StatusOr<long> http =
        Request(absl::StrCat(admin_endpoint(), "/health"), nullptr, &answer);
    if (http.ok() && *http == 200 && answer.find("\"health\":\"true\"") != std::string::npos) {
      return absl::OkStatus();
    }
    last = http.ok() ? answer : std::string(http.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Kill();
  return absl::UnavailableError(absl::StrCat("etcd not healthy within 15 s (last answer: ", last,
                                             "); its log:\n", LogTail()));
}

std::string EtcdServer::source_endpoint() const { return Url(source_port_, tls_); }
std::string EtcdServer::admin_endpoint() const { return Url(admin_port_); }

namespace {

constexpr char kRootPassword[] = "sluice-test-root";

}  // namespace

absl::StatusOr<int64_t> EtcdServer::KvCall(const char* path, const std::string& body) {
  // As root once auth is on; a token etcd forgot (a restart) is renewed once.
  for (int attempt = 0;; ++attempt) {
    if (auth_ && root_token_.empty()) {
      std::string answer;
      const std::string login = AuthenticateRequestBody("root", kRootPassword);
      absl::StatusOr<long> http =
          Request(absl::StrCat(admin_endpoint(), "/v3/auth/authenticate"), &login, &answer);
      if (!http.ok()) return http.status();
      if (*http != 200) return GatewayError(*http, answer);
      absl::StatusOr<std::string> token = ParseAuthenticateResponse(answer);
      if (!token.ok()) return token.status();
      root_token_ = *token;
    }
    std::string answer;
    absl::StatusOr<long> http =
        Request(absl::StrCat(admin_endpoint(), path), &body, &answer, root_token_);
    if (!http.ok()) return http.status();
    if (*http == 401 && auth_ && attempt == 0) {
      root_token_.clear();
      continue;
    }
    if (*http != 200) return GatewayError(*http, answer);
    return ParseHeaderRevision(answer);
  }
}

absl::Status EtcdServer::AuthCall(const char* path, const std::string& body) {
  absl::StatusOr<int64_t> done = KvCall(path, body);
  if (!done.ok())
    return absl::Status(done.status().code(), absl::StrCat(path, ": ", done.status().message()));
  return absl::OkStatus();
}

absl::Status EtcdServer::EnableAuth(std::string_view name, std::string_view password,
                                    std::string_view prefix) {
  using Json = nlohmann::json;
  const std::string key = std::string(prefix) + "/";
  const std::string role = std::string(name) + "-role";
  const std::pair<const char*, Json> calls[] = {
      {"/v3/auth/user/add", {{"name", "root"}, {"password", kRootPassword}}},
      {"/v3/auth/role/add", {{"name", "root"}}},
      {"/v3/auth/user/grant", {{"user", "root"}, {"role", "root"}}},
      {"/v3/auth/user/add", {{"name", name}, {"password", password}}},
      {"/v3/auth/role/add", {{"name", role}}},
      {"/v3/auth/role/grant",
       {{"name", role},
        {"perm",
         {{"permType", "READ"},
          {"key", absl::Base64Escape(key)},
          {"range_end", absl::Base64Escape(PrefixRangeEnd(key))}}}}},
      {"/v3/auth/user/grant", {{"user", name}, {"role", role}}},
      {"/v3/auth/enable", Json::object()},
  };
  for (const auto& [path, body] : calls) {
    if (absl::Status done = AuthCall(path, body.dump()); !done.ok()) return done;
  }
  auth_ = true;
  root_token_.clear();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> EtcdServer::Put(std::string_view key, std::string_view value) {
  return KvCall("/v3/kv/put", PutRequestBody(key, value));
}

absl::StatusOr<int64_t> EtcdServer::Delete(std::string_view key) {
  return KvCall("/v3/kv/deleterange", DeleteRequestBody(key));
}

absl::StatusOr<int64_t> EtcdServer::Compact(int64_t revision) {
  return KvCall("/v3/kv/compaction", CompactionRequestBody(revision));
}

std::string EtcdServer::LogTail() const {
  std::ifstream in(absl::StrCat(dir_, "/etcd.log"));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  constexpr size_t kShown = 20;
  const size_t from = lines.size() > kShown ? lines.size() - kShown : 0;
  return absl::StrJoin(lines.begin() + from, lines.end(), "\n");
}

}  // namespace sluice::testing
