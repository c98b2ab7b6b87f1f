// The Kubernetes source against the fake API server (fake_apiserver.py):
// list then watch, paging, bookmarks, 410 relists, malformed events, dropped
// streams, and what reaches the consumer for Services, EndpointSlices and
// Nodes.
#include "control/sources/kube_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control/cluster_file.h"
#include "tests/control/sources/fake_apiserver.h"

namespace sluice {
namespace {

using nlohmann::json;
using testing::FakeApiServer;
using ::testing::HasSubstr;

constexpr const char* kServices = "/api/v1/services";
constexpr const char* kSlices = "/apis/discovery.k8s.io/v1/endpointslices";
constexpr const char* kNodes = "/api/v1/nodes";

// What the source delivered, for the test thread to wait on.
class Collector {
 public:
  void Update(KubeUpdate update) {
    std::lock_guard<std::mutex> lock(mu_);
    updates_.push_back(std::move(update));
    cv_.notify_all();
  }
  void Problem(const absl::Status& problem) {
    std::lock_guard<std::mutex> lock(mu_);
    problems_.push_back(std::string(problem.message()));
    cv_.notify_all();
  }
  bool WaitUpdates(size_t n) {
    return Wait([&] { return updates_.size() >= n; });
  }
  bool WaitProblem(const std::string& part) {
    return Wait([&] {
      for (const std::string& p : problems_)
        if (p.find(part) != std::string::npos) return true;
      return false;
    });
  }
  std::vector<KubeUpdate> updates() {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_;
  }
  std::vector<std::string> problems() {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }

 private:
  bool Wait(const std::function<bool()>& done) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), done);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<KubeUpdate> updates_;
  std::vector<std::string> problems_;
};

json ServiceObject(const std::string& name, const std::string& ip, int port,
                   const std::string& rv) {
  return {{"metadata", {{"name", name}, {"namespace", "default"}, {"resourceVersion", rv}}},
          {"spec",
           {{"type", "ClusterIP"},
            {"clusterIP", ip},
            {"ports", json::array({{{"name", "http"}, {"protocol", "TCP"}, {"port", port}}})}}}};
}

json List(const char* kind, json items, const std::string& rv, const std::string& next = "") {
  json metadata = {{"resourceVersion", rv}};
  if (!next.empty()) metadata["continue"] = next;
  return {
      {"status", 200},
      {"body", {{"kind", kind}, {"apiVersion", "v1"}, {"metadata", metadata}, {"items", items}}}};
}

json Event(const char* type, const json& object) { return {{"type", type}, {"object", object}}; }

json Bookmark(const char* kind, const std::string& rv) {
  return Event("BOOKMARK", {{"kind", kind}, {"metadata", {{"resourceVersion", rv}}}});
}

json Stream(json actions) { return {{"status", 200}, {"stream", std::move(actions)}}; }

class KubeSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FakeApiServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  void TearDown() override {
    if (source_ != nullptr) source_->Stop();
    EXPECT_THAT(server_->Lines("MISMATCH "), ::testing::IsEmpty());
  }

  // Watches only what the test asks for, with short backoffs.
  void StartSource(bool services, bool slices, bool nodes) {
    KubeApiConfig api;
    api.server = server_->url();
    api.token = "t0ken";
    KubeSourceOptions options;
    options.services = services;
    options.endpoint_slices = slices;
    options.nodes = nodes;
    options.list_watch.page_size = 2;
    options.list_watch.backoff.initial_seconds = 0.02;
    options.list_watch.backoff.max_seconds = 0.2;
    options.node_reading.network.network = {*ParseIpv4("10.244.0.0"), 16};
    source_ = std::make_unique<KubeSource>(
        api, options, [this](KubeUpdate u) { collector_.Update(std::move(u)); },
        [this](const absl::Status& p) { collector_.Problem(p); });
    ASSERT_TRUE(source_->Start().ok());
  }

  std::unique_ptr<FakeApiServer> server_;
  Collector collector_;
  std::unique_ptr<KubeSource> source_;
};

