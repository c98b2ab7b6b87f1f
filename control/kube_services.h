// KubeServices: the Services and EndpointSlices a Kubernetes API source
// delivered, kept per object, and what each Service gives the dataplane (its
// Service ports and endpoint sets, gathered as model_messages.h does for a
// whole model). A watch event recomputes only the Service it touches (a
// Service, or an EndpointSlice through its kubernetes.io/service-name
// label) and says which Service port keys changed, so that an event costs
// what it touches and not the number of Services in the cluster.
//
// The first answer comes once both kinds have been listed (before that,
// Services would look like Services with no endpoints); it holds every
// Service port. A relist (a snapshot) recomputes every Service it or the
// previous state names.
//
// Concurrency: none; the caller serialises (sluice-control's Kubernetes
// callback). Control side only.
#ifndef SLUICE_CONTROL_KUBE_SERVICES_H_
#define SLUICE_CONTROL_KUBE_SERVICES_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "api/cluster_model.h"
#include "api/messages.h"

namespace sluice {

class KubeServices {
 public:
  // By api::FormatServicePortKey: a value to hold, or nullopt to remove.
  struct Changes {
    std::map<std::string, std::optional<api::ServicePort>> ports;
    std::map<std::string, std::optional<api::EndpointSetReplace>> endpoints;
    bool empty() const { return ports.empty() && endpoints.empty(); }
  };

  Changes SnapshotServices(std::vector<ServiceSpec> services);
  Changes SnapshotSlices(std::vector<EndpointSliceSpec> slices);
  Changes UpsertService(ServiceSpec service);
  Changes DeleteService(const std::string& id);  // "namespace/name"
  Changes UpsertSlice(EndpointSliceSpec slice);
  Changes DeleteSlice(const std::string& id);  // "namespace/name" of the slice

  // Both kinds listed once.
  bool complete() const { return have_services_ && have_slices_; }
  size_t service_count() const { return services_.size(); }

 private:
  // The Service ports and sets of `ids` now, against what they gave before.
  Changes Recompute(const std::set<std::string>& ids);
  static std::string ServiceOf(const EndpointSliceSpec& s);

  bool have_services_ = false, have_slices_ = false;
  std::map<std::string, ServiceSpec> services_;        // by "namespace/name"
  std::map<std::string, EndpointSliceSpec> slices_;    // by the slice's "namespace/name"
  std::map<std::string, std::set<std::string>> slices_of_;  // Service id -> slice ids
  std::map<std::string, std::set<std::string>> keys_of_;    // Service id -> keys it gave
};

}  // namespace sluice

#endif  // SLUICE_CONTROL_KUBE_SERVICES_H_
