#include "api/messages.h"

namespace sluice::api {

std::string FormatServicePortKey(const ServicePortKey& key) {
  const char* proto = key.protocol == L4Protocol::kTcp   ? "TCP"
                      : key.protocol == L4Protocol::kUdp ? "UDP"
                                                         : "SCTP";
  std::string s = key.namespace_name + "/" + key.service_name;
  if (!key.port_name.empty()) s += ":" + key.port_name;
  return s + "/" + proto;
}

}  // namespace sluice::api