TEST_F(KubeSourceTest, ListThenWatchFromTheListsResourceVersion) {
  json skipped = ServiceObject("other", "10.96.0.12", 80, "7");
  skipped["metadata"]["labels"] = {{"service.kubernetes.io/service-proxy-name", "other"}};
  server_->Respond(kServices, false,
                   List("ServiceList",
                        {ServiceObject("web", "10.96.0.10", 80, "5"),
                         ServiceObject("dns", "10.96.0.53", 53, "6")},
                        "100"));
  json watch =
      Stream(json::array({{{"events",
                            {Event("ADDED", ServiceObject("api", "10.96.0.20", 443, "101")),
                             Event("MODIFIED", ServiceObject("web", "10.96.0.10", 8080, "102")),
                             Event("ADDED", skipped),
                             Event("DELETED", ServiceObject("dns", "10.96.0.53", 53, "104"))}}}}));
  watch["expect"] = {{"resourceVersion", "100"}, {"allowWatchBookmarks", "true"}};
  server_->Respond(kServices, true, watch);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(4));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 4u);
  EXPECT_EQ(u[0].kind, KubeUpdateKind::kSnapshot);
  EXPECT_EQ(u[0].resource, KubeResourceKind::kServices);
  EXPECT_EQ(u[0].resource_version, "100");
  ASSERT_EQ(u[0].services.size(), 2u);
  EXPECT_EQ(u[0].services[0].name, "web");
  EXPECT_EQ(u[0].services[1].name, "dns");
  EXPECT_EQ(u[1].kind, KubeUpdateKind::kUpsert);
  ASSERT_EQ(u[1].services.size(), 1u);
  EXPECT_EQ(u[1].services[0].name, "api");
  EXPECT_EQ(u[1].resource_version, "101");
  EXPECT_EQ(u[2].kind, KubeUpdateKind::kUpsert);
  EXPECT_EQ(u[2].services[0].ports[0].port, 8080);
  // the ADDED of another proxy's Service gives nothing; the deletion:
  EXPECT_EQ(u[3].kind, KubeUpdateKind::kDelete);
  EXPECT_EQ(u[3].deleted_name, "default/dns");
  EXPECT_EQ(u[3].resource_version, "104");

  const std::vector<json> lists = server_->Requests(kServices, false);
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0]["query"]["limit"], "2");
  EXPECT_EQ(lists[0]["query"]["labelSelector"],
            "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless");
  EXPECT_EQ(lists[0]["authorization"], "Bearer t0ken");
  const std::vector<json> watches = server_->Requests(kServices, true);
  ASSERT_EQ(watches.size(), 1u);
  EXPECT_EQ(watches[0]["query"]["resourceVersion"], "100");
  EXPECT_EQ(watches[0]["query"]["timeoutSeconds"], "300");
  EXPECT_EQ(source_->stats().skipped_objects, 1u);
  EXPECT_EQ(source_->stats().services.events, 4u);
}

