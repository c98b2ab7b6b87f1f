#include "dataplane/tables/overlay_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>

#include <atomic>
#include <set>
#include <string>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

std::pair<uint32_t, uint8_t> KeyOf(const VtepPeer& p) {
  return {p.subnet & PrefixMask(p.subnet_length), p.subnet_length};
}

bool SamePeer(const VtepPeer& a, const VtepPeer& b) {
  return a.public_ip == b.public_ip && a.local == b.local && a.vtep_mac == b.vtep_mac;
}

}  // namespace

absl::StatusOr<std::unique_ptr<OverlayTable>> OverlayTable::Create(rte_rcu_qsbr* qsbr) {
  static std::atomic<uint64_t> instance{0};
  const uint64_t id = instance.fetch_add(1);
  std::unique_ptr<OverlayTable> t(new OverlayTable());
  const std::string lpm_name = absl::StrFormat("sluice_lpm%lu", id);
  rte_lpm_config cfg = {};
  cfg.max_rules = kMaxLeases + 16;
  // A tbl8 group per /24 holding a lease longer than /24: at most one per
  // lease, freed synchronously (below) before a later add needs it.
  cfg.number_tbl8s = kMaxLeases + 16;
  t->lpm_ = rte_lpm_create(lpm_name.c_str(), SOCKET_ID_ANY, &cfg);
  if (t->lpm_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("subnet map: rte_lpm_create: %s", rte_strerror(rte_errno)));
  const std::string hash_name = absl::StrFormat("sluice_vtep%lu", id);
  rte_hash_parameters p = {};
  p.name = hash_name.c_str();
  p.entries = kMaxLeases;
  p.key_len = sizeof(uint32_t);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF | RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  t->by_public_ip_ = rte_hash_create(&p);
  if (t->by_public_ip_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("subnet map: rte_hash_create: %s", rte_strerror(rte_errno)));
  if (qsbr != nullptr) {
    rte_lpm_rcu_config lc = {};
    lc.v = qsbr;
    lc.mode = RTE_LPM_QSBR_MODE_SYNC;
    if (rte_lpm_rcu_qsbr_add(t->lpm_, &lc) != 0)
      return absl::ResourceExhaustedError(
          absl::StrFormat("subnet map: rte_lpm_rcu_qsbr_add: %s", rte_strerror(rte_errno)));
    rte_hash_rcu_config hc = {};
    hc.v = qsbr;
    hc.mode = RTE_HASH_QSBR_MODE_SYNC;
    if (rte_hash_rcu_qsbr_add(t->by_public_ip_, &hc) != 0)
      return absl::ResourceExhaustedError(
          absl::StrFormat("subnet map: rte_hash_rcu_qsbr_add: %s", rte_strerror(rte_errno)));
  }
  t->slots_ = static_cast<VtepPeer*>(
      rte_zmalloc("sluice_vtep_peers", sizeof(VtepPeer) * kMaxPeers, RTE_CACHE_LINE_SIZE));
  if (t->slots_ == nullptr) return absl::ResourceExhaustedError("subnet map: peer slots");
  t->free_.reserve(kMaxPeers);
  for (uint32_t i = kMaxPeers; i-- > 0;) t->free_.push_back(i);
  return t;
}

OverlayTable::~OverlayTable() {
  if (lpm_ != nullptr) rte_lpm_free(lpm_);
  if (by_public_ip_ != nullptr) rte_hash_free(by_public_ip_);
  rte_free(slots_);
}

absl::Status OverlayTable::Validate(const std::vector<VtepPeer>& peers) const {
  if (peers.size() > kMaxLeases)
    return absl::InvalidArgumentError(absl::StrFormat(
        "subnet map: %u leases, but it holds at most %u", peers.size(), kMaxLeases));
  std::set<std::pair<uint32_t, uint8_t>> subnets;
  std::set<uint32_t> public_ips;
  for (const VtepPeer& peer : peers) {
    if (peer.subnet_length > 32)
      return absl::InvalidArgumentError(absl::StrFormat(
          "subnet map: lease %s/%d: prefix length above 32", FormatIpv4(peer.subnet),
          peer.subnet_length));
    if (!subnets.insert(KeyOf(peer)).second)
      return absl::InvalidArgumentError(absl::StrFormat(
          "subnet map: subnet %s/%d leased twice", FormatIpv4(peer.subnet), peer.subnet_length));
    if (!public_ips.insert(peer.public_ip).second)
      return absl::InvalidArgumentError(absl::StrFormat(
          "subnet map: public IP %s holds two leases", FormatIpv4(peer.public_ip)));
  }
  return absl::OkStatus();
}

uint32_t OverlayTable::TakeSlot(const VtepPeer& p) {
  // Validate bounds live leases by kMaxLeases and retired slots are at most
  // the leases live before this Apply, so a slot is always free.
  const uint32_t s = free_.back();
  free_.pop_back();
  slots_[s] = p;
  // The slot's contents before any reader can reach its index.
  std::atomic_thread_fence(std::memory_order_release);
  return s;
}

OverlayTable::ApplyResult OverlayTable::Apply(const std::vector<VtepPeer>& peers) {
  ApplyResult r;
  std::map<std::pair<uint32_t, uint8_t>, const VtepPeer*> want;
  for (const VtepPeer& p : peers) want[KeyOf(p)] = &p;
  // Gone and changed first, so a PublicIP that moves to another lease is
  // free in the hash when that lease is written.
  std::vector<std::pair<std::pair<uint32_t, uint8_t>, const VtepPeer*>> changed;
  for (auto it = live_.begin(); it != live_.end();) {
    const auto w = want.find(it->first);
    const VtepPeer& old = slots_[it->second];
    if (w != want.end() && SamePeer(old, *w->second)) {
      ++it;
      continue;
    }
    if (w == want.end() || w->second->public_ip != old.public_ip)
      rte_hash_del_key(by_public_ip_, &old.public_ip);
    if (w == want.end()) {
      rte_lpm_delete(lpm_, it->first.first, it->first.second);
      ++r.removed;
    } else {
      changed.push_back(*w);
    }
    retired_.push_back(it->second);
    it = live_.erase(it);
  }
  // A changed lease's rule keeps its prefix and gets the new slot as its
  // next hop: one store per table entry, so a reader finds the old slot or
  // the new one, never neither. A new lease is added the same way.
  const auto install = [&](const std::pair<uint32_t, uint8_t>& key, const VtepPeer& p) {
    const uint32_t s = TakeSlot(p);
    rte_lpm_add(lpm_, key.first, key.second, s);
    rte_hash_add_key_data(by_public_ip_, &p.public_ip, reinterpret_cast<void*>(uintptr_t{s}));
    live_[key] = s;
  };
  for (const auto& [key, p] : changed) {
    install(key, *p);
    ++r.changed;
  }
  for (const auto& [key, p] : want) {
    if (live_.count(key) != 0) continue;
    install(key, *p);
    ++r.added;
  }
  return r;
}

void OverlayTable::ReleaseRetired() {
  for (uint32_t s : retired_) free_.push_back(s);
  retired_.clear();
}

uint32_t OverlayTable::PeerForPublicIp(uint32_t public_ip) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(by_public_ip_, &public_ip, &data) < 0) return kNoPeer;
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
}

std::vector<uint32_t> OverlayTable::Peers() const {
  std::vector<uint32_t> out;
  out.reserve(live_.size());
  for (const auto& [key, slot] : live_) out.push_back(slot);
  return out;
}

}  // namespace sluice
