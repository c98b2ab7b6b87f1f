#include "dataplane/tables/overlay_table.h"

#include <rte_errno.h>
#include <rte_hash_crc.h>

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace sluice {

OverlayTable::~OverlayTable() {
  if (lpm_ != nullptr) rte_lpm_free(lpm_);
  if (by_public_ip_ != nullptr) rte_hash_free(by_public_ip_);
}

absl::StatusOr<std::unique_ptr<OverlayTable>> OverlayTable::Build(std::vector<VtepPeer> peers,
                                                                  uint64_t generation) {
  if (peers.size() > kMaxPeers)
    return absl::InvalidArgumentError(
        absl::StrFormat("overlay table: %u leases, but rte_lpm's 24-bit next hops index at most %u",
                        peers.size(), kMaxPeers));
  for (const VtepPeer& peer : peers)
    if (peer.subnet_length > 32)
      return absl::InvalidArgumentError(
          absl::StrFormat("overlay table: lease %s/%d: prefix length above 32",
                          FormatIpv4(peer.subnet), peer.subnet_length));
  static std::atomic<uint64_t> instance{0};
  const uint64_t id = instance.fetch_add(1);
  std::unique_ptr<OverlayTable> t(new OverlayTable());
  const std::string lpm_name = absl::StrFormat("lpm%lu_%lu", generation, id);
  rte_lpm_config cfg = {};
  cfg.max_rules = static_cast<uint32_t>(peers.size() + 16);
  // Leases longer than /24 need tbl8 groups; one per lease is the bound.
  cfg.number_tbl8s = static_cast<uint32_t>(peers.size() + 16);
  t->lpm_ = rte_lpm_create(lpm_name.c_str(), SOCKET_ID_ANY, &cfg);
  if (t->lpm_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("overlay table: rte_lpm_create: %s", rte_strerror(rte_errno)));
  const std::string hash_name = absl::StrFormat("vtep%lu_%lu", generation, id);
  rte_hash_parameters p = {};
  p.name = hash_name.c_str();
  p.entries = static_cast<uint32_t>(peers.size() * 2 + 64);
  p.key_len = sizeof(uint32_t);
  p.hash_func = rte_hash_crc;
  p.socket_id = SOCKET_ID_ANY;
  t->by_public_ip_ = rte_hash_create(&p);
  if (t->by_public_ip_ == nullptr)
    return absl::ResourceExhaustedError(
        absl::StrFormat("overlay table: rte_hash_create: %s", rte_strerror(rte_errno)));
  for (uint32_t i = 0; i < peers.size(); ++i) {
    const VtepPeer& peer = peers[i];
    uint32_t existing;
    if (rte_lpm_is_rule_present(t->lpm_, peer.subnet, peer.subnet_length, &existing) == 1)
      return absl::InvalidArgumentError(absl::StrFormat(
          "overlay table: subnet %s/%d leased twice", FormatIpv4(peer.subnet), peer.subnet_length));
    if (rte_lpm_add(t->lpm_, peer.subnet, peer.subnet_length, i) != 0)
      return absl::ResourceExhaustedError("overlay table: rte_lpm_add failed");
    if (rte_hash_lookup(t->by_public_ip_, &peer.public_ip) >= 0)
      return absl::InvalidArgumentError(absl::StrFormat(
          "overlay table: public IP %s holds two leases", FormatIpv4(peer.public_ip)));
    if (rte_hash_add_key_data(t->by_public_ip_, &peer.public_ip,
                              reinterpret_cast<void*>(uintptr_t{i})) < 0)
      return absl::ResourceExhaustedError("overlay table: rte_hash full");
  }
  t->peers_ = std::move(peers);
  return t;
}

uint32_t OverlayTable::PeerForPublicIp(uint32_t public_ip) const {
  void* data = nullptr;
  if (rte_hash_lookup_data(by_public_ip_, &public_ip, &data) < 0) return kNoPeer;
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(data));
}

}  // namespace sluice