// Pushed events (fake_apiserver.py's "push") reach a watch that is open,
// and a watch that reconnects from an older resourceVersion gets the ones
// it missed, in order, as the API server's watch cache replays them.
TEST_F(KubeSourceTest, PushedEventsReachTheWatchAndAreReplayedAfterAReconnect) {
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("web", "10.96.0.10", 80, "5")}, "100"));
  // The first watch is held at a gate, then dropped; the second is the
  // unscripted one that serves pushes.
  server_->Respond(kServices, true, Stream(json::array({{{"gate", "g"}}, {{"drop", true}}})));
  StartSource(true, false, false);
  ASSERT_TRUE(collector_.WaitUpdates(1));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 1));
  server_->Push(kServices,
                json::array({Event("ADDED", ServiceObject("api", "10.96.0.20", 443, "101"))}));
  server_->Push(kServices,
                json::array({Event("MODIFIED", ServiceObject("web", "10.96.0.10", 8080, "102")),
                             Event("DELETED", ServiceObject("api", "10.96.0.20", 443, "103"))}));
  server_->Open("g");  // drop: the source re-watches from 100 and is replayed 101..103
  ASSERT_TRUE(collector_.WaitUpdates(4));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 2));
  EXPECT_EQ(server_->Requests(kServices, true)[1]["query"]["resourceVersion"], "100");
  std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 4u);
  EXPECT_EQ(u[1].kind, KubeUpdateKind::kUpsert);
  EXPECT_EQ(u[1].services[0].name, "api");
  EXPECT_EQ(u[2].services[0].ports[0].port, 8080);
  EXPECT_EQ(u[3].kind, KubeUpdateKind::kDelete);
  EXPECT_EQ(u[3].deleted_name, "default/api");
  EXPECT_EQ(u[3].resource_version, "103");

  // A push while the watch is open goes out at once.
  server_->Push(kServices,
                json::array({Event("MODIFIED", ServiceObject("web", "10.96.0.10", 81, "104"))}));
  ASSERT_TRUE(collector_.WaitUpdates(5));
  u = collector_.updates();
  EXPECT_EQ(u[4].services[0].ports[0].port, 81);
  EXPECT_EQ(u[4].resource_version, "104");
  // The server says when it wrote it (after the write: the line may follow
  // the update).
  auto sent_104 = [&] {
    for (const std::string& line : server_->Lines("SENT "))
      if (json::parse(line)["resourceVersion"] == "104") return true;
    return false;
  };
  for (int i = 0; i < 1000 && !sent_104(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(sent_104());
  EXPECT_EQ(source_->stats().services.events, 4u);
}

TEST_F(KubeSourceTest, PagesAreFollowedThroughContinueTokens) {
  json page2 =
      List("ServiceList",
           {ServiceObject("c", "10.96.0.3", 80, "3"), ServiceObject("d", "10.96.0.4", 80, "4")},
           "200", "token-2");
  page2["expect"] = {{"continue", "token-1"}, {"limit", "2"}};
  json page3 = List("ServiceList", {ServiceObject("e", "10.96.0.5", 80, "5")}, "200");
  page3["expect"] = {{"continue", "token-2"}};
  server_->Respond(
      kServices, false,
      List("ServiceList",
           {ServiceObject("a", "10.96.0.1", 80, "1"), ServiceObject("b", "10.96.0.2", 80, "2")},
           "200", "token-1"));
  server_->Respond(kServices, false, page2);
  server_->Respond(kServices, false, page3);
  json watch = Stream(json::array());
  watch["expect"] = {{"resourceVersion", "200"}};
  server_->Respond(kServices, true, watch);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(1));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 1));
  const KubeUpdate snapshot = collector_.updates()[0];
  ASSERT_EQ(snapshot.services.size(), 5u);
  EXPECT_EQ(snapshot.services[4].name, "e");
  EXPECT_EQ(snapshot.resource_version, "200");
  const std::vector<json> lists = server_->Requests(kServices, false);
  ASSERT_EQ(lists.size(), 3u);
  EXPECT_FALSE(lists[0]["query"].contains("continue"));
  EXPECT_EQ(source_->stats().services.list_pages, 3u);
}

