#include "control/agent.h"

#include <unistd.h>

#include <cstdio>
#include <deque>
#include <random>
#include <thread>
#include <variant>

#include "absl/strings/str_format.h"
#include "api/codec.h"

namespace sluice {
namespace {

// Sleeps up to `d`, waking early when `stop` is set.
void SleepUnlessStopped(const std::atomic<bool>& stop, std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

uint64_t EpochNow() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(WallClock::now().time_since_epoch())
          .count());
}

// Puts into *dirty the keys whose value differs between `from` and `to`
// (changed, added or gone); returns how many.
template <typename Map, typename Same>
uint64_t MarkChanged(const Map& from, const Map& to, Same same, std::set<std::string>* dirty) {
  uint64_t n = 0;
  for (const auto& [k, v] : to) {
    auto it = from.find(k);
    if (it != from.end() && same(it->second, v)) continue;
    ++n;
    dirty->insert(k);
  }
  for (const auto& [k, v] : from) {
    if (to.count(k) != 0) continue;
    ++n;
    dirty->insert(k);
  }
  return n;
}

// Applies `updates` to `have` (a value replaces the entry, nullopt removes
// it); puts into *dirty the keys that really changed; returns how many.
template <typename Map, typename Updates, typename Same>
uint64_t ApplyUpdates(Map* have, Updates& updates, Same same, std::set<std::string>* dirty) {
  uint64_t n = 0;
  for (auto& [k, v] : updates) {
    auto it = have->find(k);
    if (!v) {
      if (it == have->end()) continue;
      have->erase(it);
    } else if (it == have->end() || !same(it->second, *v)) {
      (*have)[k] = std::move(*v);
    } else {
      continue;
    }
    ++n;
    dirty->insert(k);
  }
  return n;
}

}  // namespace

Agent::Agent(Config config, ProxyHealth* health, ProxyMetrics* metrics)
    : config_(std::move(config)), health_(health), metrics_(metrics) {}

void Agent::Changed(WallClock::time_point at) {
  ++change_seq_;
  if (!oldest_change_) oldest_change_ = at;
  if (health_ != nullptr) health_->QueuedUpdate(at);
  changed_cv_.notify_all();
}

void Agent::SetNode(const NodeSpec& node) {
  std::lock_guard<std::mutex> l(mu_);
  node_ = node;
  Changed(WallClock::now());
}

void Agent::SetFlannel(const FlannelNetworkConfig& network,
                       const std::vector<FlannelLease>& leases) {
  std::lock_guard<std::mutex> l(mu_);
  network_ = network;
  leases_.clear();
  for (const FlannelLease& lease : leases)
    leases_[{lease.subnet.address, lease.subnet.length}] = lease;
  Changed(WallClock::now());
}

void Agent::UpsertLease(const FlannelLease& lease) {
  std::lock_guard<std::mutex> l(mu_);
  leases_[{lease.subnet.address, lease.subnet.length}] = lease;
  Changed(WallClock::now());
}

void Agent::DeleteLease(const Ipv4Prefix& subnet) {
  std::lock_guard<std::mutex> l(mu_);
  leases_.erase({subnet.address, subnet.length});
  Changed(WallClock::now());
}

void Agent::SetServices(std::map<std::string, api::ServicePort> ports,
                        std::map<std::string, api::EndpointSetReplace> endpoints) {
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t svc = MarkChanged(ports_, ports, SameServicePort, &dirty_services_);
  const uint64_t eps = MarkChanged(endpoints_, endpoints, SameEndpoints, &dirty_services_);
  if (metrics_ != nullptr) metrics_->CountChanges(svc, eps, WallClock::now());
  ports_ = std::move(ports);
  endpoints_ = std::move(endpoints);
  services_known_ = true;
  Changed(WallClock::now());
}

void Agent::UpdateServices(
    std::map<std::string, std::optional<api::ServicePort>> ports,
    std::map<std::string, std::optional<api::EndpointSetReplace>> endpoints) {
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t svc = ApplyUpdates(&ports_, ports, SameServicePort, &dirty_services_);
  const uint64_t eps = ApplyUpdates(&endpoints_, endpoints, SameEndpoints, &dirty_services_);
  if (metrics_ != nullptr) metrics_->CountChanges(svc, eps, WallClock::now());
  const bool first = !services_known_;
  services_known_ = true;
  if (first || svc + eps != 0) Changed(WallClock::now());
}

