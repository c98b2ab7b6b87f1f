#include "control/sluicectl_format.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

using nlohmann::json;

// Field access that never throws: a missing or mistyped field is empty.
std::string Str(const json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  return "";
}
double Num(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_number() ? it->get<double>() : 0;
}
bool Bool(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}
const json& Arr(const json& j, const char* k) {
  static const json kEmpty = json::array();
  auto it = j.is_object() ? j.find(k) : j.end();
  return it != j.end() && it->is_array() ? *it : kEmpty;
}

std::string Services(const json& doc) {
  std::string out;
  for (const json& s : Arr(doc, "services")) {
    absl::StrAppend(&out, "Service ", Str(s, "name"), "  ", Str(s, "type"));
    if (!Str(s, "external_traffic_policy").empty())
      absl::StrAppend(&out, "  externalTrafficPolicy=", Str(s, "external_traffic_policy"));
    if (!Str(s, "internal_traffic_policy").empty())
      absl::StrAppend(&out, " internalTrafficPolicy=", Str(s, "internal_traffic_policy"));
    out += "\n";
    for (const json& a : Arr(s, "addresses")) {
      const std::string ip = Str(a, "ip");
      absl::StrAppend(&out, "  ", absl::StrFormat("%-15s", Str(a, "kind")), " ",
                      ip.empty() ? "<node addresses>" : ip, ":", Str(a, "port"), "\n");
    }
    const json& eps = Arr(s, "endpoints");
    if (eps.empty()) out += "  -> (no endpoints: REJECT)\n";
    for (const json& e : eps) {
      std::string flags;
      if (!Bool(e, "ready")) flags += " not-ready";
      if (Bool(e, "serving") && !Bool(e, "ready")) flags += " serving";
      if (Bool(e, "terminating")) flags += " terminating";
      if (Bool(e, "local")) flags += " local";
      if (Bool(e, "chosen")) flags += " *";
      absl::StrAppend(&out, "  -> ", Str(e, "ip"), ":", Str(e, "port"), flags, "\n");
    }
  }
  if (Arr(doc, "services").empty()) out = "(no Services)\n";
  return out;
}

std::string Peers(const json& doc) {
  std::string out;
  const json& n = doc.contains("node") ? doc["node"] : json::object();
  absl::StrAppend(&out, "node ", Str(n, "name"), " ", Str(n, "node_ip"), " via gateway ",
                  Str(n, "gateway"), "; pods ", Str(n, "pod_subnet"), " of ",
                  Str(n, "cluster_network"), "; flannel.", Str(n, "vni"), " ",
                  Str(n, "vxlan_ip"), " ", Str(n, "vtep_mac"), " port ", Str(n, "vxlan_port"),
                  "\n");
  out += "# ip route\n";
  for (const json& p : Arr(doc, "peers")) {
    const std::string subnet = Str(p, "subnet");
    const std::string net = subnet.substr(0, subnet.find('/'));
    if (Bool(p, "local"))
      absl::StrAppend(&out, subnet, " dev cni0 (this node)\n");
    else
      absl::StrAppend(&out, subnet, " via ", net, " dev flannel.", Str(n, "vni"), " onlink\n");
  }
  out += "# ip neigh show dev flannel.1, bridge fdb show dev flannel.1\n";
  for (const json& p : Arr(doc, "peers")) {
    if (Bool(p, "local")) continue;
    const std::string subnet = Str(p, "subnet");
    absl::StrAppend(&out, subnet.substr(0, subnet.find('/')), " lladdr ", Str(p, "vtep_mac"),
                    " PERMANENT;  ", Str(p, "vtep_mac"), " dst ", Str(p, "public_ip"), "\n");
  }
  return out;
}