TEST_F(KubeSourceTest, BookmarksAdvanceTheResourceVersionTheNextWatchStartsFrom) {
  server_->Respond(kServices, false, List("ServiceList", json::array(), "300"));
  server_->Respond(kServices, true,
                   Stream(json::array({{{"events", {Bookmark("Service", "350")}}},
                                       {{"events", {Bookmark("Service", "360")}}},
                                       {{"end", true}}})));
  json second = Stream(
      json::array({{{"events", {Event("ADDED", ServiceObject("web", "10.96.0.10", 80, "361"))}}}}));
  second["expect"] = {{"resourceVersion", "360"}};  // the fake server asserts it
  server_->Respond(kServices, true, second);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(2));
  const std::vector<KubeUpdate> u = collector_.updates();
  EXPECT_EQ(u[0].kind, KubeUpdateKind::kSnapshot);
  EXPECT_TRUE(u[0].services.empty());
  EXPECT_EQ(u[1].kind, KubeUpdateKind::kUpsert);  // bookmarks deliver nothing
  const std::vector<json> watches = server_->Requests(kServices, true);
  ASSERT_EQ(watches.size(), 2u);
  EXPECT_EQ(watches[1]["query"]["resourceVersion"], "360");
  EXPECT_EQ(source_->stats().services.bookmarks, 2u);
  EXPECT_EQ(source_->stats().services.lists, 1u);  // no relist
}

TEST_F(KubeSourceTest, GoneForcesARelistAndAFullSnapshot) {
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("web", "10.96.0.10", 80, "5")}, "400"));
  const json expired = {{"kind", "Status"},    {"apiVersion", "v1"},
                        {"status", "Failure"}, {"code", 410},
                        {"reason", "Expired"}, {"message", "too old resource version: 400 (450)"}};
  server_->Respond(kServices, true, Stream(json::array({{{"events", {Event("ERROR", expired)}}}})));
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("api", "10.96.0.20", 443, "451")}, "460"));
  json watch = Stream(json::array());
  watch["expect"] = {{"resourceVersion", "460"}};
  server_->Respond(kServices, true, watch);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(2));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 2));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[1].kind, KubeUpdateKind::kSnapshot);  // replaces web with api
  ASSERT_EQ(u[1].services.size(), 1u);
  EXPECT_EQ(u[1].services[0].name, "api");
  EXPECT_EQ(u[1].resource_version, "460");
  EXPECT_TRUE(collector_.WaitProblem("410 Expired: too old resource version"));
  EXPECT_EQ(source_->stats().services.relists_gone, 1u);
  EXPECT_EQ(source_->stats().services.lists, 2u);
}

TEST_F(KubeSourceTest, AnHttp410WatchAndAnExpiredContinueTokenRelistFromTheStart) {
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("web", "10.96.0.10", 80, "5")}, "470"));
  json gone = {{"status", 410}};
  gone["body"] = {{"kind", "Status"}, {"code", 410}, {"reason", "Gone"}, {"message", "gone"}};
  server_->Respond(kServices, true, gone);
  // The relist: its second page's continue token has expired; the list
  // starts over without it.
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("a", "10.96.0.1", 80, "1")}, "480", "t1"));
  json expired_page = gone;
  expired_page["expect"] = {{"continue", "t1"}};
  server_->Respond(kServices, false, expired_page);
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("b", "10.96.0.2", 80, "2")}, "490"));
  json watch = Stream(json::array());
  watch["expect"] = {{"resourceVersion", "490"}};
  server_->Respond(kServices, true, watch);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(2));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 2));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 2u);
  ASSERT_EQ(u[1].services.size(), 1u);  // page one of the abandoned list is not kept
  EXPECT_EQ(u[1].services[0].name, "b");
  EXPECT_TRUE(collector_.WaitProblem("services: watch: resourceVersion 470 is gone (HTTP 410)"));
  EXPECT_TRUE(collector_.WaitProblem("continue token expired"));
  const std::vector<json> lists = server_->Requests(kServices, false);
  ASSERT_EQ(lists.size(), 4u);
  EXPECT_FALSE(lists[3]["query"].contains("continue"));
  EXPECT_EQ(source_->stats().services.relists_gone, 2u);
}