DesiredState Agent::DesiredFor(const std::set<std::string>* keys) const {
  DesiredState s;
  if (node_ && network_) {
    api::NodeSettings n;
    n.node = *node_;
    n.node.neighbors.clear();  // they travel in NeighborsReplace
    n.network = *network_;
    s.node = n;
  }
  if (node_) s.neighbors = node_->neighbors;
  s.leases = leases_;
  if (keys == nullptr) {
    s.ports = ports_;
    s.endpoints = endpoints_;
    return s;
  }
  for (const std::string& k : *keys) {
    if (auto p = ports_.find(k); p != ports_.end()) s.ports.insert(*p);
    if (auto e = endpoints_.find(k); e != endpoints_.end()) s.endpoints.insert(*e);
  }
  return s;
}

bool Agent::Ready() const {
  std::lock_guard<std::mutex> l(mu_);
  return node_.has_value() && network_.has_value() && services_known_;
}

Agent::Status Agent::status() const {
  std::lock_guard<std::mutex> l(mu_);
  return status_;
}

bool Agent::SendBatch(api::Client& client, const std::vector<api::Message>& batch) {
  std::deque<std::pair<uint64_t, size_t>> in_flight;  // request id, index in batch
  size_t next = 0;
  uint64_t ok = 0, rejected = 0;
  std::string broke;
  while (next < batch.size() || !in_flight.empty()) {
    while (next < batch.size() && in_flight.size() < config_.window) {
      absl::StatusOr<uint64_t> id = client.Send(batch[next], config_.call_timeout);
      if (!id.ok()) {
        broke = std::string(id.status().message());
        break;
      }
      in_flight.emplace_back(*id, next++);
    }
    if (!broke.empty() || in_flight.empty()) break;
    absl::StatusOr<api::Frame> reply = client.Receive(config_.call_timeout);
    if (!reply.ok()) {
      broke = std::string(reply.status().message());
      break;
    }
    // Replies come in request order; one for a request we gave up on is skipped.
    while (!in_flight.empty() && in_flight.front().first < reply->request_id) in_flight.pop_front();
    if (in_flight.empty() || in_flight.front().first != reply->request_id) continue;
    const size_t index = in_flight.front().second;
    in_flight.pop_front();
    if (const auto* e = std::get_if<api::Error>(&reply->message)) {
      ++rejected;
      std::fprintf(stderr, "sluice-control: dataplane rejected %s: %s%s%s%s\n",
                   api::MessageTypeName(api::TypeOf(batch[index])).c_str(), e->object.c_str(), e->field.empty() ? "" : ": ",
                   e->field.c_str(), (": " + e->message).c_str());
    } else {
      ++ok;
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  status_.applied += ok;
  status_.rejected += rejected;
  if (!broke.empty()) {
    status_.last_error = broke;
    return false;
  }
  return true;
}

void Agent::Run(const std::atomic<bool>& stop) {
  std::mt19937_64 rng(static_cast<uint64_t>(getpid()) ^ EpochNow());
  auto backoff = config_.retry_min;
  uint64_t last_epoch = 0;
  bool said_waiting = false;
  while (!stop.load()) {
    if (!Ready()) {
      if (!said_waiting) {
        std::fprintf(stderr, "sluice-control: waiting for every source's first state before "
                             "syncing the dataplane\n");
        said_waiting = true;
      }
      SleepUnlessStopped(stop, std::chrono::milliseconds(50));
      continue;
    }
    absl::StatusOr<api::Client> client = api::Client::Connect(config_.socket_path,
                                                               config_.call_timeout);
    absl::StatusOr<api::Message> hello;
    if (client.ok()) {
      api::Hello h;
      h.client = absl::StrFormat("%s (pid %d)", config_.client_name, getpid());
      h.want_write = true;
      hello = client->Call(h, config_.call_timeout);
    }
    const api::HelloReply* hr =
        client.ok() && hello.ok() ? std::get_if<api::HelloReply>(&*hello) : nullptr;
    if (hr == nullptr || !hr->writer) {
      std::string why = !client.ok()  ? std::string(client.status().message())
                        : !hello.ok() ? std::string(hello.status().message())
                        : hr == nullptr ? "unexpected answer to Hello"
                                        : "the dataplane grants this process read access only";
      {
        std::lock_guard<std::mutex> l(mu_);
        if (status_.connected || status_.last_error != why)
          std::fprintf(stderr, "sluice-control: dataplane %s: %s; retrying\n",
                       config_.socket_path.c_str(), why.c_str());
        status_.connected = false;
        status_.last_error = why;
      }
      // Bounded exponential backoff with jitter (50-100% of the step).
      std::uniform_int_distribution<int64_t> jitter(backoff.count() / 2, backoff.count());
      SleepUnlessStopped(stop, std::chrono::milliseconds(jitter(rng)));
      backoff = std::min(backoff * 2, config_.retry_max);
      continue;
    }
    backoff = config_.retry_min;
    // A full sync on every connect: a new epoch, larger than any the
    // dataplane completed and than ours.
    uint64_t epoch = std::max({EpochNow(), hr->last_epoch + 1, last_epoch + 1});
    DesiredState sent;
    uint64_t seq;
    std::optional<WallClock::time_point> since;
    {
      std::lock_guard<std::mutex> l(mu_);
      sent = DesiredFor(nullptr);
      dirty_services_.clear();
      seq = change_seq_;
      since = oldest_change_;
      oldest_change_.reset();
      status_.connected = true;
      status_.instance = hr->instance;
    }
    auto t0 = std::chrono::steady_clock::now();
    const std::vector<api::Message> full = FullSyncMessages(sent, epoch);
    if (!SendBatch(*client, full)) continue;
    const auto done = WallClock::now();
    last_epoch = epoch;
    {
      std::lock_guard<std::mutex> l(mu_);
      status_.epoch = epoch;
      ++status_.full_syncs;
    }
    std::printf("sluice-control: full sync (epoch %lu) to dataplane %016lx: %zu messages in %.1f ms\n",
                static_cast<unsigned long>(epoch), static_cast<unsigned long>(hr->instance),
                full.size(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
    std::fflush(stdout);
    if (metrics_ != nullptr)
      metrics_->ObserveSync(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), done);
    if (health_ != nullptr) health_->Updated(done);
    if (config_.on_applied) config_.on_applied(sent, nullptr);
    if (metrics_ != nullptr && since)
      metrics_->ObserveNetworkProgramming(std::chrono::duration<double>(done - *since).count());
    // Deltas until the connection breaks.
    bool alive = true;
    while (alive && !stop.load()) {
      DesiredState want;
      std::set<std::string> keys;
      bool renamed = false;
      {
        std::unique_lock<std::mutex> l(mu_);
        changed_cv_.wait_for(l, std::chrono::milliseconds(200),
                             [&] { return change_seq_ != seq || stop.load(); });
        if (change_seq_ == seq) {
          // Idle: make sure the dataplane is still there (a restarted one
          // needs a full sync even if nothing changed here).
          l.unlock();
          api::Show probe;
          probe.what = "status";
          absl::StatusOr<api::Message> r = client->Call(probe, config_.call_timeout);
          alive = r.ok();
          if (!alive) {
            std::lock_guard<std::mutex> g(mu_);
            status_.last_error = std::string(r.status().message());
          }
          continue;
        }
        // A renamed node re-sends every endpoint set (DeltaMessages): the
        // whole state, not the dirty keys.
        renamed = sent.node && node_ && sent.node->node.name != node_->name;
        keys.swap(dirty_services_);
        want = DesiredFor(renamed ? nullptr : &keys);
        seq = change_seq_;
        since = oldest_change_;
        oldest_change_.reset();
      }
      const std::set<std::string>* const which = renamed ? nullptr : &keys;
      const std::vector<api::Message> delta = DeltaMessages(sent, want, which);
      t0 = std::chrono::steady_clock::now();
      alive = SendBatch(*client, delta);
      if (!alive) break;
      const auto at = WallClock::now();
      ApplyDelta(&sent, want, which);
      if (config_.verbose)
        std::printf("sluice-control: %zu changes applied in %.2f ms\n", delta.size(),
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count());
      if (metrics_ != nullptr)
        metrics_->ObserveSync(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), at);
      if (health_ != nullptr) health_->Updated(at);
      if (config_.on_applied) config_.on_applied(sent, which);
      if (metrics_ != nullptr && since)
        metrics_->ObserveNetworkProgramming(std::chrono::duration<double>(at - *since).count());
    }
    std::lock_guard<std::mutex> l(mu_);
    status_.connected = false;
    std::fprintf(stderr, "sluice-control: lost the dataplane (%s); reconnecting\n",
                 status_.last_error.c_str());
  }
}

}  // namespace sluice
