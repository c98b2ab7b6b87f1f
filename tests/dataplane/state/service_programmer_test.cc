// dataplane/state/service_programmer.h: the protocol's Service objects
// applied one at a time (validation as a whole with the object and field
// named, pending endpoint sets, identity kept across syncs), kube-proxy's
// endpoint choice, and what a change does to existing flows, end to end
// through the workers: a UDP flow whose endpoint went away moves to a live
// one on its next packet, a TCP flow finishes where it was, flows of
// unchanged Services survive a full re-apply.
#include "dataplane/state/service_programmer.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <functional>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fixtures/journey_fixtures.h"
#include "tests/fixtures/node_harness.h"
#include "tests/fixtures/packet_builder.h"

namespace sluice::testing {
namespace {

api::Endpoint Ep(const char* ip, uint16_t port, const char* node = "node-227") {
  api::Endpoint e;
  e.ip = Ip(ip);
  e.port = port;
  e.node_name = node;
  return e;
}

api::ServicePort WebPort() {
  api::ServicePort p;
  p.key = {"default", "web", "http", L4Protocol::kTcp};
  p.type = "ClusterIP";
  p.port = 80;
  p.cluster_ips = {Ip("10.96.100.10")};
  return p;
}

api::EndpointSetReplace WebEndpoints() {
  api::EndpointSetReplace r;
  r.key = WebPort().key;
  r.endpoints = {Ep("10.244.26.20", 8080, "node-228"), Ep("10.244.25.30", 8080)};
  return r;
}

const ServiceKey kWebKey{0x0a60640a, 80, kProtoTcp, 0};  // 10.96.100.10:80/TCP

// --- The programmer on its own ----------------------------------------------

class ServiceProgrammerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sp_qs", rte_rcu_qsbr_get_memsize(1), 64));
    ASSERT_EQ(rte_rcu_qsbr_init(qsbr_, 1), 0);
    Make(8, 16);
  }
  void Make(uint32_t ports, uint32_t keys) {
    programmer_.reset();
    dir_.reset();
    ServiceDirectory::Config c;
    c.qsbr = qsbr_;
    c.service_ports = ports;
    c.keys = keys;
    c.max_endpoints_per_set = 8;
    auto d = ServiceDirectory::Create(c);
    ASSERT_TRUE(d.ok()) << d.status();
    dir_ = *std::move(d);
    ServiceProgrammer::Config pc;
    pc.node_name = "node-228";
    pc.max_pending_sets = 2;
    programmer_ = std::make_unique<ServiceProgrammer>(pc, dir_.get(), nullptr, nullptr);
  }
  void TearDown() override {
    programmer_.reset();
    dir_.reset();
    rte_free(qsbr_);
  }
  const EndpointSet* SetOf(const ServiceKey& k) {
    const ServiceRef r = dir_->Lookup(k);
    return r == kNoService ? nullptr : &dir_->Endpoints(r);
  }
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::unique_ptr<ServiceDirectory> dir_;
  std::unique_ptr<ServiceProgrammer> programmer_;
};