TEST_F(KubeSourceTest, MalformedEventsAreReportedAndSkippedWhileGoodOnesApply) {
  server_->Respond(kServices, false,
                   List("ServiceList", {ServiceObject("web", "10.96.0.10", 80, "5")}, "500"));
  const std::string good1 = Event("ADDED", ServiceObject("a", "10.96.0.1", 80, "501")).dump();
  const std::string good2 = Event("ADDED", ServiceObject("b", "10.96.0.2", 80, "505")).dump();
  const std::string bad_port =
      Event("MODIFIED", ServiceObject("web", "10.96.0.10", 70000, "503")).dump();
  json no_rv = ServiceObject("c", "10.96.0.3", 80, "x");
  no_rv["metadata"].erase("resourceVersion");
  server_->Respond(kServices, true,
                   Stream(json::array({
                       // one event split over three chunks
                       {{"raw", good1.substr(0, 10)}},
                       {{"raw", good1.substr(10, 20)}},
                       {{"raw", good1.substr(30) + "\n"}},
                       // several lines in one chunk, three of them malformed
                       {{"raw", "{not json\n" + json({{"object", json::object()}}).dump() + "\n" +
                                    json({{"type", "RENAMED"},
                                          {"object", ServiceObject("d", "10.96.0.4", 80, "502")}})
                                        .dump() +
                                    "\n" + bad_port + "\n"}},
                       {{"events", {Event("ADDED", no_rv)}}},
                       {{"raw", good2 + "\n"}},
                   })));
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(3));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 3u);
  EXPECT_EQ(u[1].services[0].name, "a");
  EXPECT_EQ(u[2].services[0].name, "b");
  EXPECT_TRUE(collector_.WaitProblem("services: watch event: not valid JSON"));
  EXPECT_TRUE(collector_.WaitProblem("services: watch event: type: missing"));
  EXPECT_TRUE(collector_.WaitProblem(
      "services: watch event RENAMED (default/d): type: expected ADDED, MODIFIED, DELETED, "
      "BOOKMARK or ERROR, got \"RENAMED\""));
  EXPECT_TRUE(collector_.WaitProblem(
      "services: watch MODIFIED: Service default/web: spec.ports[0].port: must be 1..65535, got "
      "70000"));
  EXPECT_TRUE(collector_.WaitProblem(
      "services: watch event ADDED (default/c): object.metadata.resourceVersion: missing"));
  const KubeSourceStats stats = source_->stats();
  EXPECT_EQ(stats.services.malformed, 4u);  // the envelopes
  EXPECT_EQ(stats.malformed_objects, 1u);   // the Service with port 70000 (web kept as it was)
  EXPECT_EQ(stats.services.stream_drops, 0u);
  EXPECT_EQ(source_->stats().services.watches, 1u);
}

TEST_F(KubeSourceTest, ADroppedStreamResumesFromTheLastResourceVersion) {
  server_->Respond(kServices, false, List("ServiceList", json::array(), "600"));
  server_->Respond(
      kServices, true,
      Stream(json::array({{{"events",
                            {Event("ADDED", ServiceObject("a", "10.96.0.1", 80, "601")),
                             Event("ADDED", ServiceObject("b", "10.96.0.2", 80, "602"))}}},
                          {{"raw", "{\"type\":\"ADDED\",\"obj"}},  // cut inside an event
                          {{"drop", true}}})));
  json resumed = Stream(
      json::array({{{"events", {Event("DELETED", ServiceObject("a", "10.96.0.1", 80, "603"))}}}}));
  resumed["expect"] = {{"resourceVersion", "602"}};
  server_->Respond(kServices, true, resumed);
  StartSource(true, false, false);

  ASSERT_TRUE(collector_.WaitUpdates(4));
  const std::vector<KubeUpdate> u = collector_.updates();
  EXPECT_EQ(u[3].kind, KubeUpdateKind::kDelete);
  EXPECT_EQ(u[3].deleted_name, "default/a");
  EXPECT_TRUE(collector_.WaitProblem("services: watch: stream dropped"));
  const KubeSourceStats stats = source_->stats();
  EXPECT_EQ(stats.services.stream_drops, 1u);
  EXPECT_EQ(stats.services.lists, 1u);  // resumed, not relisted
  EXPECT_EQ(server_->Requests(kServices, true).size(), 2u);
}

