# Sluice: a thin wrapper over meson/ninja. Every target installs what is
# missing (Debian 12 packages, idempotent), configures and builds first.
#   make demo    the NodePort journey, traced, on the bundled example cluster
#   make test    all test suites (unit, pcap, etcd), then the sanitizer build's unit suite
#   make bench   benchmarks and the kernel side by side (QUICK=1: under 2 minutes)
#   make build   just build
BUILD ?= build
BUILD_SAN ?= build-asan
PY := /usr/bin/python3

.PHONY: all deps build demo test bench clean
all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@meson setup $(BUILD) >/dev/null

build: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

demo: build
	@$(PY) examples/demo.py --build $(BUILD)
	@$(PY) examples/demo_seed002.py --build $(BUILD)

# The normal build's suites, then every suite again built with AddressSanitizer
# and UndefinedBehaviorSanitizer. UBSan's alignment check is off: packet
# headers sit at 2-byte offsets and DPDK's own hash reads keys with unaligned
# 8-byte loads, which x86 and arm64 do in hardware.
test: build
	@meson test -C $(BUILD) --print-errorlogs
	@[ -f $(BUILD_SAN)/build.ninja ] || meson setup $(BUILD_SAN) -Db_sanitize=address,undefined \
	   -Db_lundef=false -Dbuildtype=debugoptimized -Dbenchmarks=false \
	   -Dc_args=-fno-sanitize=alignment -Dcpp_args=-fno-sanitize=alignment >/dev/null
	@ninja -C $(BUILD_SAN)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	   meson test -C $(BUILD_SAN) --print-errorlogs
	@$(PY) scripts/test_summary.py $(BUILD)/meson-logs/testlog.json \
	   $(BUILD_SAN)/meson-logs/testlog.json

bench: build
	@$(PY) bench/run_bench.py --build $(BUILD) $(if $(QUICK),--quick)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)
