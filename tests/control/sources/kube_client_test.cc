// The API client's configuration (kubeconfig, in-cluster), its backoff, and
// TLS against the fake API server with a throwaway CA: a verified server
// with a client certificate works, a server the CA did not sign is refused.
#include "control/sources/kube_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "tests/control/sources/fake_apiserver.h"
#include "tests/testing/pki.h"
#include "tests/testing/temp_dir.h"

namespace sluice {
namespace {

using nlohmann::json;
using testing::FakeApiServer;
using ::testing::HasSubstr;
using testing::Pki;
using testing::TempDir;

absl::Status Kubeconfig(const TempDir& dir, const std::string& text, KubeApiConfig* out,
                        const std::string& context = "") {
  absl::StatusOr<KubeApiConfig> api = LoadKubeconfig(dir.Write("config", text), context);
  if (api.ok()) *out = *api;
  return api.status();
}

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: admin@lab
clusters:
- name: lab
  cluster:
    server: https://10.10.100.1:6443/
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
- name: other
  cluster:
    server: https://other.example:443
    certificate-authority: certs/ca.crt
contexts:
- name: admin@lab
  context: {cluster: lab, user: admin}
- name: node@other
  context:
    cluster: other
    user: node
    namespace: kube-system
users:
- name: admin
  user:
    token: "abc.def"
- name: node
  user:
    client-certificate: certs/node.crt
    client-key: /etc/keys/node.key
)";

TEST(KubeconfigTest, CurrentContextGivesServerCaAndToken) {
  TempDir dir;
  KubeApiConfig api;
  ASSERT_TRUE(Kubeconfig(dir, kKubeconfig, &api).ok());
  EXPECT_EQ(api.server, "https://10.10.100.1:6443");  // trailing '/' dropped
  EXPECT_EQ(api.ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(api.ca_file, "");
  EXPECT_EQ(api.token, "abc.def");
  EXPECT_EQ(api.client_cert_file, "");
}

TEST(KubeconfigTest, ANamedContextAndPathsRelativeToTheFile) {
  TempDir dir;
  KubeApiConfig api;
  ASSERT_TRUE(Kubeconfig(dir, kKubeconfig, &api, "node@other").ok());
  EXPECT_EQ(api.server, "https://other.example:443");
  EXPECT_EQ(api.ca_file, dir.path() + "/certs/ca.crt");
  EXPECT_EQ(api.client_cert_file, dir.path() + "/certs/node.crt");
  EXPECT_EQ(api.client_key_file, "/etc/keys/node.key");
  EXPECT_EQ(api.token, "");
}

TEST(KubeconfigTest, JsonKubeconfigsReadToo) {
  TempDir dir;
  KubeApiConfig api;
  ASSERT_TRUE(Kubeconfig(dir, R"({"current-context": "c",
      "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:8001"}}],
      "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
      "users": [{"name": "u", "user": {"tokenFile": "token"}}]})",
                         &api)
                  .ok());
  EXPECT_EQ(api.server, "http://127.0.0.1:8001");
  EXPECT_EQ(api.token_file, dir.path() + "/token");
}

TEST(KubeconfigTest, WhatIsNotSupportedIsRefusedNamingTheField) {
  TempDir dir;
  KubeApiConfig api;
  const auto error = [&](const std::string& text, const std::string& context = "") {
    const absl::Status s = Kubeconfig(dir, text, &api, context);
    return s.ok() ? std::string("ok") : std::string(s.message());
  };
  const std::string where = "kubeconfig " + dir.path() + "/config: ";
  std::string insecure = kKubeconfig;
  insecure.replace(insecure.find("    certificate-authority-data"), 0,
                   "    insecure-skip-tls-verify: true\n");
  EXPECT_THAT(error(insecure), HasSubstr(where + "clusters[0].cluster.insecure-skip-tls-verify: "
                                                 "true: refused"));
  std::string exec = kKubeconfig;
  exec.replace(exec.find("    token: \"abc.def\""), 0,
               "    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}\n");
  const absl::Status s = Kubeconfig(dir, exec, &api);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("users[0].user.exec: not supported (exec plugins)"));
  EXPECT_EQ(error(kKubeconfig, "nope"), where + "contexts: no entry named \"nope\"");
  EXPECT_EQ(error("kind: Config\n"), where + "current-context: missing");
  EXPECT_THAT(error("clusters: [\n"), HasSubstr(where + "not valid YAML"));
  std::string keyless = kKubeconfig;
  keyless.erase(keyless.find("    client-key: /etc/keys/node.key\n"));
  EXPECT_EQ(error(keyless, "node@other"),
            where + "users[1].user.client-key: missing (a client certificate needs its key)");
}

