// sluice-replay: runs the node dataplane on packet captures.
//
// Each port (uplink, pods, host) reads its input capture and writes its
// output capture through a net_pcap device. Workers never touch those
// devices: they poll per-worker queues of net_ring ports, exactly as they
// poll NIC queues in production. The main lcore feeds the ring ports from
// the captures in timestamp order, dispatching packets to workers by a
// flow hash (what a NIC's RSS does) or round-robin, and drains the workers'
// tx queues into the output captures.
//
// Causality: a reply in a capture must not overtake the packet it answers.
// Before dispatching a packet captured more than --causal-gap-us after the
// previous one, the feeder waits until every dispatched packet has been
// processed. Packets closer together are processed concurrently.
#ifndef SLUICE_APP_REPLAY_H_
#define SLUICE_APP_REPLAY_H_

#include <cstdint>
#include <string>

namespace sluice {

struct ReplayOptions {
  std::string cluster_file;
  std::string in[3], out[3];  // by PortRole
  uint16_t workers = 2;
  uint64_t seed = 0;  // 0: random
  bool trace = false;
  bool round_robin = false;
  uint32_t causal_gap_us = 100;
  std::string counters_json;
  std::string program = "sluice-replay";
};

// Parses argv. On error prints a message and returns false.
bool ParseReplayArgs(int argc, char** argv, ReplayOptions* options, std::string* error);

// Runs the replay; returns the process exit code (0 success, 2 bad input
// such as a rejected cluster file, 1 runtime failure).
int RunReplay(const ReplayOptions& options);

}  // namespace sluice

#endif  // SLUICE_APP_REPLAY_H_