TEST_F(ServiceProgrammerTest, RejectedCallsNameTheObjectAndFieldAndChangeNothing) {
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  api::ServicePort other = WebPort();
  other.key.service_name = "other";
  other.cluster_ips = {Ip("10.96.100.11")};
  ASSERT_TRUE(programmer_->UpsertServicePort(other).ok());
  const EndpointSet* before = SetOf(kWebKey);
  ASSERT_NE(before, nullptr);
  const uint32_t keys = dir_->key_count();

  struct Case {
    std::function<absl::Status()> call;
    absl::StatusCode code;
    const char* message;
  };
  auto endpoints = [&](std::vector<api::Endpoint> eps) {
    api::EndpointSetReplace r = WebEndpoints();
    r.endpoints = std::move(eps);
    return programmer_->ReplaceEndpoints(r);
  };
  auto port = [&](std::function<void(api::ServicePort&)> edit) {
    api::ServicePort p = WebPort();
    edit(p);
    return programmer_->UpsertServicePort(p);
  };
  const auto kBad = absl::StatusCode::kInvalidArgument;
  const std::vector<Case> cases = {
      {[&] {
         return endpoints({Ep("10.244.25.1", 80), Ep("10.244.25.2", 80), Ep("10.244.25.3", 80),
                           Ep("224.0.0.1", 80)});
       },
       kBad, "Service default/web:http/TCP: endpoints[3].ip: 224.0.0.1 is not a unicast address"},
      {[&] { return endpoints({Ep("0.0.0.0", 80)}); }, kBad,
       "Service default/web:http/TCP: endpoints[0].ip: 0.0.0.0 is not a unicast address"},
      {[&] { return endpoints({Ep("255.255.255.255", 80)}); }, kBad,
       "Service default/web:http/TCP: endpoints[0].ip: 255.255.255.255 is not a unicast address"},
      {[&] { return endpoints({Ep("127.0.0.1", 80)}); }, kBad,
       "Service default/web:http/TCP: endpoints[0].ip: 127.0.0.1 is a loopback address"},
      {[&] { return endpoints({Ep("10.244.25.1", 0)}); }, kBad,
       "Service default/web:http/TCP: endpoints[0].port: 0 is not a port"},
      {[&] {
         return endpoints({Ep("10.244.25.1", 80), Ep("10.244.25.2", 80), Ep("10.244.25.1", 80)});
       },
       kBad, "Service default/web:http/TCP: endpoints[2]: 10.244.25.1:80 is also endpoints[0]"},
      {[&] {
         std::vector<api::Endpoint> nine;
         for (int i = 0; i < 9; ++i)
           nine.push_back(Ep(("10.244.25." + std::to_string(10 + i)).c_str(), 80));
         return endpoints(nine);
       },
       kBad,
       "Service default/web:http/TCP: endpoints: 9 endpoints, more than the 8 a Service port "
       "holds"},
      {[&] { return port([](api::ServicePort& p) { p.cluster_ips = {Ip("0.0.0.0")}; }); }, kBad,
       "Service default/web:http/TCP: clusterIPs[0]: 0.0.0.0 is not a unicast address"},
      {[&] {
         return port([](api::ServicePort& p) {
           p.external_ips = {Ip("10.1.1.1"), Ip("239.1.1.1")};
         });
       },
       kBad, "Service default/web:http/TCP: externalIPs[1]: 239.1.1.1 is not a unicast address"},
      {[&] {
         return port([](api::ServicePort& p) { p.load_balancer_ips = {Ip("255.255.255.255")}; });
       },
       kBad,
       "Service default/web:http/TCP: loadBalancerIPs[0]: 255.255.255.255 is not a unicast "
       "address"},
      {[&] { return port([](api::ServicePort& p) { p.port = 0; }); }, kBad,
       "Service default/web:http/TCP: port: 0 is not a port"},
      {[&] { return port([](api::ServicePort& p) { p.type = "Balancer"; }); }, kBad,
       "Service default/web:http/TCP: type: \"Balancer\" is not ClusterIP, NodePort, "
       "LoadBalancer or ExternalName"},
      {[&] { return port([](api::ServicePort& p) { p.node_port = 30080; }); }, kBad,
       "Service default/web:http/TCP: nodePort: 30080 on a ClusterIP Service"},
      {[&] { return port([](api::ServicePort& p) { p.external_ips = {Ip("10.96.100.10")}; }); },
       kBad,
       "Service default/web:http/TCP: externalIPs[0]: 10.96.100.10:80/TCP is also clusterIPs[0]"},
      {[&] { return port([](api::ServicePort& p) { p.external_ips = {Ip("10.96.100.11")}; }); },
       kBad,
       "Service default/web:http/TCP: externalIPs[0]: 10.96.100.11:80/TCP is already Service "
       "default/other:http/TCP's"},
      {[&] { return port([](api::ServicePort& p) { p.key.namespace_name.clear(); }); }, kBad,
       "Service /web:http/TCP: key: namespace and name are required"},
      {[&] {
         api::ServicePortKey k = WebPort().key;
         k.service_name = "nothere";
         return programmer_->DeleteServicePort(k);
       },
       absl::StatusCode::kNotFound, "Service default/nothere:http/TCP: no such Service port"},
  };
  for (const Case& c : cases) {
    const absl::Status s = c.call();
    EXPECT_EQ(s.code(), c.code) << c.message;
    EXPECT_EQ(s.message(), c.message);
    EXPECT_EQ(SetOf(kWebKey), before) << c.message;  // the same set, never republished
    EXPECT_EQ(dir_->key_count(), keys) << c.message;
  }
  EXPECT_EQ(before->all_count, 2u);
  EXPECT_EQ(programmer_->port_count(), 2u);
}

