// NeighborHoldQueue: packets waiting for their next hop's MAC, one queue per
// worker.
//
// When a packet's next hop is not in the NeighborTable, the worker holds it
// here instead of dropping it and sends an ARP request, as the kernel's
// neighbour layer queues packets on an INCOMPLETE entry while it solicits:
//  - at most one request per next hop per retransmit interval (the kernel's
//    retrans_time, 1 s): Hold asks for the first, Retransmits for the next;
//  - at most max_solicit requests (mcast_solicit, 3); a retransmit interval
//    after the last one, Expire gives the hop's packets back as unresolved
//    and forgets the hop, so a later packet starts a new resolution;
//  - bounded: `capacity` mbufs in all, `per_hop` per next hop (the kernel's
//    unres_qlen idea) and `max_hops` next hops being resolved at once.
// Release hands back, per hop in arrival order, the packets whose next hop
// now resolves, each with its MAC, its key and the 32-bit tag the caller
// gave it (what the caller needs to finish the packet, e.g. its egress).
//
// Outcomes and the counters the caller keeps for them (the queue counts
// nothing itself): Hold kHeld -> neighbor_held; kQueueFull and kHopFull ->
// neighbor_queue_full, the mbuf stays the caller's to drop; each packet
// Release returns -> neighbor_released; each Expire returns ->
// neighbor_unresolved, the caller frees it. Retransmits' keys ->
// arp_requests_sent once the caller sent them.
//
// Concurrency: one queue per worker, used by that worker's lcore only; no
// locks, no atomics. Memory: every array is allocated by Create; nothing
// allocates afterwards. A held mbuf belongs to the queue until Release or
// Expire returns it; the destructor frees those still held, so the queue
// must go before its mbufs' mempool.
//
// Cost: Hold finds the hop by a linear scan over the hops being resolved
// (max_hops, default 64); Release looks every such hop up in the table, in
// bulk. Both run only for packets whose next hop is unknown; a caller calls
// Release, Retransmits and Expire once per loop iteration, and not at all
// while empty().
#ifndef SLUICE_DATAPLANE_NEIGHBOR_HOLD_QUEUE_H_
#define SLUICE_DATAPLANE_NEIGHBOR_HOLD_QUEUE_H_

#include <rte_mbuf.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "dataplane/common/types.h"
#include "dataplane/tables/neighbor_table.h"

namespace sluice {

class NeighborHoldQueue {
 public:
  struct Config {
    uint16_t capacity = 256;        // mbufs held in all (at most 65534)
    uint16_t per_hop = 8;           // mbufs held per next hop
    uint16_t max_hops = 64;         // next hops being resolved at once
    uint8_t max_solicit = 3;        // mcast_solicit
    uint32_t retrans_ms = 1000;     // retrans_time
    uint64_t ticks_per_second = 1;  // unit of `now` arguments (TSC Hz in workers)
  };
  // Errors: InvalidArgument for a zero or too large bound, a zero
  // max_solicit or ticks_per_second.
  static absl::StatusOr<std::unique_ptr<NeighborHoldQueue>> Create(const Config& config);
  ~NeighborHoldQueue();
  NeighborHoldQueue(const NeighborHoldQueue&) = delete;
  NeighborHoldQueue& operator=(const NeighborHoldQueue&) = delete;

  enum class Verdict : uint8_t {
    kHeld,       // the queue owns the mbuf now
    kQueueFull,  // no room in the queue (or for another hop): the caller drops it
    kHopFull,    // the hop already holds per_hop packets: the caller drops it
  };
  // Holds `m`, tagged `tag`, until `key` resolves. *send_request is set when
  // the caller must send an ARP request for `key` now: for a hop not being
  // resolved yet, even when the packet itself finds no room (resolution goes
  // on for the packets that come after it), unless no hop slot is free.
  Verdict Hold(rte_mbuf* m, const NeighborKey& key, uint32_t tag, uint64_t now, bool* send_request);

  // Next hops due for another request (their last one is a retransmit
  // interval old, they have requests left and have not resolved): writes up
  // to `max` keys and counts the requests as sent; the caller sends one ARP
  // request per key.
  uint16_t Retransmits(uint64_t now, NeighborKey* keys, uint16_t max);

  // Up to `max` held packets whose next hop resolves in `table`, hop by hop,
  // each hop's in arrival order: out[i] with tags[i], keys[i] and macs[i].
  // The caller rewrites the MACs and transmits. A resolved hop is forgotten
  // once it has given back all its packets.
  uint16_t Release(const NeighborTable& table, uint64_t now, rte_mbuf** out, uint32_t* tags,
                   NeighborKey* keys, MacAddress* macs, uint16_t max);

  // Up to `max` packets of next hops that got max_solicit requests and no
  // answer a retransmit interval after the last: the caller frees them.
  // Such a hop is forgotten once it has given back all its packets.
  uint16_t Expire(uint64_t now, rte_mbuf** dropped, uint16_t max);

  // Whether packets for `key` are held (a packet to that hop must queue
  // behind them, even once the hop resolved, to keep their order).
  bool Holding(const NeighborKey& key) const { return IndexOf(key) >= 0; }

  // No hop being resolved and so no packet held: nothing for the calls above.
  bool empty() const { return nhops_ == 0; }
  uint16_t held() const { return held_count_; }
  uint16_t hops() const { return nhops_; }

 private:
  static constexpr uint16_t kNone = 0xffff;
  struct Packet {
    rte_mbuf* m = nullptr;
    uint32_t tag = 0;
    uint16_t next = kNone;  // next packet of the same hop, or next free slot
  };
  struct Hop {
    NeighborKey key;
    uint64_t last_request = 0;
    MacAddress mac{};
    uint16_t head = kNone, tail = kNone, count = 0;
    uint8_t requests = 0;
    bool resolved = false;
  };

  explicit NeighborHoldQueue(const Config& config);
  int IndexOf(const NeighborKey& key) const;  // -1: no such hop
  Hop* Find(const NeighborKey& key) {
    const int i = IndexOf(key);
    return i < 0 ? nullptr : &hops_[i];
  }
  bool IntervalPassed(const Hop& h, uint64_t now) const {
    return now >= h.last_request && now - h.last_request >= retrans_ticks_;
  }
  // Moves up to `max` of hop i's packets to the outputs (any may be null);
  // forgets the hop when it is empty. Returns how many; *removed tells
  // whether hop i was forgotten (another hop now sits at index i).
  uint16_t Drain(uint16_t i, rte_mbuf** out, uint32_t* tags, NeighborKey* keys, MacAddress* macs,
                 uint16_t max, bool* removed);

  Config config_;
  uint64_t retrans_ticks_ = 0;
  std::unique_ptr<Packet[]> packets_;
  std::unique_ptr<Hop[]> hops_;  // [0, nhops_) in use, dense
  uint16_t nhops_ = 0;
  uint16_t free_ = kNone;  // free list of packets_
  uint16_t held_count_ = 0;
};

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_NEIGHBOR_HOLD_QUEUE_H_
