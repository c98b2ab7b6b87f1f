#include "dataplane/common/types.h"

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

}  // namespace sluice