TEST_F(ServiceProgrammerTest, WhatDoesNotFitIsRefusedWithTheObjectNamed) {
  Make(2, 3);
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  api::ServicePort two = WebPort();
  two.key.service_name = "two";
  two.cluster_ips = {Ip("10.96.100.12"), Ip("10.96.100.13"), Ip("10.96.100.14")};
  absl::Status s = programmer_->UpsertServicePort(two);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "Service default/two:http/TCP: 4 keys (addresses and NodePorts) would pass the "
            "Service directory's 3");
  two.cluster_ips.pop_back();
  ASSERT_TRUE(programmer_->UpsertServicePort(two).ok());
  api::ServicePort three = WebPort();
  three.key.service_name = "three";
  three.cluster_ips = {Ip("10.96.100.15")};
  s = programmer_->UpsertServicePort(three);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "Service default/three:http/TCP: the Service directory is full: it holds 2 Service "
            "ports");
  // Deleting one makes room (its slot comes back after a grace period).
  ASSERT_TRUE(programmer_->DeleteServicePort(two.key).ok());
  EXPECT_TRUE(programmer_->UpsertServicePort(three).ok());
  // Pending endpoint sets are bounded too (2 here).
  for (const char* name : {"p1", "p2", "p3"}) {
    api::EndpointSetReplace r = WebEndpoints();
    r.key.service_name = name;
    s = programmer_->ReplaceEndpoints(r);
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "Service default/p3:http/TCP: endpoints: 2 endpoint sets already wait for their "
            "Service port, the most kept");
  EXPECT_EQ(programmer_->pending_count(), 2u);
}

TEST_F(ServiceProgrammerTest, AnEndpointSetBeforeItsPortWaitsAndIsAttachedWhenThePortArrives) {
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  EXPECT_EQ(programmer_->pending_count(), 1u);
  EXPECT_EQ(dir_->key_count(), 0u);
  EXPECT_EQ(programmer_->port_count(), 0u);
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  EXPECT_EQ(programmer_->pending_count(), 0u);
  const EndpointSet* s = SetOf(kWebKey);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->all_count, 2u);
  ASSERT_EQ(s->local_count, 1u);
  EXPECT_EQ(s->endpoints()[0].ip, Ip("10.244.26.20"));
  EXPECT_EQ(s->endpoints()[1].ip, Ip("10.244.25.30"));
  EXPECT_EQ(s->endpoints()[2].ip, Ip("10.244.26.20"));  // the local one
  // Deleting the port deletes its endpoint set: upserted again, it has none.
  ASSERT_TRUE(programmer_->DeleteServicePort(WebPort().key).ok());
  EXPECT_EQ(SetOf(kWebKey), nullptr);
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  EXPECT_EQ(SetOf(kWebKey), dir_->empty_set());
  // A key with only a pending set can be deleted (the set goes).
  api::EndpointSetReplace lone = WebEndpoints();
  lone.key.service_name = "lone";
  ASSERT_TRUE(programmer_->ReplaceEndpoints(lone).ok());
  ASSERT_TRUE(programmer_->DeleteServicePort(lone.key).ok());
  EXPECT_EQ(programmer_->pending_count(), 0u);
}

TEST_F(ServiceProgrammerTest, AnEndpointChangePublishesOneSetAndKeepsTheSlotAndKeys) {
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  const uint32_t slot = programmer_->SlotOf(WebPort().key);
  const EndpointSet* first = SetOf(kWebKey);
  const uint64_t published = programmer_->stats().sets_published;
  // The same endpoints again (conditions that change nothing chosen): no new set.
  api::EndpointSetReplace same = WebEndpoints();
  same.endpoints[0].zone = "z1";
  ASSERT_TRUE(programmer_->ReplaceEndpoints(same).ok());
  EXPECT_EQ(SetOf(kWebKey), first);
  EXPECT_EQ(programmer_->stats().sets_published, published);
  // One endpoint replaced: one new set, the same slot and key. (A reader
  // is online, as a worker would be: the old set waits for it.)
  rte_rcu_qsbr_thread_register(qsbr_, 0);
  rte_rcu_qsbr_thread_online(qsbr_, 0);
  api::EndpointSetReplace moved = WebEndpoints();
  moved.endpoints[1] = Ep("10.244.24.30", 8080, "node-226");
  ASSERT_TRUE(programmer_->ReplaceEndpoints(moved).ok());
  EXPECT_EQ(programmer_->stats().sets_published, published + 1);
  EXPECT_EQ(programmer_->SlotOf(WebPort().key), slot);
  EXPECT_EQ(ServiceSlotOf(dir_->Lookup(kWebKey)), slot);
  const EndpointSet* now = SetOf(kWebKey);
  ASSERT_EQ(now->all_count, 2u);
  EXPECT_EQ(now->endpoints()[1].ip, Ip("10.244.24.30"));
  EXPECT_EQ(dir_->deferred(), 1u);  // the old set, until a grace period ends
  rte_rcu_qsbr_quiescent(qsbr_, 0);
  dir_->Reclaim();
  EXPECT_EQ(dir_->deferred(), 0u);
  rte_rcu_qsbr_thread_offline(qsbr_, 0);
  rte_rcu_qsbr_thread_unregister(qsbr_, 0);
  EXPECT_EQ(programmer_->stats().scans, 0u);  // TCP: flows are left alone
}

