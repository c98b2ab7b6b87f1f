#include "dataplane/state/service_programmer.h"

#include <rte_cycles.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice {
namespace {

constexpr uint32_t kNoSlot = UINT32_MAX;

uint64_t KeyBits(const ServiceKey& k) {
  uint64_t b;
  std::memcpy(&b, &k, sizeof(b));
  return b;
}

const char* ProtoName(uint8_t p) {
  return p == kProtoTcp ? "TCP" : p == kProtoUdp ? "UDP" : "SCTP";
}

// "10.96.0.10:53/UDP", or "30053/UDP" for a NodePort.
std::string DescribeKey(const ServiceKey& k) {
  if (k.ip == 0) return absl::StrFormat("%u/%s", k.port, ProtoName(k.proto));
  return absl::StrFormat("%s:%u/%s", FormatIpv4(k.ip), k.port, ProtoName(k.proto));
}

// Why `ip` can be neither a Service address nor an endpoint (the ranges the
// workers drop as martians), or null.
const char* BadAddress(uint32_t ip) {
  if ((ip >> 24) == 127) return "is a loopback address";
  return IsUnicastHost(ip) ? nullptr : "is not a unicast address";
}

absl::Status Invalid(const std::string& id, const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("Service ", id, ": ", field, ": ", what));
}

std::string PortName(const api::ServicePortKey& k) {
  return absl::StrCat(k.namespace_name, "/", k.service_name, k.port_name.empty() ? "" : ":",
                      k.port_name);
}

bool EndpointLess(const Endpoint& a, const Endpoint& b) {
  return a.ip != b.ip ? a.ip < b.ip : a.port < b.port;
}

// The endpoints of both lists, sorted, once each.
std::vector<Endpoint> Union(const ChosenEndpoints& c) {
  std::vector<Endpoint> u(c.all);
  u.insert(u.end(), c.local.begin(), c.local.end());
  std::sort(u.begin(), u.end(), EndpointLess);
  u.erase(std::unique(u.begin(), u.end()), u.end());
  return u;
}

}  // namespace

struct ServiceProgrammer::Record {
  std::string id;              // FormatServicePortKey
  std::string name;            // "ns/name:port", for traces
  bool known = false;          // upserted (else only a pending endpoint set)
  bool proxied = false;        // holds a slot and keys
  bool has_endpoints = false;  // an endpoint set was given
  uint8_t proto = 0;
  uint8_t flags = 0;
  uint32_t slot = kNoSlot;
  std::vector<KeyEntry> keys;  // installed (when proxied)
  ChosenEndpoints chosen;      // what its set holds (or will, once proxied)
  uint64_t plan = 0;           // the plan that lists it, while one runs
};

// One Service port's change: its final state.
struct ServiceProgrammer::Item {
  std::string id;
  Record* record = nullptr;  // null: a new one
  bool known = false, proxied = false, has_endpoints = false;
  uint8_t proto = 0, flags = 0;
  std::string name;
  std::vector<KeyEntry> keys;  // when proxied
  ChosenEndpoints chosen;
  // Prepared: whether the slot gets a new set, and that set (null: the
  // directory's empty one).
  bool publish = false;
  EndpointSet* set = nullptr;
};

struct ServiceProgrammer::Plan {
  ServiceDirectory* dir = nullptr;
  std::string node_name;
  std::vector<Item> items;
  // The items' final keys -> item.
  std::unordered_map<uint64_t, size_t> final_owner;
  ~Plan() {
    for (Item& it : items)
      if (it.set != nullptr) dir->FreeUnpublished(it.set);
  }
};

ServiceProgrammer::PreparedSync::PreparedSync() = default;
ServiceProgrammer::PreparedSync::PreparedSync(PreparedSync&&) noexcept = default;
ServiceProgrammer::PreparedSync& ServiceProgrammer::PreparedSync::operator=(
    PreparedSync&&) noexcept = default;
ServiceProgrammer::PreparedSync::~PreparedSync() = default;

namespace {

std::string FieldOf(ServiceEntryKind kind, uint32_t index) {
  switch (kind) {
    case ServiceEntryKind::kClusterIp:
      return absl::StrFormat("clusterIPs[%u]", index);
    case ServiceEntryKind::kNodePort:
      return "nodePort";
    case ServiceEntryKind::kExternalIp:
      return absl::StrFormat("externalIPs[%u]", index);
    case ServiceEntryKind::kLoadBalancerIp:
      return absl::StrFormat("loadBalancerIPs[%u]", index);
  }
  return "?";
}

}  // namespace

