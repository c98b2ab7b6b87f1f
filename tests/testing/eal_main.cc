// GoogleTest main for tests that need DPDK: brings up the EAL once, with no
// hugepages, no PCI and no shared runtime files, so tests run anywhere and in
// parallel.
#include <rte_eal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "dataplane/common/eal_cleanup.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::string prefix = "--file-prefix=sluice-test-" + std::to_string(getpid());
  std::vector<std::string> args = {
      argv[0], "--no-huge",           "--no-pci",         "--no-shconf", "--no-telemetry", "-m",
      "256",   "--log-level=*:error", "--lcores=0@(0-1)", prefix};
  std::vector<char*> eal_argv;
  for (auto& a : args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::fprintf(stderr, "EAL init failed\n");
    return 1;
  }
  sluice::RemoveEalRuntimeDir();
  const int rc = RUN_ALL_TESTS();
  sluice::CleanupEal();
  return rc;
}
