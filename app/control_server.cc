#include "app/control_server.h"

#include <rte_cycles.h>

#include <variant>

#include "absl/strings/str_cat.h"
#include "app/inspect.h"

namespace sluice {

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(
    const api::ServerOptions& options, NodeRuntime* runtime, DataplaneState* state,
    std::function<std::string(uint32_t, uint16_t)> services_json) {
  std::unique_ptr<ControlServer> c(new ControlServer());
  c->runtime_ = runtime;
  c->state_ = state;
  c->services_json_ = std::move(services_json);
  ControlServer* self = c.get();
  auto server = api::Server::Listen(options, [self](const api::Request& r) { return self->Handle(r); });
  if (!server.ok()) return server.status();
  c->server_ = *std::move(server);
  return c;
}

void ControlServer::Poll(int timeout_ms) { (void)server_->RunOnce(timeout_ms); }

api::Message ControlServer::Handle(const api::Request& r) {
  const api::Message& m = *r.message;
  if (std::holds_alternative<api::Hello>(m)) return state_->Hello(r.role == api::Role::kWriter);
  if (const auto* s = std::get_if<api::Show>(&m)) return Show(*s);
  // The server lets only writers' write messages through.
  return state_->Apply(r.connection, m);
}

api::Message ControlServer::Show(const api::Show& s) {
  nlohmann::json doc;
  if (s.what == "status") {
    doc = {{"instance", state_->instance()},
           {"last_epoch", state_->last_epoch()},
           {"generation", runtime_->generation()},
           {"tables", runtime_->has_tables()},
           {"node", state_->node_name()},
           {"leases", state_->lease_count()},
           {"processed", runtime_->Processed()},
           {"clients", server_->client_count()}};
  } else if (s.what == "peers") {
    if (!runtime_->has_tables())
      return api::Error{"peers", "", "no tables yet (node settings and this node's lease missing)"};
    doc = PeersJson(runtime_->tables());
  } else if (s.what == "conntrack") {
    ConntrackFilter f;
    f.protocol = s.protocol;
    f.address = s.address;
    f.port = s.port;
    f.limit = s.limit;
    doc = ConntrackJson(runtime_->conntrack(), f, rte_rdtsc());
  } else if (s.what == "counters") {
    return api::JsonReply{runtime_->CountersJson()};  // already JSON
  } else if (s.what == "neighbors") {
    doc = NeighborsJson(runtime_->neighbors(), rte_rdtsc());
  } else if (s.what == "stages") {
    doc = StagesJson(runtime_->StageStats());
  } else if (s.what == "services" && services_json_) {
    return api::JsonReply{services_json_(s.address, s.port)};
  } else {
    return api::Error{"Show", "what", absl::StrCat("\"", s.what, "\" is not something to show")};
  }
  return api::JsonReply{doc.dump()};
}

}  // namespace sluice
