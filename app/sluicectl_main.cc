// sluicectl: what a running sluice-node holds, over its socket (read-only
// role is enough).
//
//   sluicectl [--socket PATH] [-o json] services|peers|neighbors|counters|stages|status
//   sluicectl [--socket PATH] [-o json] conntrack [-p tcp|udp|icmp] [--addr IP] [--port N]
//                                                  [--limit N]
//
// Exit status: 0 shown, 1 the dataplane answered with an error or could not
// be reached, 2 bad usage.
#include <arpa/inet.h>

#include <cstdio>
#include <string>
#include <variant>

#include "absl/strings/numbers.h"
#include "api/messages.h"
#include "api/socket.h"
#include "control/sluicectl_format.h"

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "sluicectl: %s\nusage: sluicectl [--socket PATH] [-o json] "
               "services|peers|neighbors|conntrack|counters|stages|status\n"
               "       conntrack filters: [-p tcp|udp|icmp] [--addr IP] [--port N] [--limit N]\n"
               "       services filters: [--addr IP] [--port N] (a Service address, port or "
               "NodePort)\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = "/run/sluice/sluice.sock";
  bool json_out = false;
  sluice::api::Show show;
  show.what.clear();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (a == "--socket") {
      const char* v = value("--socket");
      if (v == nullptr) return Usage("--socket needs a path");
      socket_path = v;
    } else if (a == "-o") {
      const char* v = value("-o");
      if (v == nullptr || std::string(v) != "json") return Usage("-o takes json");
      json_out = true;
    } else if (a == "-p") {
      const char* v = value("-p");
      const std::string p = v == nullptr ? "" : v;
      if (p == "tcp") show.protocol = 6;
      else if (p == "udp") show.protocol = 17;
      else if (p == "icmp") show.protocol = 1;
      else return Usage("-p takes tcp, udp or icmp");
    } else if (a == "--addr") {
      const char* v = value("--addr");
      in_addr a4{};
      if (v == nullptr || inet_pton(AF_INET, v, &a4) != 1)
        return Usage("--addr takes an IPv4 address");
      show.address = ntohl(a4.s_addr);
    } else if (a == "--port" || a == "--limit") {
      const char* v = value(a.c_str());
      uint32_t n = 0;
      if (v == nullptr || !absl::SimpleAtoi(v, &n) || (a == "--port" && n > 65535))
        return Usage("--port and --limit take a number");
      if (a == "--port") show.port = static_cast<uint16_t>(n);
      else show.limit = n;
    } else if (show.what.empty() && !a.empty() && a[0] != '-') {
      show.what = a;
    } else {
      return Usage(("unknown argument " + a).c_str());
    }
  }
  if (show.what.empty()) return Usage("what to show?");
  auto client = sluice::api::Client::Connect(socket_path, std::chrono::seconds(3));
  if (!client.ok()) {
    std::fprintf(stderr, "sluicectl: %s: %s\n", socket_path.c_str(),
                 std::string(client.status().message()).c_str());
    return 1;
  }
  sluice::api::Hello hello;
  hello.client = "sluicectl";
  if (auto r = client->Call(hello, std::chrono::seconds(3)); !r.ok()) {
    std::fprintf(stderr, "sluicectl: %s\n", std::string(r.status().message()).c_str());
    return 1;
  }
  auto reply = client->Call(show, std::chrono::seconds(10));
  if (!reply.ok()) {
    std::fprintf(stderr, "sluicectl: %s\n", std::string(reply.status().message()).c_str());
    return 1;
  }
  if (const auto* e = std::get_if<sluice::api::Error>(&*reply)) {
    std::fprintf(stderr, "sluicectl: %s%s%s: %s\n", e->object.c_str(), e->field.empty() ? "" : ": ",
                 e->field.c_str(), e->message.c_str());
    return 1;
  }
  const auto* j = std::get_if<sluice::api::JsonReply>(&*reply);
  if (j == nullptr) {
    std::fprintf(stderr, "sluicectl: unexpected answer\n");
    return 1;
  }
  if (json_out) {
    std::fwrite(j->json.data(), 1, j->json.size(), stdout);
    if (j->json.empty() || j->json.back() != '\n') std::fputc('\n', stdout);
    return 0;
  }
  const nlohmann::json doc = nlohmann::json::parse(j->json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    std::fprintf(stderr, "sluicectl: the dataplane's answer is not JSON\n");
    return 1;
  }
  const std::string text = sluice::FormatShow(show.what, doc);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}
