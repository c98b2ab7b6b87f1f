#include "tests/control/sources/fake_apiserver.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace sluice::testing {

absl::StatusOr<std::unique_ptr<FakeApiServer>> FakeApiServer::Start(const Options& options) {
  std::unique_ptr<FakeApiServer> server(new FakeApiServer());
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    return absl::InternalError(std::string("pipe2: ") + std::strerror(errno));
  }
  std::vector<std::string> args = {"/usr/bin/python3", SLUICE_FAKE_APISERVER};
  if (!options.tls_cert.empty()) {
    args.insert(args.end(), {"--tls-cert", options.tls_cert, "--tls-key", options.tls_key});
    if (!options.client_ca.empty()) args.insert(args.end(), {"--client-ca", options.client_ca});
    server->tls_ = true;
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  const int spawned = posix_spawn(&server->pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  server->stdin_fd_ = in[1];
  server->stdout_fd_ = out[0];
  if (spawned != 0) {
    server->pid_ = -1;
    return absl::InternalError(std::string("posix_spawn: ") + std::strerror(spawned));
  }
  server->reader_ = std::thread([s = server.get()] { s->ReadLoop(); });
  std::unique_lock<std::mutex> lock(server->mu_);
  const bool ready = server->cv_.wait_for(lock, std::chrono::seconds(10), [&] {
    for (const std::string& line : server->lines_) {
      if (line.rfind("READY ", 0) == 0) {
        server->port_ = std::atoi(line.c_str() + 6);
        return true;
      }
    }
    return false;
  });
  lock.unlock();
  if (!ready) return absl::InternalError("fake API server did not start");
  return server;
}

FakeApiServer::~FakeApiServer() {
  if (stdin_fd_ >= 0) {
    const char quit[] = "{\"op\": \"quit\"}\n";
    (void)!write(stdin_fd_, quit, sizeof(quit) - 1);
    close(stdin_fd_);
  }
  if (pid_ > 0) {
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 300 && !exited; ++i) {
      exited = waitpid(pid_, &status, WNOHANG) == pid_;
      if (!exited) usleep(10000);
    }
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  if (reader_.joinable()) reader_.join();  // stdout reaches EOF with the process
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

std::string FakeApiServer::url() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

void FakeApiServer::ReadLoop() {
  std::string buffer;
  char chunk[4096];
  for (;;) {
    const ssize_t n = read(stdout_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(buffer.substr(0, newline));
      buffer.erase(0, newline + 1);
      cv_.notify_all();
    }
  }
}

bool FakeApiServer::WaitLine(const std::string& line, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    for (const std::string& l : lines_)
      if (l == line) return true;
    return false;
  });
}

void FakeApiServer::Send(const nlohmann::json& command, bool wait_for_ack) const {
  const std::string text = command.dump() + "\n";
  int number;
  {
    std::lock_guard<std::mutex> lock(send_mu_);
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(stdin_fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
    number = ++sent_;
  }
  if (wait_for_ack) WaitLine("ACK " + std::to_string(number), std::chrono::seconds(10));
}

void FakeApiServer::Sync() const { Send({{"op", "sync"}}); }

void FakeApiServer::Respond(const std::string& path, bool watch, const nlohmann::json& response) {
  Send({{"op", "respond"}, {"path", path}, {"watch", watch}, {"response", response}});
}

void FakeApiServer::Open(const std::string& gate) { Send({{"op", "open"}, {"gate", gate}}); }

void FakeApiServer::Push(const std::string& path, const nlohmann::json& events) {
  Send({{"op", "push"}, {"path", path}, {"events", events}}, /*wait_for_ack=*/false);
}

std::vector<nlohmann::json> FakeApiServer::Requests() const {
  Sync();
  std::lock_guard<std::mutex> lock(mu_);
  return RequestsLocked();
}

std::vector<nlohmann::json> FakeApiServer::Requests(const std::string& path, bool watch) const {
  Sync();
  std::lock_guard<std::mutex> lock(mu_);
  return RequestsLocked(path, watch);
}

std::vector<nlohmann::json> FakeApiServer::RequestsLocked() const {
  static const std::string kPrefix = "REQUEST ";
  std::vector<nlohmann::json> out;
  for (const std::string& line : lines_) {
    if (line.rfind(kPrefix, 0) == 0)
      out.push_back(nlohmann::json::parse(line.substr(kPrefix.size())));
  }
  return out;
}

std::vector<nlohmann::json> FakeApiServer::RequestsLocked(const std::string& path,
                                                          bool watch) const {
  std::vector<nlohmann::json> out;
  for (nlohmann::json& r : RequestsLocked()) {
    if (r["path"] == path && r["watch"] == watch) out.push_back(std::move(r));
  }
  return out;
}

// The count and the wait share one hold of the lock, so that a request line
// arriving between them cannot be missed.
bool FakeApiServer::WaitForRequests(const std::string& path, bool watch, size_t n,
                                    std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return RequestsLocked(path, watch).size() >= n; });
}

std::vector<std::string> FakeApiServer::Lines(const std::string& prefix) const {
  Sync();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const std::string& line : lines_) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line.substr(prefix.size()));
  }
  return out;
}

}  // namespace sluice::testing
