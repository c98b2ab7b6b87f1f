#include "dataplane/common/types.h"

#include "absl/strings/str_format.h"

namespace sluice {

const char* PortRoleName(PortRole role) {
  switch (role) {
    case PortRole::kUplink:
      return "uplink";
    case PortRole::kPods:
      return "pods";
    case PortRole::kHost:
      return "host";
  }
  return "?";
}

std::string FormatIpv4(uint32_t ip) {
  return absl::StrFormat("%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

std::string FormatMac(const MacAddress& mac) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                         mac[5]);
}

}  // namespace sluice
