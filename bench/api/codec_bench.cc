// The socket protocol's cost (sluice-bench-api, Google Benchmark, no DPDK):
// encoding and decoding the messages a full sync is made of, and a full sync
// of N Service ports (one ServicePortUpsert and one EndpointSetReplace of
// 10 endpoints each) through a real Unix socket, every message answered Ok
// by a server that does nothing else. What applying the messages costs is
// the dataplane's and is not measured here.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "api/codec.h"
#include "api/socket.h"
#include "benchmark/benchmark.h"

namespace sluice::api {
namespace {

ServicePortUpsert Port(uint32_t i) {
  ServicePortUpsert m;
  m.port.key = ServicePortKey{"default", absl::StrCat("svc-", i), "http", L4Protocol::kTcp};
  m.port.type = "ClusterIP";
  m.port.port = 80;
  m.port.cluster_ips = {0x0a600000 + i};
  return m;
}

EndpointSetReplace Endpoints(uint32_t i) {
  EndpointSetReplace m;
  m.key = ServicePortKey{"default", absl::StrCat("svc-", i), "http", L4Protocol::kTcp};
  for (uint32_t e = 0; e < 10; ++e)
    m.endpoints.push_back(Endpoint{0x0af40000 + i * 16 + e, 8080, true, true, false,
                                   absl::StrCat("node-", e % 3), "zone-a"});
  return m;
}

void BM_EncodeEndpointSet10(benchmark::State& state) {
  const Message m = Endpoints(7);
  std::string out;
  for (auto _ : state) {
    out.clear();
    benchmark::DoNotOptimize(EncodeFrame(m, 1, &out));
  }
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_EncodeEndpointSet10);

void BM_DecodeEndpointSet10(benchmark::State& state) {
  const std::string frame = *EncodeFrame(Endpoints(7), 1);
  for (auto _ : state) benchmark::DoNotOptimize(DecodeFrame(frame));
}
BENCHMARK(BM_DecodeEndpointSet10);

void BM_DecodeServicePort(benchmark::State& state) {
  const std::string frame = *EncodeFrame(Port(7), 1);
  for (auto _ : state) benchmark::DoNotOptimize(DecodeFrame(frame));
}
BENCHMARK(BM_DecodeServicePort);

// A full sync of `n` Service ports over the socket, sent by CallAll (large
// writes while the Oks are read) or one Send per message then every Receive.
void FullSync(benchmark::State& state, bool batched) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  char templ[] = "/tmp/sluice-bench-api-XXXXXX";
  if (mkdtemp(templ) == nullptr) return state.SkipWithError("mkdtemp");
  const std::string dir = templ;
  ServerOptions o;
  o.path = dir + "/s.sock";
  uint64_t generation = 0;
  auto server =
      Server::Listen(o, [&generation](const Request&) -> Message { return Ok{++generation}; });
  if (!server.ok()) {
    rmdir(dir.c_str());
    return state.SkipWithError(server.status().ToString().c_str());
  }
  std::vector<Message> sync;
  sync.push_back(SyncBegin{1});
  for (uint32_t i = 0; i < n; ++i) {
    sync.push_back(Port(i));
    sync.push_back(Endpoints(i));
  }
  sync.push_back(SyncEnd{1});
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop) (void)(*server)->RunOnce(5);
  });
  auto client = Client::Connect(o.path, std::chrono::seconds(5));
  std::string error = client.ok() ? "" : client.status().ToString();
  for (auto _ : state) {
    if (!error.empty()) break;
    if (batched) {
      absl::StatusOr<std::vector<Message>> r = client->CallAll(sync, std::chrono::seconds(30));
      if (!r.ok()) error = r.status().ToString();
      continue;
    }
    // The server queues the Oks (32 bytes each) while the client sends.
    for (size_t i = 0; i < sync.size() && error.empty(); ++i)
      if (absl::StatusOr<uint64_t> id = client->Send(sync[i], std::chrono::seconds(10)); !id.ok())
        error = id.status().ToString();
    for (size_t i = 0; i < sync.size() && error.empty(); ++i)
      if (absl::StatusOr<Frame> f = client->Receive(std::chrono::seconds(10)); !f.ok())
        error = f.status().ToString();
  }
  if (!error.empty()) state.SkipWithError(error.c_str());
  state.counters["messages"] = static_cast<double>(sync.size());
  stop = true;
  loop.join();
  server->reset();
  rmdir(dir.c_str());
}
void BM_FullSyncCallAll(benchmark::State& state) { FullSync(state, true); }
void BM_FullSyncSendEach(benchmark::State& state) { FullSync(state, false); }
BENCHMARK(BM_FullSyncCallAll)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FullSyncSendEach)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sluice::api

BENCHMARK_MAIN();