ServiceProgrammer::ServiceProgrammer(const Config& config, ServiceDirectory* directory,
                                     ConntrackTable* conntrack, const TablePublisher* tables)
    : config_(config), dir_(directory), conntrack_(conntrack), tables_(tables) {}

ServiceProgrammer::~ServiceProgrammer() = default;

absl::Status ServiceProgrammer::FromSpec(const api::ServicePort& p, const std::string& id,
                                         Item* it) {
  it->known = true;
  it->proxied = false;
  it->keys.clear();
  it->name = PortName(p.key);
  it->proto = static_cast<uint8_t>(p.key.protocol);
  it->flags = p.external_traffic_policy == TrafficPolicy::kLocal ? EndpointSet::kExternalLocalOnly
                                                                 : EndpointSet::kMasqueradeExternal;
  if (p.internal_traffic_policy == TrafficPolicy::kLocal)
    it->flags |= EndpointSet::kInternalLocalOnly;
  if (p.key.namespace_name.empty() || p.key.service_name.empty())
    return Invalid(id, "key", "namespace and name are required");
  const L4Protocol proto = p.key.protocol;
  if (proto != L4Protocol::kTcp && proto != L4Protocol::kUdp && proto != L4Protocol::kSctp)
    return Invalid(id, "key.protocol",
                   absl::StrFormat("%u is not TCP, UDP or SCTP", static_cast<unsigned>(proto)));
  if (p.type != "ClusterIP" && p.type != "NodePort" && p.type != "LoadBalancer" &&
      p.type != "ExternalName")
    return Invalid(
        id, "type",
        absl::StrFormat("\"%s\" is not ClusterIP, NodePort, LoadBalancer or ExternalName", p.type));
  // Not proxied (as kube-proxy): ExternalName (DNS only), SCTP (not in the
  // dataplane yet), headless (no ClusterIP: DNS only).
  if (p.type == "ExternalName" || proto == L4Protocol::kSctp || p.cluster_ips.empty())
    return absl::OkStatus();
  if (p.port == 0) return Invalid(id, "port", "0 is not a port");
  if (p.node_port != 0 && p.type == "ClusterIP")
    return Invalid(id, "nodePort", absl::StrFormat("%u on a ClusterIP Service", p.node_port));
  auto add = [&](uint32_t ip, uint16_t port, ServiceEntryKind kind,
                 uint32_t index) -> absl::Status {
    if (kind != ServiceEntryKind::kNodePort) {
      if (const char* bad = BadAddress(ip))
        return Invalid(id, FieldOf(kind, index), absl::StrCat(FormatIpv4(ip), " ", bad));
    }
    const ServiceKey k{ip, port, static_cast<uint8_t>(proto), 0};
    for (const KeyEntry& e : it->keys) {
      if (KeyBits(e.key) == KeyBits(k))
        return Invalid(id, FieldOf(kind, index),
                       absl::StrFormat("%s is also %s", DescribeKey(k), FieldOf(e.kind, e.index)));
    }
    it->keys.push_back({k, kind, index});
    return absl::OkStatus();
  };
  for (size_t i = 0; i < p.cluster_ips.size(); ++i)
    if (absl::Status s = add(p.cluster_ips[i], p.port, ServiceEntryKind::kClusterIp, i); !s.ok())
      return s;
  if (p.node_port != 0)
    if (absl::Status s = add(0, p.node_port, ServiceEntryKind::kNodePort, 0); !s.ok()) return s;
  for (size_t i = 0; i < p.external_ips.size(); ++i)
    if (absl::Status s = add(p.external_ips[i], p.port, ServiceEntryKind::kExternalIp, i); !s.ok())
      return s;
  for (size_t i = 0; i < p.load_balancer_ips.size(); ++i)
    if (absl::Status s = add(p.load_balancer_ips[i], p.port, ServiceEntryKind::kLoadBalancerIp, i);
        !s.ok())
      return s;
  it->proxied = true;
  return absl::OkStatus();
}

