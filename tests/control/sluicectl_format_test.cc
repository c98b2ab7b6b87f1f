#include "control/sluicectl_format.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

TEST(SluicectlFormat, PeersReadLikeFlannelsRoutesArpAndFdb) {
  const json doc = json::parse(R"({"generation": 3, "node": {"name": "node-228",
      "node_ip": "10.10.100.228", "gateway": "10.10.100.1", "pod_subnet": "10.244.26.0/24",
      "cluster_network": "10.244.0.0/16", "vxlan_ip": "10.244.26.0",
      "vtep_mac": "0e:00:00:00:00:e4", "vni": 1, "vxlan_port": 8472},
      "peers": [{"subnet": "10.244.25.0/24", "public_ip": "10.10.100.227",
                 "vtep_mac": "0e:00:00:00:00:e3", "local": false},
                {"subnet": "10.244.26.0/24", "public_ip": "10.10.100.228",
                 "vtep_mac": "0e:00:00:00:00:e4", "local": true}]})");
  const std::string out = FormatShow("peers", doc);
  EXPECT_THAT(out, HasSubstr("10.244.25.0/24 via 10.244.25.0 dev flannel.1 onlink\n"));
  EXPECT_THAT(out, HasSubstr("10.244.26.0/24 dev cni0 (this node)\n"));
  EXPECT_THAT(out, HasSubstr(
      "10.244.25.0 lladdr 0e:00:00:00:00:e3 PERMANENT;  0e:00:00:00:00:e3 dst 10.10.100.227\n"));
}

TEST(SluicectlFormat, ConntrackReadsLikeConntrackList) {
  const json doc = json::parse(R"({"flows": [{"protocol": "tcp",
      "original": {"src": "10.244.26.20", "dst": "10.111.123.177", "sport": 40000, "dport": 22},
      "reply": {"src": "10.244.25.149", "dst": "10.244.26.20", "sport": 22, "dport": 40000},
      "dnat": true, "snat": false, "seen_reply": true, "fin": false, "rst": false,
      "idle_seconds": 0.25, "owner": 0}], "matched": 1, "shown": 1, "in_use": 7})");
  EXPECT_EQ(FormatShow("conntrack", doc),
            "tcp      6  idle=0.2s src=10.244.26.20 dst=10.111.123.177 sport=40000 dport=22 "
            "src=10.244.25.149 dst=10.244.26.20 sport=22 dport=40000 [DNAT] worker=0\n"
            "sluicectl: 1 of 1 matching flow entries shown (7 in use)\n");
}

TEST(SluicectlFormat, AServiceWithoutEndpointsSaysReject) {
  const json doc = json::parse(R"({"services": [{"name": "default/web:http/TCP",
      "type": "ClusterIP", "addresses": [{"kind": "ClusterIP", "ip": "10.96.100.10",
      "port": 80}], "endpoints": []}]})");
  const std::string out = FormatShow("services", doc);
  EXPECT_THAT(out, HasSubstr("Service default/web:http/TCP  ClusterIP\n"));
  EXPECT_THAT(out, HasSubstr("  ClusterIP       10.96.100.10:80\n"));
  EXPECT_THAT(out, HasSubstr("-> (no endpoints: REJECT)"));
}

TEST(SluicectlFormat, NeighborsReadLikeIpNeighThenTheRoomEachKindHas) {
  const json doc = json::parse(R"({"neighbors": [
      {"port": "uplink", "ip": "10.10.100.1", "mac": "02:00:0a:0a:64:01", "static": true,
       "state": "PERMANENT"},
      {"port": "pods", "ip": "10.244.26.21", "mac": "02:00:00:00:aa:01", "static": false,
       "state": "REACHABLE", "confirmed_seconds_ago": 1.26},
      {"port": "pods", "ip": "10.244.26.22", "mac": "02:00:00:00:aa:02", "static": false,
       "state": "STALE", "confirmed_seconds_ago": 41}],
      "ports": [{"port": "uplink", "learned": 0, "learn_quota": 4096},
                {"port": "pods", "learned": 2, "learn_quota": 4096},
                {"port": "host", "learned": 0, "learn_quota": 16}],
      "static": {"count": 1, "capacity": 1024},
      "reachable_seconds": 30, "stale_seconds": 60})");
  EXPECT_EQ(FormatShow("neighbors", doc),
            "10.10.100.1 dev uplink lladdr 02:00:0a:0a:64:01 PERMANENT\n"
            "10.244.26.21 dev pods lladdr 02:00:00:00:aa:01 REACHABLE (confirmed 1.3s ago)\n"
            "10.244.26.22 dev pods lladdr 02:00:00:00:aa:02 STALE (confirmed 41.0s ago)\n"
            "# learned: uplink 0 of 4096, pods 2 of 4096, host 0 of 16; static 1 of 1024; "
            "stale after 30s, removed 60s later\n");
}

TEST(SluicectlFormat, AnEmptyNeighbourTableStillShowsItsRoom) {
  const json doc = json::parse(R"({"neighbors": [],
      "ports": [{"port": "uplink", "learned": 0, "learn_quota": 4}],
      "static": {"count": 0, "capacity": 3}, "reachable_seconds": 30, "stale_seconds": 60})");
  EXPECT_EQ(FormatShow("neighbors", doc),
            "(no neighbours)\n# learned: uplink 0 of 4; static 0 of 3; stale after 30s, "
            "removed 60s later\n");
  EXPECT_EQ(FormatShow("neighbors", json::parse("{}")),
            "(no neighbours)\n(unexpected answer: no counts)\n");
}

TEST(SluicectlFormat, UnexpectedDocumentsNeverThrow) {
  for (const char* what : {"services", "peers", "neighbors", "conntrack", "counters", "stages"}) {
    for (const char* text : {"null", "[]", "{}", R"({"services": 3, "peers": [1, "x"],
                             "flows": [{"original": 5}], "total": {"a": "b"}})"}) {
      EXPECT_NO_THROW(FormatShow(what, json::parse(text))) << what << " " << text;
    }
  }
}

}  // namespace
}  // namespace sluice