// ip neigh's lines (the port's role as the device), then the room each
// kind of entry has.
std::string Neighbors(const json& doc) {
  std::string out;
  for (const json& e : Arr(doc, "neighbors")) {
    absl::StrAppend(&out, Str(e, "ip"), " dev ", Str(e, "port"), " lladdr ", Str(e, "mac"), " ",
                    Str(e, "state"));
    if (!Bool(e, "static"))
      out += absl::StrFormat(" (confirmed %.1fs ago)", Num(e, "confirmed_seconds_ago"));
    out += "\n";
  }
  if (out.empty()) out = "(no neighbours)\n";
  const json& ports = Arr(doc, "ports");
  const auto st = doc.is_object() ? doc.find("static") : doc.end();
  if (ports.empty() || st == doc.end() || !st->is_object())
    return out + "(unexpected answer: no counts)\n";
  out += "# learned:";
  for (size_t i = 0; i < ports.size(); ++i)
    absl::StrAppend(&out, i == 0 ? " " : ", ", Str(ports[i], "port"), " ", Str(ports[i], "learned"),
                    " of ", Str(ports[i], "learn_quota"));
  absl::StrAppend(&out, "; static ", Str(*st, "count"), " of ", Str(*st, "capacity"),
                  "; stale after ", Str(doc, "reachable_seconds"), "s, removed ",
                  Str(doc, "stale_seconds"), "s later\n");
  return out;
}

std::string Tuple(const json& t) {
  return absl::StrCat("src=", Str(t, "src"), " dst=", Str(t, "dst"), " sport=", Str(t, "sport"),
                      " dport=", Str(t, "dport"));
}

std::string Conntrack(const json& doc) {
  std::string out;
  for (const json& f : Arr(doc, "flows")) {
    const std::string proto = Str(f, "protocol");
    const int num = proto == "tcp" ? 6 : proto == "udp" ? 17 : proto == "icmp" ? 1 : 0;
    std::string flags;
    if (!Bool(f, "seen_reply")) flags += " [UNREPLIED]";
    if (Bool(f, "fin")) flags += " [FIN]";
    if (Bool(f, "rst")) flags += " [RST]";
    if (Bool(f, "dnat")) flags += " [DNAT]";
    if (Bool(f, "snat")) flags += " [SNAT]";
    const json empty = json::object();
    absl::StrAppend(&out, absl::StrFormat("%-8s %-2d idle=%.1fs ", proto, num,
                                          Num(f, "idle_seconds")),
                    Tuple(f.contains("original") ? f["original"] : empty), " ",
                    Tuple(f.contains("reply") ? f["reply"] : empty), flags, " worker=",
                    Str(f, "owner"), "\n");
  }
  absl::StrAppend(&out, "sluicectl: ", Str(doc, "shown"), " of ", Str(doc, "matched"),
                  " matching flow entries shown (", Str(doc, "in_use"), " in use)\n");
  return out;
}

std::string Counters(const json& doc) {
  std::string out;
  if (!doc.contains("total") || !doc["total"].is_object()) return "(unexpected answer)\n";
  const json& workers = Arr(doc, "workers");
  out += absl::StrFormat("%-30s %14s", "counter", "total");
  for (size_t w = 0; w < workers.size(); ++w) out += absl::StrFormat(" %12s", absl::StrCat("worker", w));
  out += "\n";
  for (const auto& [name, v] : doc["total"].items()) {
    if (!v.is_number() || v.get<double>() == 0) continue;
    out += absl::StrFormat("%-30s %14.0f", name, v.get<double>());
    for (const json& w : workers) out += absl::StrFormat(" %12.0f", Num(w, name.c_str()));
    out += "\n";
  }
  return out;
}

std::string Stages(const json& doc) {
  std::string out = absl::StrFormat("%-20s %12s %14s %10s\n", "stage", "calls", "packets",
                                    "cycles/pkt");
  const json& arr = doc.is_array() ? doc : Arr(doc, "stages");
  for (const json& s : arr)
    out += absl::StrFormat("%-20s %12.0f %14.0f %10.1f\n", Str(s, "node"), Num(s, "calls"),
                           Num(s, "packets"), Num(s, "cycles_per_packet"));
  return out;
}

}  // namespace

std::string FormatShow(const std::string& what, const json& doc) {
  if (what == "services") return Services(doc);
  if (what == "peers") return Peers(doc);
  if (what == "neighbors") return Neighbors(doc);
  if (what == "conntrack") return Conntrack(doc);
  if (what == "counters") return Counters(doc);
  if (what == "stages") return Stages(doc);
  return doc.dump(2) + "\n";
}

}  // namespace sluice
