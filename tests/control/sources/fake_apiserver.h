// Runs tests/control/sources/fake_apiserver.py (a scripted stand-in for the
// Kubernetes API server's list and watch, on 127.0.0.1 and a free port the
// server picks) for one test. (A test's temporary files and certificates:
// tests/testing/temp_dir.h, tests/testing/pki.h.)
//
// Errors: Start() returns Internal when the process cannot be started or
// does not say READY within 10 s. Waits return false on timeout.
//
// Cleanup: the destructor asks the server to quit, waits up to 3 s, then
// kills it. Should the test process die instead, the server sees EOF on its
// stdin and exits (and it exits by itself after 120 s in any case).
//
// Concurrency: one reader thread collects the server's stdout; every
// method may be called from any thread.
#ifndef SLUICE_TESTS_CONTROL_SOURCES_FAKE_APISERVER_H_
#define SLUICE_TESTS_CONTROL_SOURCES_FAKE_APISERVER_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::testing {

class FakeApiServer {
 public:
  struct Options {
    std::string tls_cert, tls_key, client_ca;  // empty: plain HTTP
  };
  static absl::StatusOr<std::unique_ptr<FakeApiServer>> Start(const Options& options);
  static absl::StatusOr<std::unique_ptr<FakeApiServer>> Start() { return Start(Options()); }
  ~FakeApiServer();

  int port() const { return port_; }
  std::string url() const;  // http(s)://127.0.0.1:<port>

  // Queues `response` (see fake_apiserver.py) for the next GET of `path`.
  void Respond(const std::string& path, bool watch, const nlohmann::json& response);
  void Open(const std::string& gate);
  // Hands `events` (a JSON array of watch events) to the watches of `path`
  // (see "Pushed events" in fake_apiserver.py). Returns once the command is
  // written, without waiting for the server's ACK, so that a caller timing
  // the event starts its clock before this and loses nothing to the wait.
  void Push(const std::string& path, const nlohmann::json& events);

  // The requests seen so far (path, query, watch, authorization, client_cn):
  // every request the server had received before the call (Sync first).
  std::vector<nlohmann::json> Requests() const;
  std::vector<nlohmann::json> Requests(const std::string& path, bool watch) const;
  // Returns once every line the server printed before it read this call's
  // command has been collected. The server prints a request's REQUEST line
  // before answering it, but the line reaches this process through a pipe
  // and a reader thread, so a test that has seen the answer's effect (an
  // update from the source) may otherwise look before the line is there.
  void Sync() const;
  // Waits until `n` requests of path/watch have been seen.
  bool WaitForRequests(const std::string& path, bool watch, size_t n,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // The lines so far with `prefix` (e.g. "MISMATCH "), Sync first.
  std::vector<std::string> Lines(const std::string& prefix) const;

 private:
  FakeApiServer() = default;
  void Send(const nlohmann::json& command, bool wait_for_ack = true) const;
  void ReadLoop();
  bool WaitLine(const std::string& line, std::chrono::milliseconds timeout) const;
  std::vector<nlohmann::json> RequestsLocked() const;  // mu_ held
  std::vector<nlohmann::json> RequestsLocked(const std::string& path, bool watch) const;

  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
  bool tls_ = false;
  mutable std::mutex send_mu_;  // a command's write and its number
  mutable int sent_ = 0;
  std::thread reader_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> lines_;
};

}  // namespace sluice::testing

#endif  // SLUICE_TESTS_CONTROL_SOURCES_FAKE_APISERVER_H_
