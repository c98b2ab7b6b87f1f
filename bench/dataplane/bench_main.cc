// Google Benchmark main for benchmarks that need DPDK: the EAL comes up once
// (hugepages when the machine has them, else plain memory; no PCI), then the benchmarks run.
// `--no-huge` (ours, not Google Benchmark's) forces plain memory, e.g. on a
// machine whose hugepages belong to something else.
#include <rte_eal.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "app/node_runtime.h"
#include "benchmark/benchmark.h"
#include "dataplane/common/eal_cleanup.h"

int main(int argc, char** argv) {
  bool no_huge = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--no-huge")
      no_huge = true;
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  std::vector<std::string> args = {
      argv[0], "--no-pci", "--no-telemetry", "-m", "2048", "--log-level=*:error", "-l", "0"};
  sluice::AppendPrivateMemoryArgs(&args, "sluice-micro", !no_huge);
  if (!sluice::InitEal(std::move(args), "sluice-bench-micro")) return 1;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  sluice::CleanupEal();
  return 0;
}
