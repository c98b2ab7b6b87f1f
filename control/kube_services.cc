#include "control/kube_services.h"

#include <utility>

#include "control/model_messages.h"

namespace sluice {
namespace {

std::string Id(const std::string& ns, const std::string& name) { return ns + "/" + name; }

}  // namespace

std::string KubeServices::ServiceOf(const EndpointSliceSpec& s) {
  return Id(s.namespace_name, s.service_name);
}

KubeServices::Changes KubeServices::Recompute(const std::set<std::string>& ids) {
  Changes out;
  if (!complete()) return out;
  for (const std::string& id : ids) {
    // One Service's model: the Service, its slices in id order (as a whole
    // model lists them: the first slice naming an endpoint wins).
    ClusterModel m;
    if (auto s = services_.find(id); s != services_.end()) m.services.push_back(s->second);
    if (auto of = slices_of_.find(id); of != slices_of_.end() && !m.services.empty())
      for (const std::string& slice : of->second) m.endpoint_slices.push_back(slices_.at(slice));
    const ModelMessages mm = MessagesFromModel(m);
    std::set<std::string> now;
    for (const api::ServicePort& p : mm.ports) {
      const std::string key = api::FormatServicePortKey(p.key);
      now.insert(key);
      out.ports[key] = p;
    }
    for (const api::EndpointSetReplace& e : mm.endpoints)
      out.endpoints[api::FormatServicePortKey(e.key)] = e;
    std::set<std::string>& before = keys_of_[id];
    for (const std::string& key : before) {
      if (now.count(key) != 0) continue;
      out.ports[key] = std::nullopt;
      out.endpoints[key] = std::nullopt;
    }
    if (now.empty())
      keys_of_.erase(id);
    else
      before = std::move(now);
  }
  return out;
}

KubeServices::Changes KubeServices::SnapshotServices(std::vector<ServiceSpec> services) {
  std::set<std::string> ids;
  for (const auto& [id, s] : services_) ids.insert(id);
  services_.clear();
  for (ServiceSpec& s : services) {
    std::string id = Id(s.namespace_name, s.name);
    ids.insert(id);
    services_[std::move(id)] = std::move(s);
  }
  have_services_ = true;
  return Recompute(ids);
}

KubeServices::Changes KubeServices::SnapshotSlices(std::vector<EndpointSliceSpec> slices) {
  std::set<std::string> ids;
  for (const auto& [id, of] : slices_of_) ids.insert(id);
  slices_.clear();
  slices_of_.clear();
  for (EndpointSliceSpec& s : slices) {
    std::string id = Id(s.namespace_name, s.name);
    const std::string svc = ServiceOf(s);
    ids.insert(svc);
    slices_of_[svc].insert(id);
    slices_[std::move(id)] = std::move(s);
  }
  have_slices_ = true;
  // On completion every Service; else those whose slices were or are named.
  for (const auto& [id, s] : services_) ids.insert(id);
  return Recompute(ids);
}

KubeServices::Changes KubeServices::UpsertService(ServiceSpec service) {
  std::string id = Id(service.namespace_name, service.name);
  services_[id] = std::move(service);
  return Recompute({id});
}

KubeServices::Changes KubeServices::DeleteService(const std::string& id) {
  if (services_.erase(id) == 0) return {};
  return Recompute({id});
}

KubeServices::Changes KubeServices::UpsertSlice(EndpointSliceSpec slice) {
  const std::string id = Id(slice.namespace_name, slice.name);
  std::set<std::string> affected = {ServiceOf(slice)};
  if (auto old = slices_.find(id); old != slices_.end()) {
    // Relabelled to another Service: the old one loses it.
    const std::string was = ServiceOf(old->second);
    if (affected.count(was) == 0) {
      affected.insert(was);
      slices_of_[was].erase(id);
      if (slices_of_[was].empty()) slices_of_.erase(was);
    }
  }
  slices_of_[ServiceOf(slice)].insert(id);
  slices_[id] = std::move(slice);
  return Recompute(affected);
}

KubeServices::Changes KubeServices::DeleteSlice(const std::string& id) {
  auto it = slices_.find(id);
  if (it == slices_.end()) return {};
  const std::string svc = ServiceOf(it->second);
  slices_.erase(it);
  if (auto of = slices_of_.find(svc); of != slices_of_.end()) {
    of->second.erase(id);
    if (of->second.empty()) slices_of_.erase(of);
  }
  return Recompute({svc});
}

}  // namespace sluice
