#include "control/model_messages.h"

#include <set>
#include <string>
#include <unordered_map>
#include <utility>

namespace sluice {
namespace {

std::string ServiceId(const std::string& ns, const std::string& name) { return ns + "/" + name; }

}  // namespace

ModelMessages MessagesFromModel(const ClusterModel& model) {
  ModelMessages m;
  m.node.node = model.node;
  m.node.node.neighbors.clear();
  m.node.network = model.network;
  for (const FlannelLease& l : model.leases) m.leases.push_back({l});
  m.neighbors.neighbors = model.node.neighbors;

  std::unordered_map<std::string, std::vector<const EndpointSliceSpec*>> slices;
  for (const EndpointSliceSpec& slice : model.endpoint_slices)
    slices[ServiceId(slice.namespace_name, slice.service_name)].push_back(&slice);
  for (const ServiceSpec& svc : model.services) {
    if (svc.type == "ExternalName") continue;  // DNS only
    if (svc.cluster_ips.empty()) continue;     // headless: DNS only, nothing to proxy
    const auto found = slices.find(ServiceId(svc.namespace_name, svc.name));
    for (const ServicePortSpec& sp : svc.ports) {
      if (sp.protocol == L4Protocol::kSctp) continue;  // not in the dataplane yet
      api::ServicePort p;
      p.key = {svc.namespace_name, svc.name, sp.name, sp.protocol};
      p.type = svc.type;
      p.port = sp.port;
      p.node_port = sp.node_port;
      p.cluster_ips = svc.cluster_ips;
      p.external_ips = svc.external_ips;
      p.load_balancer_ips = svc.load_balancer_ips;
      p.external_traffic_policy = svc.external_traffic_policy;
      p.health_check_node_port = svc.health_check_node_port;
      p.internal_traffic_policy = svc.internal_traffic_policy;
      api::EndpointSetReplace eps;
      eps.key = p.key;
      if (found != slices.end()) {
        std::set<std::pair<uint32_t, uint16_t>> seen;
        for (const EndpointSliceSpec* slice : found->second) {
          for (const EndpointSlicePortSpec& port : slice->ports) {
            if (port.name != sp.name || port.protocol != sp.protocol) continue;
            for (const EndpointSpec& e : slice->endpoints) {
              if (!seen.insert({e.ip, port.port}).second) continue;
              api::Endpoint ep;
              ep.ip = e.ip;
              ep.port = port.port;
              ep.ready = e.ready;
              ep.serving = e.serving;
              ep.terminating = e.terminating;
              ep.node_name = e.node_name;
              eps.endpoints.push_back(std::move(ep));
            }
          }
        }
      }
      m.ports.push_back(std::move(p));
      m.endpoints.push_back(std::move(eps));
    }
  }
  return m;
}

}  // namespace sluice