TEST_F(KubeSourceTest, EndpointSlicesAsKubeProxyReadsThem) {
  const auto slice = [](const std::string& name, const std::string& rv, json labels) {
    return json{
        {"metadata",
         {{"name", name}, {"namespace", "default"}, {"resourceVersion", rv}, {"labels", labels}}},
        {"addressType", "IPv4"},
        {"endpoints", json::parse(R"([{"addresses": ["10.244.1.5"], "zone": "z1"}])")},
        {"ports", json::parse(R"([{"name": "http", "protocol": "TCP", "port": 8080}])")}};
  };
  const json owned = {{"kubernetes.io/service-name", "web"}};
  json taken = owned;
  taken["service.kubernetes.io/service-proxy-name"] = "other";
  server_->Respond(kSlices, false,
                   List("EndpointSliceList",
                        {slice("web-1", "1", owned), slice("custom", "2", json::object())}, "700"));
  server_->Respond(kSlices, true,
                   Stream(json::array({{{"events",
                                         {Event("ADDED", slice("web-2", "701", owned)),
                                          Event("MODIFIED", slice("web-1", "702", taken))}}}})));
  StartSource(false, true, false);

  ASSERT_TRUE(collector_.WaitUpdates(3));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u[0].endpoint_slices.size(), 1u);  // the unlabelled slice is skipped, no error
  EXPECT_EQ(u[0].endpoint_slices[0].name, "web-1");
  EXPECT_EQ(u[0].endpoint_slices[0].endpoints[0].zone, "z1");
  EXPECT_EQ(u[1].endpoint_slices[0].name, "web-2");
  EXPECT_EQ(u[2].kind, KubeUpdateKind::kDelete);  // now another proxy's
  EXPECT_EQ(u[2].deleted_name, "default/web-1");
  EXPECT_TRUE(collector_.problems().empty());
  EXPECT_EQ(source_->stats().skipped_objects, 2u);
}

json NodeObject(const std::string& name, const std::string& cidr, const std::string& mac,
                const std::string& rv) {
  return {{"metadata",
           {{"name", name},
            {"resourceVersion", rv},
            {"annotations",
             {{"flannel.alpha.coreos.com/kube-subnet-manager", "true"},
              {"flannel.alpha.coreos.com/backend-type", "vxlan"},
              {"flannel.alpha.coreos.com/public-ip", "10.10.100." + name.substr(5)},
              {"flannel.alpha.coreos.com/backend-data",
               json({{"VNI", 1}, {"VtepMAC", mac}}).dump()}}}}},
          {"spec", {{"podCIDR", cidr}}}};
}

