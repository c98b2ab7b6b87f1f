#include "dataplane/policy/kube_policy.h"

namespace sluice {

const char* MasqueradeReasonText(MasqueradeReason r) {
  switch (r) {
    case MasqueradeReason::kNone:
      return "none";
    case MasqueradeReason::kOffClusterToClusterIp:
      return "source outside the cluster network reaching a ClusterIP";
    case MasqueradeReason::kExternalPolicyCluster:
      return "external traffic with externalTrafficPolicy Cluster (KUBE-EXT -> KUBE-MARK-MASQ)";
    case MasqueradeReason::kHairpin:
      return "hairpin: the endpoint reaches its own Service";
    case MasqueradeReason::kFlannelIpMasq:
      return "flannel --ip-masq: pod traffic leaving the cluster network";
    case MasqueradeReason::kNodeToExternalLocal:
      return "the node's own traffic to an externalTrafficPolicy Local Service (KUBE-EXT "
             "--src-type LOCAL -> KUBE-MARK-MASQ)";
  }
  return "?";
}

const char* EndpointSubsetText(EndpointSubset s) {
  switch (s) {
    case EndpointSubset::kAll:
      return "ready";
    case EndpointSubset::kLocalInternal:
      return "node-local (internalTrafficPolicy Local)";
    case EndpointSubset::kLocalExternal:
      return "node-local (externalTrafficPolicy Local, client address kept)";
  }
  return "?";
}

}  // namespace sluice