TEST_F(ServiceProgrammerTest, NewAddressesChangeTheKeysButNotTheEndpointSet) {
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  const EndpointSet* set = SetOf(kWebKey);
  api::ServicePort p = WebPort();
  p.type = "LoadBalancer";
  p.cluster_ips = {Ip("10.96.100.20")};
  p.node_port = 30080;
  p.external_ips = {Ip("192.0.2.10")};
  p.load_balancer_ips = {Ip("198.51.100.7")};
  ASSERT_TRUE(programmer_->UpsertServicePort(p).ok());
  EXPECT_EQ(SetOf(kWebKey), nullptr);
  const ServiceKey cip{Ip("10.96.100.20"), 80, kProtoTcp, 0};
  EXPECT_EQ(SetOf(cip), set);
  EXPECT_EQ(ServiceKindOf(dir_->Lookup({0, 30080, kProtoTcp, 0})), ServiceEntryKind::kNodePort);
  EXPECT_EQ(ServiceKindOf(dir_->Lookup({Ip("192.0.2.10"), 80, kProtoTcp, 0})),
            ServiceEntryKind::kExternalIp);
  EXPECT_EQ(ServiceKindOf(dir_->Lookup({Ip("198.51.100.7"), 80, kProtoTcp, 0})),
            ServiceEntryKind::kLoadBalancerIp);
  EXPECT_EQ(dir_->key_count(), 4u);
  // A traffic policy is the set's flags: a new set, same endpoints.
  p.external_traffic_policy = TrafficPolicy::kLocal;
  ASSERT_TRUE(programmer_->UpsertServicePort(p).ok());
  const EndpointSet* local = SetOf(cip);
  EXPECT_NE(local, set);
  EXPECT_EQ(local->flags, EndpointSet::kExternalLocalOnly);
  EXPECT_EQ(local->all_count, 2u);
}

TEST_F(ServiceProgrammerTest, PortsThatAreNotProxiedHoldNoKeysUntilTheyAreProxied) {
  api::ServicePort headless = WebPort();
  headless.cluster_ips.clear();
  api::ServicePort name = WebPort();
  name.key.service_name = "name";
  name.type = "ExternalName";
  api::ServicePort sctp = WebPort();
  sctp.key.protocol = L4Protocol::kSctp;
  for (const api::ServicePort* p : {&headless, &name, &sctp})
    ASSERT_TRUE(programmer_->UpsertServicePort(*p).ok());
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  EXPECT_EQ(dir_->key_count(), 0u);
  EXPECT_EQ(dir_->slot_count(), 0u);
  EXPECT_EQ(programmer_->port_count(), 3u);
  EXPECT_EQ(programmer_->pending_count(), 0u);  // its port is known, just not proxied
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  ASSERT_NE(SetOf(kWebKey), nullptr);
  EXPECT_EQ(SetOf(kWebKey)->all_count, 2u);
  ASSERT_TRUE(programmer_->UpsertServicePort(headless).ok());  // back to headless
  EXPECT_EQ(dir_->key_count(), 0u);
  EXPECT_EQ(dir_->slot_count(), 0u);
}

