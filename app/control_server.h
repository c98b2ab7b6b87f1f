// ControlServer: sluice-node's end of the socket. It listens on the
// dataplane's Unix socket (api/socket.h: file mode, peer credentials and
// roles), answers Hello with the dataplane's instance and last epoch, hands
// writers' messages to DataplaneState, and answers queries (api::Show) from
// the live tables with the JSON documents of app/inspect.h.
//
// Errors: Start returns api::Server::Listen's.
// Concurrency: the control thread (sluice-node's main lcore) only; Poll()
// is called from its loop and never blocks longer than its timeout.
#ifndef SLUICE_APP_CONTROL_SERVER_H_
#define SLUICE_APP_CONTROL_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "api/socket.h"
#include "app/dataplane_state.h"
#include "app/node_runtime.h"

namespace sluice {

// The Service messages of the protocol, applied by the dataplane's
// ServiceProgrammer.
class ProgrammerServiceSink : public ServiceSink {
 public:
  explicit ProgrammerServiceSink(ServiceProgrammer* p) : p_(p) {}
  absl::Status Upsert(const api::ServicePort& port) override { return p_->UpsertServicePort(port); }
  absl::Status Replace(const api::EndpointSetReplace& e) override { return p_->ReplaceEndpoints(e); }
  absl::Status Delete(const api::ServicePortKey& key) override { return p_->DeleteServicePort(key); }
  std::vector<api::ServicePortKey> Keys() const override { return p_->Keys(); }
  void SetNodeName(const std::string& name) override { p_->SetNodeName(name); }

 private:
  ServiceProgrammer* p_;
};

class ControlServer {
 public:
  // `services_json(address, port)` answers Show "services", filtered by the
  // Show's address and port (0: any; empty: not available).
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(
      const api::ServerOptions& options, NodeRuntime* runtime, DataplaneState* state,
      std::function<std::string(uint32_t, uint16_t)> services_json);

  // Serves the socket for up to `timeout_ms`.
  void Poll(int timeout_ms);
  const api::ServerStats& stats() const { return server_->stats(); }

 private:
  ControlServer() = default;
  api::Message Handle(const api::Request& r);
  api::Message Show(const api::Show& s);

  NodeRuntime* runtime_ = nullptr;
  DataplaneState* state_ = nullptr;
  std::function<std::string(uint32_t, uint16_t)> services_json_;
  std::unique_ptr<api::Server> server_;
};

}  // namespace sluice

#endif  // SLUICE_APP_CONTROL_SERVER_H_
