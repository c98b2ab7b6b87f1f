// A ClusterModel as the socket protocol's objects (api/messages.h): what
// sluice-control sends a dataplane for a cluster (a full sync), and what
// sluice-node --cluster and sluice-replay apply in process through the same
// ServiceProgrammer (control/table_builder.h).
//
// This is the gathering half of kube-proxy's endpoint handling: for each
// Service port, the union of its EndpointSlices' endpoints whose slice port
// has the Service port's name and protocol, the target port taken from that
// slice port, each (address, target port) once (the first slice listing it
// wins, with its conditions), conditions as parsed (their nil defaults
// applied by the parser). Which of them new flows may use (ready ones,
// serving-terminating ones as the fallback, node-local subsets) is the
// dataplane's choice (dataplane/state/endpoint_choice.h), made from these.
//
// Proxied Service ports only, as kube-proxy's iptables mode: ExternalName
// Services, SCTP ports and headless Services (no ClusterIP) are skipped.
//
// No errors: the model is taken as parsed (the cluster-file parser checked
// it); what the dataplane cannot hold it refuses when applying, naming the
// object and field. Pure functions over plain data; any thread; no DPDK.
#ifndef SLUICE_CONTROL_MODEL_MESSAGES_H_
#define SLUICE_CONTROL_MODEL_MESSAGES_H_

#include <vector>

#include "api/cluster_model.h"
#include "api/messages.h"

namespace sluice {

struct ModelMessages {
  api::NodeSettings node;                // node.neighbors left empty: they travel in `neighbors`
  std::vector<api::LeaseUpsert> leases;  // in the model's order
  // One per proxied Service port, in the model's order (Services, then
  // their ports).
  std::vector<api::ServicePort> ports;
  // One per entry of `ports`, same order and key (possibly no endpoints).
  std::vector<api::EndpointSetReplace> endpoints;
  api::NeighborsReplace neighbors;
};

ModelMessages MessagesFromModel(const ClusterModel& model);

}  // namespace sluice

#endif  // SLUICE_CONTROL_MODEL_MESSAGES_H_