TEST_F(ServiceProgrammerTest, ASyncKeepsWhatIsUnchangedAndRemovesWhatItDoesNotMention) {
  api::ServicePort other = WebPort();
  other.key.service_name = "other";
  other.cluster_ips = {Ip("10.96.100.11")};
  api::EndpointSetReplace other_eps = WebEndpoints();
  other_eps.key = other.key;
  ASSERT_TRUE(programmer_->Sync({WebPort(), other}, {WebEndpoints(), other_eps}, "node-228").ok());
  const uint32_t slot = programmer_->SlotOf(WebPort().key);
  const EndpointSet* set = SetOf(kWebKey);
  const uint64_t published = programmer_->stats().sets_published;
  ASSERT_TRUE(programmer_->Sync({WebPort(), other}, {WebEndpoints(), other_eps}, "node-228").ok());
  EXPECT_EQ(programmer_->SlotOf(WebPort().key), slot);
  EXPECT_EQ(SetOf(kWebKey), set);
  EXPECT_EQ(programmer_->stats().sets_published, published);
  EXPECT_EQ(dir_->deferred(), 0u);  // nothing replaced
  // The address moves from "other" to "web" and "other" goes, in one sync.
  api::ServicePort web = WebPort();
  web.cluster_ips = {Ip("10.96.100.11")};
  ASSERT_TRUE(programmer_->Sync({web}, {WebEndpoints()}, "node-228").ok());
  EXPECT_EQ(programmer_->port_count(), 1u);
  EXPECT_EQ(SetOf(kWebKey), nullptr);
  EXPECT_EQ(ServiceSlotOf(dir_->Lookup({Ip("10.96.100.11"), 80, kProtoTcp, 0})), slot);
  EXPECT_EQ(SetOf({Ip("10.96.100.11"), 80, kProtoTcp, 0}), set);
  EXPECT_EQ(dir_->key_count(), 1u);
  EXPECT_EQ(dir_->slot_count(), 1u);
  // A sync with an error changes nothing.
  api::ServicePort bad = WebPort();
  bad.key.service_name = "bad";
  bad.port = 0;
  const absl::Status s = programmer_->Sync({WebPort(), bad}, {}, "node-228");
  EXPECT_EQ(s.message(), "Service default/bad:http/TCP: port: 0 is not a port");
  EXPECT_EQ(SetOf({Ip("10.96.100.11"), 80, kProtoTcp, 0}), set);
  EXPECT_EQ(programmer_->Sync({WebPort(), WebPort()}, {}, "node-228").message(),
            "Service default/web:http/TCP: listed twice");
  // Another node's name makes other endpoints local.
  ASSERT_TRUE(programmer_->Sync({web}, {WebEndpoints()}, "node-227").ok());
  const EndpointSet* now = SetOf({Ip("10.96.100.11"), 80, kProtoTcp, 0});
  ASSERT_EQ(now->local_count, 1u);
  EXPECT_EQ(now->endpoints()[now->all_count].ip, Ip("10.244.25.30"));
  EXPECT_EQ(programmer_->node_name(), "node-227");
}

// A rename outside a sync: sets already published keep their local subset
// until they are sent again (sluice-control re-sends every one after the
// node settings); a re-sent set is chosen with the new name.
TEST_F(ServiceProgrammerTest, ARenamedNodeChoosesTheLocalSubsetOfSetsSentAfterIt) {
  ASSERT_TRUE(programmer_->UpsertServicePort(WebPort()).ok());
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  const EndpointSet* before = SetOf(kWebKey);
  ASSERT_EQ(before->local_count, 1u);
  EXPECT_EQ(before->endpoints()[before->all_count].ip, Ip("10.244.26.20"));
  programmer_->SetNodeName("node-227");
  EXPECT_EQ(SetOf(kWebKey), before);
  const uint64_t published = programmer_->stats().sets_published;
  ASSERT_TRUE(programmer_->ReplaceEndpoints(WebEndpoints()).ok());
  EXPECT_EQ(programmer_->stats().sets_published, published + 1);
  const EndpointSet* now = SetOf(kWebKey);
  ASSERT_EQ(now->local_count, 1u);
  EXPECT_EQ(now->endpoints()[now->all_count].ip, Ip("10.244.25.30"));
}

