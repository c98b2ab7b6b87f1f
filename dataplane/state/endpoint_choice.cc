#include "dataplane/state/endpoint_choice.h"

#include <utility>

namespace sluice {

ChosenEndpoints ChooseServiceEndpoints(const std::vector<api::Endpoint>& endpoints,
                                       const std::string& node_name) {
  auto pick = [&](bool local_only) {
    std::vector<Endpoint> ready, fallback;
    if (!local_only) ready.reserve(endpoints.size());
    for (const api::Endpoint& e : endpoints) {
      if (local_only && (node_name.empty() || e.node_name != node_name)) continue;
      const Endpoint ep{e.ip, e.port, 0};
      if (e.ready)
        ready.push_back(ep);
      else if (e.serving && e.terminating)
        fallback.push_back(ep);
    }
    return ready.empty() ? std::move(fallback) : std::move(ready);
  };
  return {pick(false), pick(true)};
}

}  // namespace sluice