TEST_F(KubeSourceTest, NodesGiveFlannelLeasesKeyedBySubnet) {
  json unmanaged = NodeObject("node-230", "10.244.30.0/24", "aa:bb:cc:00:00:30", "3");
  unmanaged["metadata"]["annotations"].erase("flannel.alpha.coreos.com/kube-subnet-manager");
  server_->Respond(
      kNodes, false,
      List("NodeList",
           {NodeObject("node-227", "10.244.27.0/24", "aa:bb:cc:00:00:27", "1"),
            NodeObject("node-228", "10.244.28.0/24", "aa:bb:cc:00:00:28", "2"), unmanaged,
            NodeObject("node-229", "10.244.27.0/24", "aa:bb:cc:00:00:29", "4")},
           "800"));
  server_->Respond(
      kNodes, true,
      Stream(json::array({{{"events",
                            {// a status heartbeat: same lease, nothing delivered
                             Event("MODIFIED", NodeObject("node-227", "10.244.27.0/24",
                                                          "aa:bb:cc:00:00:27", "801")),
                             // a new VtepMAC (flanneld restarted)
                             Event("MODIFIED", NodeObject("node-227", "10.244.27.0/24",
                                                          "aa:bb:cc:00:00:77", "802")),
                             // a new podCIDR: the old subnet goes, the new one comes
                             Event("MODIFIED", NodeObject("node-228", "10.244.48.0/24",
                                                          "aa:bb:cc:00:00:28", "803")),
                             Event("DELETED", NodeObject("node-227", "10.244.27.0/24",
                                                         "aa:bb:cc:00:00:77", "804"))}}}})));
  StartSource(false, false, true);

  ASSERT_TRUE(collector_.WaitUpdates(5));
  const std::vector<KubeUpdate> u = collector_.updates();
  ASSERT_EQ(u.size(), 5u);
  ASSERT_EQ(u[0].leases.size(), 2u);  // node-230 skipped, node-229 in conflict
  EXPECT_EQ(FormatIpv4Prefix(u[0].leases[0].subnet), "10.244.27.0/24");
  EXPECT_EQ(FormatIpv4(u[0].leases[0].public_ip), "10.10.100.227");
  EXPECT_EQ(FormatMac(u[0].leases[1].vtep_mac), "aa:bb:cc:00:00:28");
  EXPECT_TRUE(collector_.WaitProblem(
      "nodes: list: Node node-229: spec.podCIDR: 10.244.27.0/24 is already the subnet of Node "
      "node-227"));
  EXPECT_EQ(u[1].kind, KubeUpdateKind::kUpsert);
  EXPECT_EQ(FormatMac(u[1].leases[0].vtep_mac), "aa:bb:cc:00:00:77");
  EXPECT_EQ(u[2].kind, KubeUpdateKind::kDelete);
  EXPECT_EQ(FormatIpv4Prefix(u[2].deleted_lease), "10.244.28.0/24");
  EXPECT_EQ(u[2].deleted_name, "node-228");
  EXPECT_EQ(u[3].kind, KubeUpdateKind::kUpsert);
  EXPECT_EQ(FormatIpv4Prefix(u[3].leases[0].subnet), "10.244.48.0/24");
  EXPECT_EQ(u[4].kind, KubeUpdateKind::kDelete);
  EXPECT_EQ(FormatIpv4Prefix(u[4].deleted_lease), "10.244.27.0/24");
  // flannel's kube subnet manager watches every Node: no label selector
  EXPECT_FALSE(server_->Requests(kNodes, false)[0]["query"].contains("labelSelector"));
}

TEST_F(KubeSourceTest, StopIsPromptWhileAWatchIsIdle) {
  server_->Respond(kServices, false, List("ServiceList", json::array(), "900"));
  StartSource(true, false, false);  // the watch is not scripted: it stays open, idle
  ASSERT_TRUE(collector_.WaitUpdates(1));
  ASSERT_TRUE(server_->WaitForRequests(kServices, true, 1));
  const auto begin = std::chrono::steady_clock::now();
  source_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(2));
}

TEST_F(KubeSourceTest, AFailedListIsRetriedWithBackoff) {
  json forbidden = {{"status", 403}};
  forbidden["body"] = {{"kind", "Status"},
                       {"code", 403},
                       {"message", "services is forbidden: User \"x\" cannot list"}};
  server_->Respond(kServices, false, forbidden);
  server_->Respond(kServices, false, List("ServiceList", json::array(), "950"));
  StartSource(true, false, false);
  ASSERT_TRUE(collector_.WaitUpdates(1));
  EXPECT_TRUE(collector_.WaitProblem(
      "services: list: HTTP 403: services is forbidden: User \"x\" cannot list"));
  EXPECT_EQ(source_->stats().services.request_errors, 1u);
  EXPECT_EQ(server_->Requests(kServices, false).size(), 2u);
}

}  // namespace
}  // namespace sluice