// kube-proxy's CategorizeEndpoints: ready endpoints; else serving and
// terminating ones; the node-local subset decided on its own.
TEST(EndpointChoiceTest, ReadyFirstThenServingTerminatingAndLocalOnItsOwn) {
  api::Endpoint ready_remote = Ep("10.244.25.1", 80);
  api::Endpoint term_local = Ep("10.244.26.2", 80, "node-228");
  term_local.ready = false;
  term_local.terminating = true;
  api::Endpoint not_serving_local = Ep("10.244.26.3", 80, "node-228");
  not_serving_local.ready = false;
  not_serving_local.serving = false;
  not_serving_local.terminating = true;
  api::Endpoint unready = Ep("10.244.25.4", 80);
  unready.ready = false;
  unready.terminating = false;
  ChosenEndpoints c =
      ChooseServiceEndpoints({ready_remote, term_local, not_serving_local, unready}, "node-228");
  ASSERT_EQ(c.all.size(), 1u);
  EXPECT_EQ(c.all[0].ip, Ip("10.244.25.1"));
  ASSERT_EQ(c.local.size(), 1u);  // no ready one here: the terminating fallback
  EXPECT_EQ(c.local[0].ip, Ip("10.244.26.2"));
  c = ChooseServiceEndpoints({term_local, unready}, "node-228");
  ASSERT_EQ(c.all.size(), 1u);
  EXPECT_EQ(c.all[0].ip, Ip("10.244.26.2"));
  EXPECT_TRUE(ChooseServiceEndpoints({unready, not_serving_local}, "node-228").empty());
  // Without a node name nothing is local (an endpoint without nodeName too).
  api::Endpoint anonymous = Ep("10.244.25.5", 80, "");
  EXPECT_TRUE(ChooseServiceEndpoints({anonymous}, "").local.empty());
}

// --- Flows, end to end -----------------------------------------------------

constexpr const char* kDnsIp = "10.96.0.10";
constexpr uint16_t kDnsNodePort = 30053;

// node-228 with kube-system/kube-dns (UDP 53, optionally a NodePort) served
// by two pods on node-227.
ClusterModel WithDns(bool nodeport = false) {
  ClusterModel m = Node228Model();
  ServiceSpec dns;
  dns.namespace_name = "kube-system";
  dns.name = "kube-dns";
  dns.type = nodeport ? "NodePort" : "ClusterIP";
  dns.cluster_ips = {Ip(kDnsIp)};
  dns.ports = {{"dns", L4Protocol::kUdp, 53, nodeport ? kDnsNodePort : uint16_t{0}}};
  m.services.push_back(dns);
  EndpointSliceSpec eps;
  eps.namespace_name = "kube-system";
  eps.name = "kube-dns-1";
  eps.service_name = "kube-dns";
  eps.endpoints = {{Ip("10.244.25.53"), true, true, false, "node-227"},
                   {Ip("10.244.25.54"), true, true, false, "node-227"}};
  eps.ports = {{"dns", L4Protocol::kUdp, 53}};
  m.endpoint_slices.push_back(eps);
  return m;
}

const api::ServicePortKey kDnsKey{"kube-system", "kube-dns", "dns", L4Protocol::kUdp};

std::vector<uint8_t> PodUdp(uint16_t src_port, const char* dst, uint16_t dst_port) {
  FrameSpec s;
  s.src_mac = Mac("0a:58:0a:f4:1a:14");
  s.dst_mac = Mac("02:00:0a:f4:1a:01");
  s.src_ip = Ip(Example::kWeb1);
  s.dst_ip = Ip(dst);
  s.l4.proto = kProtoUdp;
  s.l4.src_port = src_port;
  s.l4.dst_port = dst_port;
  s.l4.payload = "query";
  return BuildFrame(s);
}

std::vector<uint8_t> ClientUdpToNodePort(uint16_t src_port) {
  FrameSpec s;
  s.src_mac = Mac("02:00:0a:0a:64:01");
  s.dst_mac = Mac("02:00:0a:0a:64:e4");
  s.src_ip = Ip(Example::kClient);
  s.dst_ip = Ip(Example::kNode228);
  s.l4.proto = kProtoUdp;
  s.l4.src_port = src_port;
  s.l4.dst_port = kDnsNodePort;
  s.l4.payload = "query";
  return BuildFrame(s);
}

// The endpoint a packet that left in VXLAN was sent to (0 when it did not).
uint32_t VxlanInnerDestination(const Outputs& out) {
  if (out.uplink().size() != 1) return 0;
  const ParsedFrame outer = ParseFrame(out.uplink()[0]);
  if (outer.proto != kProtoUdp || outer.dst_port != 8472) return 0;
  return ParseFrame(out.uplink()[0], 50).dst_ip;
}

api::EndpointSetReplace DnsEndpointsWithout(uint32_t gone) {
  api::EndpointSetReplace r;
  r.key = kDnsKey;
  for (const char* ip : {"10.244.25.53", "10.244.25.54"})
    if (Ip(ip) != gone) r.endpoints.push_back(Ep(ip, 53));
  return r;
}