namespace {

// Checks an endpoint set and makes kube-proxy's choice from it.
absl::Status ChooseFor(const std::vector<api::Endpoint>& eps, const std::string& id,
                       const std::string& node_name, uint32_t max, ChosenEndpoints* out) {
  std::unordered_map<uint64_t, uint32_t> seen;
  const bool small = eps.size() <= 16;
  if (!small) seen.reserve(eps.size());
  for (size_t i = 0; i < eps.size(); ++i) {
    const api::Endpoint& e = eps[i];
    if (const char* bad = BadAddress(e.ip))
      return Invalid(id, absl::StrFormat("endpoints[%u].ip", i),
                     absl::StrCat(FormatIpv4(e.ip), " ", bad));
    if (e.port == 0)
      return Invalid(id, absl::StrFormat("endpoints[%u].port", i), "0 is not a port");
    size_t first = i;
    if (small) {
      for (size_t j = 0; j < i; ++j)
        if (eps[j].ip == e.ip && eps[j].port == e.port) {
          first = j;
          break;
        }
    } else {
      first = seen.emplace(uint64_t{e.ip} << 16 | e.port, i).first->second;
    }
    if (first != i)
      return Invalid(
          id, absl::StrFormat("endpoints[%u]", i),
          absl::StrFormat("%s:%u is also endpoints[%u]", FormatIpv4(e.ip), e.port, first));
  }
  *out = ChooseServiceEndpoints(eps, node_name);
  if (out->all.size() > max)
    return Invalid(id, "endpoints",
                   absl::StrFormat("%u endpoints, more than the %u a Service port holds",
                                   out->all.size(), max));
  if (out->local.size() > max)
    return Invalid(
        id, "endpoints",
        absl::StrFormat("%u endpoints on this node, more than the %u a Service port holds",
                        out->local.size(), max));
  return absl::OkStatus();
}

}  // namespace

void ServiceProgrammer::BeginCall(Plan* plan) {
  ++stats_.calls;
  FlushFlowRemovals();
  plan->dir = dir_;
  plan->node_name = config_.node_name;
}

ServiceProgrammer::Item ServiceProgrammer::ItemFor(const api::ServicePortKey& key) const {
  Item it;
  it.id = api::FormatServicePortKey(key);
  if (auto f = records_.find(it.id); f != records_.end()) it.record = f->second.get();
  return it;
}

absl::Status ServiceProgrammer::UpsertServicePort(const api::ServicePort& port) {
  Plan plan;
  BeginCall(&plan);
  Item it = ItemFor(port.key);
  if (absl::Status s = FromSpec(port, it.id, &it); !s.ok()) return s;
  if (it.record != nullptr && it.record->has_endpoints) {
    it.has_endpoints = true;
    it.chosen = it.record->chosen;
  }
  plan.items.push_back(std::move(it));
  return Run(plan);
}

absl::Status ServiceProgrammer::ReplaceEndpoints(const api::EndpointSetReplace& set) {
  Plan plan;
  BeginCall(&plan);
  Item it = ItemFor(set.key);
  if (absl::Status s = ChooseFor(set.endpoints, it.id, config_.node_name,
                                 dir_->max_endpoints_per_set(), &it.chosen);
      !s.ok())
    return s;
  it.has_endpoints = true;
  if (const Record* r = it.record; r != nullptr) {
    it.known = r->known;
    it.proxied = r->proxied;
    it.proto = r->proto;
    it.flags = r->flags;
    it.name = r->name;
    it.keys = r->keys;
  } else {
    it.name = PortName(set.key);
    it.proto = static_cast<uint8_t>(set.key.protocol);
  }
  plan.items.push_back(std::move(it));
  return Run(plan);
}

absl::Status ServiceProgrammer::DeleteServicePort(const api::ServicePortKey& key) {
  Plan plan;
  BeginCall(&plan);
  Item it = ItemFor(key);
  if (it.record == nullptr)
    return absl::NotFoundError(absl::StrCat("Service ", it.id, ": no such Service port"));
  plan.items.push_back(std::move(it));  // final state: nothing
  return Run(plan);
}