TEST(KubeconfigTest, InClusterUsesTheServiceAccount) {
  TempDir dir;
  dir.Write("token", "eyJhbGciOi.sa-token\n");
  dir.Write("ca.crt", "-----BEGIN CERTIFICATE-----\n");
  absl::StatusOr<KubeApiConfig> api = InClusterApiConfig("10.96.0.1", "443", dir.path());
  ASSERT_TRUE(api.ok()) << api.status();
  EXPECT_EQ(api->server, "https://10.96.0.1:443");
  EXPECT_EQ(api->token_file, dir.path() + "/token");
  EXPECT_EQ(api->ca_file, dir.path() + "/ca.crt");
  EXPECT_EQ(InClusterApiConfig("fd00::1", "443", dir.path())->server, "https://[fd00::1]:443");
  EXPECT_EQ(InClusterApiConfig("", "443", dir.path()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(InClusterApiConfig("10.96.0.1", "443", dir.path() + "/none").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(BackoffTest, ExponentialBoundedAndJittered) {
  BackoffOptions o;
  o.initial_seconds = 0.5;
  o.max_seconds = 4;
  o.jitter = 0.5;
  EXPECT_EQ(BackoffDelay(0, o, 0.3), 0);
  EXPECT_DOUBLE_EQ(BackoffDelay(1, o, 0), 0.5);
  EXPECT_DOUBLE_EQ(BackoffDelay(2, o, 0), 1);
  EXPECT_DOUBLE_EQ(BackoffDelay(3, o, 0), 2);
  EXPECT_DOUBLE_EQ(BackoffDelay(4, o, 0), 4);
  EXPECT_DOUBLE_EQ(BackoffDelay(40, o, 0), 4);  // bounded
  EXPECT_DOUBLE_EQ(BackoffDelay(3, o, 0.999999), 2 * (1 - 0.5 * 0.999999));
  EXPECT_GE(BackoffDelay(40, o, 0.999999), 2);  // jitter never more than half off
}

// ---- TLS ------------------------------------------------------------------------

struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  int snapshots = 0;
  std::vector<std::string> problems;
  bool Wait(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), done);
  }
};

ListWatch::Handlers Record(Seen* seen) {
  ListWatch::Handlers h;
  h.on_snapshot = [seen](std::vector<json>, const std::string&) {
    std::lock_guard<std::mutex> lock(seen->mu);
    ++seen->snapshots;
    seen->cv.notify_all();
  };
  h.on_problem = [seen](const absl::Status& s) {
    std::lock_guard<std::mutex> lock(seen->mu);
    seen->problems.push_back(std::string(s.message()));
    seen->cv.notify_all();
  };
  return h;
}

ListWatchOptions Quick() {
  ListWatchOptions o;
  o.backoff.initial_seconds = 0.05;
  o.backoff.max_seconds = 0.2;
  return o;
}

constexpr const char* kEmptyList =
    R"({"status": 200, "body": {"kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": []}})";

TEST(KubeTlsTest, AKubeconfigWithCaAndClientCertificateDataIsVerifiedBothWays) {
  Pki pki;
  ASSERT_TRUE(pki.ok()) << "openssl failed";
  FakeApiServer::Options options;
  options.tls_cert = pki.path("server.crt");
  options.tls_key = pki.path("server.key");
  options.client_ca = pki.path("ca.crt");
  auto server = FakeApiServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Respond("/api/v1/nodes", false, json::parse(kEmptyList));

  const std::string kubeconfig =
      "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
      "clusters:\n- name: k\n  cluster:\n    server: " +
      (*server)->url() +
      "\n    certificate-authority-data: " + absl::Base64Escape(pki.Read("ca.crt")) +
      "\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
      "users:\n- name: u\n  user:\n    client-certificate-data: " +
      absl::Base64Escape(pki.Read("client.crt")) +
      "\n    client-key-data: " + absl::Base64Escape(pki.Read("client.key")) + "\n";
  absl::StatusOr<KubeApiConfig> api = LoadKubeconfig(pki.dir().Write("kubeconfig", kubeconfig));
  ASSERT_TRUE(api.ok()) << api.status();

  Seen seen;
  ListWatch watch(*api, "/api/v1/nodes", "nodes", Quick(), Record(&seen));
  ASSERT_TRUE(watch.Start().ok());
  ASSERT_TRUE(seen.Wait([&] { return seen.snapshots == 1; }));
  watch.Stop();
  const std::vector<json> requests = (*server)->Requests("/api/v1/nodes", false);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0]["client_cn"], "system:node:node-228");
}

TEST(KubeTlsTest, AServerTheCaDidNotSignIsRefused) {
  Pki pki;
  ASSERT_TRUE(pki.ok()) << "openssl failed";
  FakeApiServer::Options options;
  options.tls_cert = pki.path("server.crt");
  options.tls_key = pki.path("server.key");
  auto server = FakeApiServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  (*server)->Respond("/api/v1/nodes", false, json::parse(kEmptyList));

  KubeApiConfig api;
  api.server = (*server)->url();
  api.ca_file = pki.path("other-ca.crt");  // the wrong CA
  Seen seen;
  ListWatch watch(api, "/api/v1/nodes", "nodes", Quick(), Record(&seen));
  ASSERT_TRUE(watch.Start().ok());
  ASSERT_TRUE(seen.Wait([&] { return seen.problems.size() >= 2; }));  // and retried
  watch.Stop();
  EXPECT_EQ(seen.snapshots, 0);
  EXPECT_THAT(seen.problems[0], HasSubstr("nodes: list: SSL certificate problem"));
  EXPECT_TRUE((*server)->Requests().empty());  // nothing was sent
  EXPECT_GE(watch.stats().request_errors, 2u);

  // The in-cluster service account against the same server, with the right
  // CA, sends its token.
  TempDir sa;
  sa.Write("token", "sa-token\n");
  sa.Write("ca.crt", pki.Read("ca.crt"));
  absl::StatusOr<KubeApiConfig> in_cluster =
      InClusterApiConfig("127.0.0.1", std::to_string((*server)->port()), sa.path());
  ASSERT_TRUE(in_cluster.ok()) << in_cluster.status();
  Seen good;
  ListWatch verified(*in_cluster, "/api/v1/nodes", "nodes", Quick(), Record(&good));
  ASSERT_TRUE(verified.Start().ok());
  ASSERT_TRUE(good.Wait([&] { return good.snapshots == 1; }));
  verified.Stop();
  const std::vector<json> lists = (*server)->Requests("/api/v1/nodes", false);
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0]["authorization"], "Bearer sa-token");
}

}  // namespace
}  // namespace sluice