class FlowCleanupTest : public ::testing::Test {
 protected:
  NodeHarness node_{WithDns(/*nodeport=*/true), /*workers=*/2};
};

TEST_F(FlowCleanupTest, AUdpFlowToARemovedEndpointMovesToALiveOneOnItsNextPacket) {
  // The flow is made on worker 1, which owns it.
  const uint32_t first =
      VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40000, kDnsIp, 53)}, 1));
  ASSERT_TRUE(first == Ip("10.244.25.53") || first == Ip("10.244.25.54")) << FormatIpv4(first);
  EXPECT_EQ(node_.counter(k_conntrack_created), 1u);
  // Its endpoint leaves, as sluice-control would say it.
  ASSERT_TRUE(node_.services().ReplaceEndpoints(DnsEndpointsWithout(first)).ok());
  EXPECT_EQ(node_.services().stats().removals_requested, 1u);
  // Until its owner's next loop the flow keeps its entry; then it is gone.
  EXPECT_EQ(node_.conntrack().InUse(), 1u);
  node_.Run(PortRole::kPods, {}, 1);
  EXPECT_EQ(node_.counter(k_conntrack_purged, 1), 1u);
  EXPECT_EQ(node_.conntrack().InUse(), 0u);
  // The next packet, on the other worker, picks the live endpoint.
  const uint32_t next =
      VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40000, kDnsIp, 53)}, 0));
  EXPECT_NE(next, first);
  EXPECT_TRUE(next == Ip("10.244.25.53") || next == Ip("10.244.25.54")) << FormatIpv4(next);
  EXPECT_EQ(node_.counter(k_conntrack_created), 2u);
}

TEST_F(FlowCleanupTest, UdpFlowsOfAServiceLeftWithoutEndpointsGoAndTheirNextPacketIsDropped) {
  ASSERT_NE(VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40001, kDnsIp, 53)})), 0u);
  api::EndpointSetReplace none;
  none.key = kDnsKey;
  ASSERT_TRUE(node_.services().ReplaceEndpoints(none).ok());
  Outputs out = node_.Run(PortRole::kPods, {PodUdp(40001, kDnsIp, 53)});
  EXPECT_EQ(node_.counter(k_conntrack_purged), 1u);
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(node_.counter(k_service_no_endpoints), 1u);
}

TEST_F(FlowCleanupTest, AUdpFlowToANodePortLeavesWithItsEndpointToo) {
  const uint32_t first =
      VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientUdpToNodePort(5353)}));
  ASSERT_NE(first, 0u);
  ASSERT_TRUE(node_.services().ReplaceEndpoints(DnsEndpointsWithout(first)).ok());
  const uint32_t next =
      VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientUdpToNodePort(5353)}));
  EXPECT_EQ(node_.counter(k_conntrack_purged), 1u);
  EXPECT_NE(next, first);
  EXPECT_NE(next, 0u);
}

TEST_F(FlowCleanupTest, ATcpFlowFinishesOnItsEndpointEvenWhenTheEndpointLeaves) {
  // The ssh NodePort's only endpoint goes (as when its pod is deleted).
  ASSERT_EQ(VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientSynToNodePort()})),
            Ip(Example::kSshPod));
  api::EndpointSetReplace moved;
  moved.key = {"ai", "tzp-pytorch-2", "ssh", L4Protocol::kTcp};
  moved.endpoints = {Ep("10.244.24.77", 22, "node-226")};
  const uint64_t scans = node_.services().stats().scans;  // the first sync's (a new UDP port)
  ASSERT_TRUE(node_.services().ReplaceEndpoints(moved).ok());
  EXPECT_EQ(node_.services().stats().scans, scans);  // TCP: not even looked at
  EXPECT_EQ(VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientSynToNodePort()})),
            Ip(Example::kSshPod));
  EXPECT_EQ(node_.counter(k_conntrack_purged), 0u);
  EXPECT_EQ(node_.counter(k_conntrack_created), 1u);
}