absl::StatusOr<ServiceProgrammer::PreparedSync> ServiceProgrammer::PrepareSync(
    const std::vector<api::ServicePort>& ports, const std::vector<api::EndpointSetReplace>& sets,
    const std::string& node_name) {
  PreparedSync prepared;
  prepared.plan_ = std::make_unique<Plan>();
  Plan& plan = *prepared.plan_;
  plan.dir = dir_;
  plan.node_name = node_name;
  // Items are built in place and never move (reserved): the index keys
  // view their ids.
  std::unordered_map<std::string_view, size_t> index;
  index.reserve(ports.size() + sets.size() + records_.size());
  plan.items.reserve(ports.size() + sets.size() + records_.size());
  for (const api::ServicePort& p : ports) {
    Item& it = plan.items.emplace_back();
    it.id = api::FormatServicePortKey(p.key);
    if (!index.emplace(it.id, plan.items.size() - 1).second)
      return absl::InvalidArgumentError(absl::StrCat("Service ", it.id, ": listed twice"));
    if (auto f = records_.find(it.id); f != records_.end()) it.record = f->second.get();
    if (absl::Status s = FromSpec(p, it.id, &it); !s.ok()) return s;
  }
  for (const api::EndpointSetReplace& set : sets) {
    std::string id = api::FormatServicePortKey(set.key);
    auto at = index.find(id);
    if (at == index.end()) {  // no port for it: pending
      Item& it = plan.items.emplace_back();
      it.id = std::move(id);
      it.name = PortName(set.key);
      it.proto = static_cast<uint8_t>(set.key.protocol);
      if (auto f = records_.find(it.id); f != records_.end()) it.record = f->second.get();
      at = index.emplace(it.id, plan.items.size() - 1).first;
    }
    Item& it = plan.items[at->second];
    const std::string& id_ref = it.id;
    if (it.has_endpoints)
      return absl::InvalidArgumentError(
          absl::StrCat("Service ", id_ref, ": endpoints: listed twice"));
    if (absl::Status s =
            ChooseFor(set.endpoints, id_ref, node_name, dir_->max_endpoints_per_set(), &it.chosen);
        !s.ok())
      return s;
    it.has_endpoints = true;
  }
  // Everything the sync does not mention goes.
  for (auto& [id, record] : records_) {
    if (index.count(id) != 0) continue;
    Item& it = plan.items.emplace_back();
    it.id = id;
    it.record = record.get();
  }
  if (absl::Status s = Prepare(plan); !s.ok()) return s;
  return prepared;
}

absl::Status ServiceProgrammer::CommitSync(PreparedSync sync) {
  ++stats_.calls;
  FlushFlowRemovals();
  config_.node_name = sync.plan_->node_name;
  return Commit(*sync.plan_);
}

absl::Status ServiceProgrammer::Sync(const std::vector<api::ServicePort>& ports,
                                     const std::vector<api::EndpointSetReplace>& sets,
                                     const std::string& node_name) {
  auto prepared = PrepareSync(ports, sets, node_name);
  if (!prepared.ok()) return prepared.status();
  return CommitSync(*std::move(prepared));
}

absl::Status ServiceProgrammer::Run(Plan& plan) {
  if (absl::Status s = Prepare(plan); !s.ok()) return s;
  return Commit(plan);
}

