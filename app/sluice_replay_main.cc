// sluice-replay: the node dataplane on packet captures. See app/replay.h.
#include <cstdio>
#include <string>

#include "app/replay.h"

int main(int argc, char** argv) {
  sluice::ReplayOptions options;
  std::string error;
  if (!sluice::ParseReplayArgs(argc, argv, &options, &error)) {
    std::fprintf(stderr,
                 "sluice-replay: %s\n"
                 "usage: sluice-replay --cluster FILE [--uplink-in PCAP] [--uplink-out PCAP]\n"
                 "         [--pods-in PCAP] [--pods-out PCAP] [--host-in PCAP] [--host-out PCAP]\n"
                 "         [--workers N] [--dispatch flow|roundrobin] [--seed N] [--trace]\n"
                 "         [--causal-gap-us N] [--counters-json FILE]\n",
                 error.c_str());
    return 2;
  }
  return sluice::RunReplay(options);
}
