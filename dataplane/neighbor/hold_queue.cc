#include "dataplane/neighbor/hold_queue.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"

namespace sluice {

absl::StatusOr<std::unique_ptr<NeighborHoldQueue>> NeighborHoldQueue::Create(const Config& config) {
  if (config.capacity == 0 || config.capacity >= kNone)
    return absl::InvalidArgumentError("neighbour hold queue: capacity must be 1..65534");
  if (config.per_hop == 0 || config.max_hops == 0)
    return absl::InvalidArgumentError("neighbour hold queue: per_hop and max_hops must not be 0");
  if (config.max_solicit == 0 || config.ticks_per_second == 0)
    return absl::InvalidArgumentError(
        "neighbour hold queue: max_solicit and ticks_per_second must not be 0");
  return std::unique_ptr<NeighborHoldQueue>(new NeighborHoldQueue(config));
}

NeighborHoldQueue::NeighborHoldQueue(const Config& config)
    : config_(config),
      retrans_ticks_(MillisecondsToTicks(config.retrans_ms, config.ticks_per_second)),
      packets_(new Packet[config.capacity]),
      hops_(new Hop[config.max_hops]) {
  for (uint16_t i = 0; i < config.capacity; ++i)
    packets_[i].next = i + 1 < config.capacity ? static_cast<uint16_t>(i + 1) : kNone;
  free_ = 0;
}

NeighborHoldQueue::~NeighborHoldQueue() {
  for (uint16_t h = 0; h < nhops_; ++h)
    for (uint16_t p = hops_[h].head; p != kNone; p = packets_[p].next)
      rte_pktmbuf_free(packets_[p].m);
}

int NeighborHoldQueue::IndexOf(const NeighborKey& key) const {
  for (uint16_t i = 0; i < nhops_; ++i)
    if (std::memcmp(&hops_[i].key, &key, sizeof(key)) == 0) return i;
  return -1;
}

NeighborHoldQueue::Verdict NeighborHoldQueue::Hold(rte_mbuf* m, const NeighborKey& key,
                                                   uint32_t tag, uint64_t now, bool* send_request) {
  *send_request = false;
  Hop* h = Find(key);
  if (h == nullptr) {
    if (nhops_ == config_.max_hops) return Verdict::kQueueFull;
    h = &hops_[nhops_++];
    *h = Hop{};
    h->key = key;
    h->requests = 1;
    h->last_request = now;
    *send_request = true;
  }
  if (free_ == kNone) return Verdict::kQueueFull;
  if (h->count >= config_.per_hop) return Verdict::kHopFull;
  const uint16_t p = free_;
  free_ = packets_[p].next;
  packets_[p] = Packet{m, tag, kNone};
  if (h->tail == kNone)
    h->head = p;
  else
    packets_[h->tail].next = p;
  h->tail = p;
  ++h->count;
  ++held_count_;
  return Verdict::kHeld;
}

uint16_t NeighborHoldQueue::Retransmits(uint64_t now, NeighborKey* keys, uint16_t max) {
  uint16_t n = 0;
  for (uint16_t i = 0; i < nhops_ && n < max; ++i) {
    Hop& h = hops_[i];
    if (h.resolved || h.requests >= config_.max_solicit || !IntervalPassed(h, now)) continue;
    ++h.requests;
    h.last_request = now;
    keys[n++] = h.key;
  }
  return n;
}

uint16_t NeighborHoldQueue::Drain(uint16_t i, rte_mbuf** out, uint32_t* tags, NeighborKey* keys,
                                  MacAddress* macs, uint16_t max, bool* removed) {
  Hop& h = hops_[i];
  uint16_t n = 0;
  while (h.head != kNone && n < max) {
    const uint16_t p = h.head;
    h.head = packets_[p].next;
    out[n] = packets_[p].m;
    if (tags != nullptr) tags[n] = packets_[p].tag;
    if (keys != nullptr) keys[n] = h.key;
    if (macs != nullptr) macs[n] = h.mac;
    packets_[p] = Packet{nullptr, 0, free_};
    free_ = p;
    --h.count;
    --held_count_;
    ++n;
  }
  *removed = h.head == kNone;
  if (*removed) {
    hops_[i] = hops_[nhops_ - 1];
    --nhops_;
  }
  return n;
}

uint16_t NeighborHoldQueue::Release(const NeighborTable& table, uint64_t now, rte_mbuf** out,
                                    uint32_t* tags, NeighborKey* keys, MacAddress* macs,
                                    uint16_t max) {
  // Look every hop up, kBurstSize at a time; a hop stays resolved (with the
  // MAC it resolved to) until it has given back all its packets.
  for (uint16_t base = 0; base < nhops_; base += kBurstSize) {
    const uint16_t chunk = std::min<uint16_t>(kBurstSize, nhops_ - base);
    const NeighborKey* kp[kBurstSize];
    MacAddress mac[kBurstSize];
    for (uint16_t j = 0; j < chunk; ++j) kp[j] = &hops_[base + j].key;
    uint64_t stale = 0;
    const uint64_t hit = table.LookupBulk(kp, chunk, now, mac, &stale);
    for (uint16_t j = 0; j < chunk; ++j) {
      if (((hit >> j) & 1) == 0) continue;
      hops_[base + j].resolved = true;
      hops_[base + j].mac = mac[j];
    }
  }
  uint16_t n = 0;
  for (uint16_t i = 0; i < nhops_ && n < max;) {
    if (!hops_[i].resolved) {
      ++i;
      continue;
    }
    bool removed = false;
    n += Drain(i, out + n, tags + n, keys + n, macs + n, max - n, &removed);
    if (!removed) ++i;  // else hop i is another hop now: look at it too
  }
  return n;
}

uint16_t NeighborHoldQueue::Expire(uint64_t now, rte_mbuf** dropped, uint16_t max) {
  uint16_t n = 0;
  for (uint16_t i = 0; i < nhops_ && n < max;) {
    const Hop& h = hops_[i];
    if (h.resolved || h.requests < config_.max_solicit || !IntervalPassed(h, now)) {
      ++i;
      continue;
    }
    bool removed = false;
    n += Drain(i, dropped + n, nullptr, nullptr, nullptr, max - n, &removed);
    if (!removed) ++i;
  }
  return n;
}

}  // namespace sluice