absl::Status ServiceProgrammer::Prepare(Plan& plan) {
  if (plan.items.empty()) return absl::OkStatus();
  const uint64_t id = ++plan_id_;
  for (Item& it : plan.items)
    if (it.record != nullptr) it.record->plan = id;
  // 1. No key claimed twice in the final state: by two of the plan's items,
  // or by an item and a port the plan leaves as it is.
  size_t total_keys = 0;
  for (const Item& it : plan.items) total_keys += it.keys.size();
  plan.final_owner.reserve(total_keys);
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const Item& it = plan.items[i];
    for (const KeyEntry& k : it.keys) {
      const uint64_t bits = KeyBits(k.key);
      auto [at, fresh] = plan.final_owner.emplace(bits, i);
      if (!fresh)
        return Invalid(it.id, FieldOf(k.kind, k.index),
                       absl::StrFormat("%s is already Service %s's", DescribeKey(k.key),
                                       plan.items[at->second].id));
      if (auto o = owner_.find(bits); o != owner_.end() && o->second->plan != id)
        return Invalid(
            it.id, FieldOf(k.kind, k.index),
            absl::StrFormat("%s is already Service %s's", DescribeKey(k.key), o->second->id));
    }
  }
  // 2. Capacities of the final state.
  int64_t slots = dir_->slot_count(), keys = dir_->key_count();
  int64_t pending = static_cast<int64_t>(pending_);
  const Item* first_slot = nullptr;
  const Item* first_keys = nullptr;
  const Item* first_pending = nullptr;
  for (const Item& it : plan.items) {
    const Record* r = it.record;
    const bool was_proxied = r != nullptr && r->proxied;
    const int64_t slot_delta = int64_t{it.proxied} - int64_t{was_proxied};
    const int64_t key_delta = static_cast<int64_t>(it.proxied ? it.keys.size() : 0) -
                              static_cast<int64_t>(was_proxied ? r->keys.size() : 0);
    const bool will_pend = !it.known && it.has_endpoints;
    const bool pended = r != nullptr && !r->known && r->has_endpoints;
    slots += slot_delta;
    keys += key_delta;
    pending += int64_t{will_pend} - int64_t{pended};
    if (slot_delta > 0 && first_slot == nullptr) first_slot = &it;
    if (key_delta > 0 && first_keys == nullptr) first_keys = &it;
    if (will_pend && !pended && first_pending == nullptr) first_pending = &it;
  }
  if (slots > dir_->slot_capacity())
    return absl::ResourceExhaustedError(absl::StrFormat(
        "Service %s: the Service directory is full: it holds %u Service ports",
        first_slot != nullptr ? first_slot->id : plan.items.front().id, dir_->slot_capacity()));
  if (keys > dir_->key_capacity())
    return absl::ResourceExhaustedError(absl::StrFormat(
        "Service %s: %d keys (addresses and NodePorts) would pass the Service directory's %u",
        first_keys != nullptr ? first_keys->id : plan.items.front().id, keys,
        dir_->key_capacity()));
  if (pending > config_.max_pending_sets)
    return absl::ResourceExhaustedError(absl::StrFormat(
        "Service %s: endpoints: %u endpoint sets already wait for their Service port, the most "
        "kept",
        first_pending != nullptr ? first_pending->id : plan.items.front().id,
        config_.max_pending_sets));
  // 3. The endpoint sets to publish, built now: the commit cannot run short
  // of memory halfway.
  for (Item& it : plan.items) {
    if (!it.proxied) continue;
    const Record* r = it.record;
    const bool fresh_slot = r == nullptr || !r->proxied;
    if (it.chosen.empty()) {
      it.publish = fresh_slot || !r->chosen.empty();  // the empty set
      continue;
    }
    if (!fresh_slot && !r->chosen.empty() && r->chosen == it.chosen && r->flags == it.flags)
      continue;  // unchanged: keeps its set
    auto set = dir_->NewEndpointSet(static_cast<uint32_t>(it.chosen.all.size()),
                                    static_cast<uint32_t>(it.chosen.local.size()), it.flags);
    if (!set.ok())
      return absl::Status(set.status().code(),
                          absl::StrCat("Service ", it.id, ": endpoints: ", set.status().message()));
    Endpoint* out = (*set)->endpoints();
    std::copy(it.chosen.all.begin(), it.chosen.all.end(), out);
    std::copy(it.chosen.local.begin(), it.chosen.local.end(), out + it.chosen.all.size());
    it.set = *set;
    it.publish = true;
  }
  return absl::OkStatus();
}

ServiceProgrammer::Record* ServiceProgrammer::Ensure(Item& it) {
  if (it.record == nullptr) {
    auto r = std::make_unique<Record>();
    r->id = it.id;
    it.record = r.get();
    records_.emplace(it.id, std::move(r));
  }
  return it.record;
}

