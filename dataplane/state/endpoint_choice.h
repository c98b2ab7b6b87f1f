// kube-proxy's choice of the endpoints a Service port's new flows may go to,
// from the endpoint set the control side sends (api::Endpoint: conditions
// with their nil defaults already applied, target port resolved). The one
// implementation of it: the ServiceProgrammer applies it to every endpoint
// set it receives, whether from sluice-control or from a cluster file read
// in process (control/model_messages.h gathers, this chooses).
//
// The rule (kube-proxy's pkg/proxy/topology.go, CategorizeEndpoints):
// ready endpoints; when none is ready, the serving-and-terminating ones.
// The node-local subset (for externalTrafficPolicy Local and
// internalTrafficPolicy Local) is chosen the same way among the endpoints
// on this node, on its own: it may fall back to terminating ones while the
// cluster-wide set does not. Order is kept as given.
//
// Pure functions; any thread.
#ifndef SLUICE_DATAPLANE_STATE_ENDPOINT_CHOICE_H_
#define SLUICE_DATAPLANE_STATE_ENDPOINT_CHOICE_H_

#include <string>
#include <vector>

#include "api/messages.h"
#include "dataplane/tables/service_directory.h"

namespace sluice {

struct ChosenEndpoints {
  std::vector<Endpoint> all;    // cluster-wide
  std::vector<Endpoint> local;  // on this node
  bool operator==(const ChosenEndpoints& o) const { return all == o.all && local == o.local; }
  bool empty() const { return all.empty() && local.empty(); }
};

// An endpoint is on this node when its node_name is `node_name` (never when
// `node_name` is empty).
ChosenEndpoints ChooseServiceEndpoints(const std::vector<api::Endpoint>& endpoints,
                                       const std::string& node_name);

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_STATE_ENDPOINT_CHOICE_H_
