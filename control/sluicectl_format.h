// sluicectl's human-readable views of the dataplane's JSON answers (the
// -o json view is the document itself). Each reads like the Linux tool an
// operator would reach for on a kube-proxy/flannel node:
//   services   Services, their addresses and endpoints (iptables -t nat -L)
//   peers      flannel's subnet map as routes, ARP and FDB entries
//              (ip route, ip neigh, bridge fdb on flannel.1)
//   neighbors  the neighbour table as ip neigh (PERMANENT statics, REACHABLE
//              or STALE learned entries), then each port's learned count
//              and quota and the statics' count and capacity
//   conntrack  conntrack -L
//   counters   per-worker counters
//   stages     per-stage cycles of the worker graph
//   status     the dataplane's instance, epoch and generation
// Errors: a document without the expected fields renders what it can and
// says "(unexpected answer)" for the rest; never throws.
// Concurrency: pure functions. No DPDK.
#ifndef SLUICE_CONTROL_SLUICECTL_FORMAT_H_
#define SLUICE_CONTROL_SLUICECTL_FORMAT_H_

#include <nlohmann/json.hpp>
#include <string>

namespace sluice {

std::string FormatShow(const std::string& what, const nlohmann::json& doc);

}  // namespace sluice

#endif  // SLUICE_CONTROL_SLUICECTL_FORMAT_H_