TEST_F(FlowCleanupTest, AUdpFlowMadeBeforeItsServiceExistedIsReplacedOnceTheServiceArrives) {
  // No Service for 10.96.0.20:53 yet: the flow is masqueraded out of the
  // uplink, to nowhere useful (kube-proxy's stale UDP entry).
  Outputs out = node_.Run(PortRole::kPods, {PodUdp(40002, "10.96.0.20", 53)});
  ASSERT_EQ(out.uplink().size(), 1u);
  EXPECT_EQ(ParseFrame(out.uplink()[0]).dst_ip, Ip("10.96.0.20"));
  EXPECT_EQ(ParseFrame(out.uplink()[0]).src_ip, Ip(Example::kNode228));
  EXPECT_EQ(node_.counter(k_masquerade), 1u);
  // Its endpoints arrive first (kept pending), then the Service port.
  api::ServicePort p;
  p.key = {"kube-system", "dns2", "dns", L4Protocol::kUdp};
  p.type = "ClusterIP";
  p.port = 53;
  p.cluster_ips = {Ip("10.96.0.20")};
  api::EndpointSetReplace eps;
  eps.key = p.key;
  eps.endpoints = {Ep("10.244.25.60", 53)};
  ASSERT_TRUE(node_.services().ReplaceEndpoints(eps).ok());
  EXPECT_EQ(node_.services().stats().removals_requested, 0u);  // nothing reachable yet
  ASSERT_TRUE(node_.services().UpsertServicePort(p).ok());
  EXPECT_EQ(node_.services().stats().removals_requested, 1u);
  EXPECT_EQ(VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40002, "10.96.0.20", 53)})),
            Ip("10.244.25.60"));
  EXPECT_EQ(node_.counter(k_conntrack_purged), 1u);
  EXPECT_EQ(node_.counter(k_service_dnat), 1u);
}

TEST_F(FlowCleanupTest, DeletingAUdpServiceRemovesItsFlows) {
  ASSERT_NE(VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40003, kDnsIp, 53)})), 0u);
  ASSERT_TRUE(node_.services().DeleteServicePort(kDnsKey).ok());
  node_.Run(PortRole::kPods, {});
  EXPECT_EQ(node_.counter(k_conntrack_purged), 1u);
  EXPECT_EQ(node_.conntrack().InUse(), 0u);
}

TEST_F(FlowCleanupTest, FlowsOfUnchangedServicesSurviveAFullReapplyOfTheSameModel) {
  const uint32_t dns =
      VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40004, kDnsIp, 53)}));
  ASSERT_NE(dns, 0u);
  ASSERT_NE(VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientSynToNodePort()})), 0u);
  ASSERT_EQ(node_.conntrack().InUse(), 2u);
  const uint32_t slot = node_.services().SlotOf(kDnsKey);
  const EndpointSet* set =
      &node_.directory().Endpoints(node_.directory().Lookup({Ip(kDnsIp), 53, kProtoUdp, 0}));
  const uint64_t scans = node_.services().stats().scans;
  for (int i = 0; i < 3; ++i) node_.Reload(WithDns(/*nodeport=*/true));
  EXPECT_EQ(node_.services().SlotOf(kDnsKey), slot);
  EXPECT_EQ(&node_.directory().Endpoints(node_.directory().Lookup({Ip(kDnsIp), 53, kProtoUdp, 0})),
            set);
  EXPECT_EQ(node_.services().stats().removals_requested, 0u);
  EXPECT_EQ(node_.services().stats().scans, scans);  // nothing changed: nothing looked at
  EXPECT_EQ(VxlanInnerDestination(node_.Run(PortRole::kPods, {PodUdp(40004, kDnsIp, 53)})), dns);
  EXPECT_EQ(VxlanInnerDestination(node_.Run(PortRole::kUplink, {ClientSynToNodePort()})),
            Ip(Example::kSshPod));
  EXPECT_EQ(node_.counter(k_conntrack_created), 2u);
  EXPECT_EQ(node_.counter(k_conntrack_hit_original), 2u);
  EXPECT_EQ(node_.counter(k_conntrack_purged), 0u);
  // A reload that drops one dns endpoint removes only that flow, if it was
  // that endpoint's.
  ClusterModel m = WithDns(true);
  m.endpoint_slices.back().endpoints.erase(m.endpoint_slices.back().endpoints.begin() +
                                           (dns == Ip("10.244.25.53") ? 0 : 1));
  node_.Reload(m);
  node_.Run(PortRole::kPods, {});
  EXPECT_EQ(node_.counter(k_conntrack_purged), 1u);
  EXPECT_EQ(node_.conntrack().InUse(), 1u);  // the TCP flow stays
}

}  // namespace
}  // namespace sluice::testing