absl::Status ServiceProgrammer::Commit(Plan& plan) {
  absl::Status status;
  std::vector<PurgeRule> rules;
  // A. Keys no Service port keeps go (keys moving to another of the plan's
  // ports stay, to be rewritten in B: never absent).
  for (Item& it : plan.items) {
    Record* r = it.record;
    if (r == nullptr || !r->proxied) continue;
    std::vector<ServiceKey> removed;
    for (const KeyEntry& k : r->keys) {
      const uint64_t bits = KeyBits(k.key);
      if (plan.final_owner.count(bits) != 0) continue;
      dir_->RemoveKey(k.key);
      owner_.erase(bits);
      removed.push_back(k.key);
    }
    if (r->proto == kProtoUdp && !removed.empty()) rules.push_back({std::move(removed), true, {}});
  }
  // B. Sets, slots, then keys: a key is added only once its slot has its set.
  for (Item& it : plan.items) {
    if (!it.proxied) continue;
    Record* r = Ensure(it);
    const bool was_proxied = r->proxied;
    const EndpointSet* set = it.set != nullptr ? it.set : dir_->empty_set();
    if (!was_proxied) {
      r->slot = dir_->AllocateSlot(set, it.name);
      if (it.set != nullptr) ++stats_.sets_published;
      it.set = nullptr;
    } else if (it.publish) {
      dir_->Publish(r->slot, set);
      if (it.set != nullptr) ++stats_.sets_published;
      it.set = nullptr;
    }
    std::vector<ServiceKey> added;
    for (const KeyEntry& k : it.keys) {
      const uint64_t bits = KeyBits(k.key);
      auto o = owner_.find(bits);
      const bool mine = o != owner_.end() && o->second == r;
      if (mine) {
        bool same_kind = false;
        for (const KeyEntry& old : r->keys)
          if (KeyBits(old.key) == bits) same_kind = old.kind == k.kind;
        if (same_kind) continue;
      }
      if (absl::Status s = dir_->AddKey(k.key, MakeServiceRef(r->slot, k.kind));
          !s.ok() && status.ok())
        status = s;
      owner_[bits] = r;
      if (!mine) added.push_back(k.key);
    }
    if (it.proto == kProtoUdp) {
      // kube-proxy's cleanup triggers: an endpoint gone, the first
      // endpoints, keys that are new to this port.
      const std::vector<Endpoint> now = Union(it.chosen);
      bool lost = false;
      if (was_proxied) {
        for (const Endpoint& e : Union(r->chosen))
          if (!std::binary_search(now.begin(), now.end(), e, EndpointLess)) lost = true;
      }
      const bool first = (!was_proxied || r->chosen.empty()) && !now.empty();
      if (lost || first) {
        PurgeRule rule;
        for (const KeyEntry& k : it.keys) rule.keys.push_back(k.key);
        rule.live = now;
        rules.push_back(std::move(rule));
      } else if (!added.empty()) {
        rules.push_back({std::move(added), false, now});
      }
    }
  }
  // C. Slots of ports no longer proxied (their keys are gone or moved).
  for (Item& it : plan.items) {
    Record* r = it.record;
    if (r == nullptr || !r->proxied || it.proxied) continue;
    dir_->ReleaseSlot(r->slot);
    r->slot = kNoSlot;
  }
  stats_.last_publish_tsc = rte_rdtsc();
  // D. The records.
  for (Item& it : plan.items) {
    Record* r = it.record;
    if (r != nullptr) pending_ -= !r->known && r->has_endpoints;
    if (!it.known && !it.has_endpoints) {
      if (r != nullptr) records_.erase(it.id);
      it.record = nullptr;
      continue;
    }
    r = Ensure(it);
    pending_ += !it.known && it.has_endpoints;
    r->known = it.known;
    r->proxied = it.proxied;
    r->has_endpoints = it.has_endpoints;
    r->proto = it.proto;
    r->flags = it.flags;
    r->name = std::move(it.name);
    r->keys = it.proxied ? std::move(it.keys) : std::vector<KeyEntry>();
    r->chosen = std::move(it.chosen);
  }
  if (!rules.empty()) RemoveFlows(rules);
  dir_->Reclaim();  // what earlier changes left, now past its grace period
  return status;
}

