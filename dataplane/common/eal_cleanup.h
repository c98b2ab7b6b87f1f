// Leaving nothing behind: the EAL creates its runtime directory
// (/var/run/dpdk/<prefix>) on every start, even with --no-shconf or
// --in-memory, and never removes it. Sluice's programs and tests run the EAL
// without shared files, so the directory stays empty (unless telemetry puts
// its socket there) and is removed right after rte_eal_init, before any
// early exit can leave it, and again after rte_eal_cleanup. A directory that
// holds anything is not removed.
#ifndef SLUICE_DATAPLANE_COMMON_EAL_CLEANUP_H_
#define SLUICE_DATAPLANE_COMMON_EAL_CLEANUP_H_

#include <rte_eal.h>
#include <unistd.h>

namespace sluice {

inline void RemoveEalRuntimeDir() {
  const char* dir = rte_eal_get_runtime_dir();
  if (dir != nullptr && dir[0] != '\0') rmdir(dir);
}

// rte_eal_cleanup, then RemoveEalRuntimeDir.
inline int CleanupEal() {
  const int rc = rte_eal_cleanup();
  RemoveEalRuntimeDir();
  return rc;
}

}  // namespace sluice

#endif  // SLUICE_DATAPLANE_COMMON_EAL_CLEANUP_H_