void ServiceProgrammer::RemoveFlows(const std::vector<PurgeRule>& rules) {
  if (conntrack_ == nullptr) return;
  const uint64_t t0 = rte_rdtsc();
  // Workers that loaded an old set may be creating flows from it: once they
  // all passed a quiescent state, every such flow is in the table.
  rte_rcu_qsbr_synchronize(dir_->qsbr(), RTE_QSBR_THRID_INVALID);
  std::unordered_map<uint64_t, std::vector<uint32_t>> by_key;
  for (uint32_t i = 0; i < rules.size(); ++i)
    for (const ServiceKey& k : rules[i].keys) by_key[KeyBits(k)].push_back(i);
  const TableSet* tables = tables_ != nullptr ? tables_->Current() : nullptr;
  const uint32_t capacity = conntrack_->capacity();
  for (uint32_t i = 0; i < capacity; ++i) {
    const ConntrackTable::EntrySnapshot e = conntrack_->SnapshotRacy(i);
    if (!e.in_use || e.original.proto != kProtoUdp) continue;
    bool remove = false;
    auto match = [&](const ServiceKey& k) {
      auto f = by_key.find(KeyBits(k));
      if (f == by_key.end()) return;
      const Endpoint ep{e.reply.src_ip, e.reply.src_port, 0};
      for (uint32_t r : f->second) {
        const PurgeRule& rule = rules[r];
        if (rule.all || !std::binary_search(rule.live.begin(), rule.live.end(), ep, EndpointLess))
          remove = true;
      }
    };
    match(ServiceKey{e.original.dst_ip, e.original.dst_port, kProtoUdp, 0});
    if (!remove && tables != nullptr && tables->node.IsLocalAddress(e.original.dst_ip))
      match(ServiceKey{0, e.original.dst_port, kProtoUdp, 0});
    if (!remove) continue;
    const uint32_t check = ConntrackTable::RemovalCheck(e.original, e.reply);
    ++stats_.removals_requested;
    if (!conntrack_->RequestRemoval(i, check)) backlog_.emplace_back(i, check);
  }
  ++stats_.scans;
  stats_.last_scan_cycles = rte_rdtsc() - t0;
}

size_t ServiceProgrammer::FlushFlowRemovals() {
  if (backlog_.empty() || conntrack_ == nullptr) return backlog_.size();
  size_t kept = 0;
  for (const auto& r : backlog_)
    if (!conntrack_->RequestRemoval(r.first, r.second)) backlog_[kept++] = r;
  backlog_.resize(kept);
  return kept;
}

size_t ServiceProgrammer::port_count() const {
  size_t n = 0;
  for (const auto& [id, r] : records_) n += r->known;
  return n;
}

size_t ServiceProgrammer::pending_count() const { return pending_; }

std::vector<api::ServicePortKey> ServiceProgrammer::Keys() const {
  // Ids are "namespace/name[:port]/PROTO"; Kubernetes names hold no '/' or ':'.
  std::vector<api::ServicePortKey> out;
  for (const auto& [id, r] : records_) {
    if (!r->known) continue;
    const size_t a = id.find('/'), b = id.rfind('/');
    if (a == std::string::npos || b == a) continue;
    api::ServicePortKey k;
    k.namespace_name = id.substr(0, a);
    std::string mid = id.substr(a + 1, b - a - 1);
    const size_t c = mid.find(':');
    k.service_name = mid.substr(0, c);
    if (c != std::string::npos) k.port_name = mid.substr(c + 1);
    const std::string proto = id.substr(b + 1);
    k.protocol = proto == "UDP" ? L4Protocol::kUdp : proto == "SCTP" ? L4Protocol::kSctp : L4Protocol::kTcp;
    out.push_back(std::move(k));
  }
  return out;
}

std::vector<ServiceProgrammer::PortView> ServiceProgrammer::View(uint32_t address,
                                                                 uint16_t port) const {
  std::vector<PortView> out;
  for (const auto& [id, r] : records_) {
    if (!r->known) continue;
    if (address != 0 || port != 0) {
      bool match = false;
      for (const KeyEntry& k : r->keys)
        match |= (address == 0 || k.key.ip == address) && (port == 0 || k.key.port == port);
      if (!match) continue;
    }
    PortView v;
    v.id = id;
    v.proxied = r->proxied;
    v.proto = r->proto;
    v.flags = r->flags;
    for (const KeyEntry& k : r->keys) v.keys.push_back({k.key, k.kind});
    v.all = r->chosen.all;
    v.local = r->chosen.local;
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const PortView& a, const PortView& b) { return a.id < b.id; });
  return out;
}

uint32_t ServiceProgrammer::SlotOf(const api::ServicePortKey& key) const {
  auto f = records_.find(api::FormatServicePortKey(key));
  return f != records_.end() && f->second->proxied ? f->second->slot : UINT32_MAX;
}

}  // namespace sluice
