#!/usr/bin/python3
"""make bench: runs Sluice's benchmarks and the kernel's kube-proxy path side
by side and writes bench/results/<date>/ (report.md, raw JSON, PNG plots).

  bench/run_bench.py --build build [--quick] [--no-kernel]

Steps: reserve 2 MB hugepages when running as root and none are free (the
tables then sit on hugepages, as on a production node); per-stage
micro-benchmarks (Google Benchmark, pinned to one core, repeated); one worker
lcore end to end in cycles per packet, against the swap forwarder, with the
generator on the other lcore and interleaved on the worker's own
(sluice-bench-throughput, ~4 minutes, --quick under 1); Service updates with a
worker running (sluice-bench-update: one endpoint change, full syncs, memory
per Service port; about a minute); a source change to the running dataplane
through the real processes (sluice-bench-source: an etcd put, and a
Kubernetes API watch event from the fake API server; seconds each);
kube-proxy's iptables rules in the kernel
(bench/kernel/run_kernel_bench.py); then the report.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    print("bench: " + msg, flush=True)


def reserve_hugepages(pages=1536):
    """Reserves 2 MB pages and mounts hugetlbfs if needed; returns a note."""
    path = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
    try:
        with open("/proc/meminfo") as f:
            free = [int(l.split()[1]) for l in f if l.startswith("HugePages_Free")][0]
        if free < pages // 2:
            if os.geteuid() != 0:
                return "no hugepages (not root): 4 KB pages"
            with open(path, "w") as f:
                f.write(str(pages))
        with open("/proc/mounts") as f:
            if not any(" hugetlbfs " in l for l in f):
                os.makedirs("/dev/hugepages", exist_ok=True)
                subprocess.run(["mount", "-t", "hugetlbfs", "nodev", "/dev/hugepages"],
                               check=True)
        with open("/proc/meminfo") as f:
            free = [int(l.split()[1]) for l in f if l.startswith("HugePages_Free")][0]
        return "%d free 2 MB hugepages" % free
    except (OSError, subprocess.CalledProcessError, IndexError) as e:
        return "no hugepages (%s): 4 KB pages" % e


def run(cmd, timeout, **kw):
    log("$ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    sys.stderr.write(p.stderr.decode("utf-8", "replace"))
    if p.returncode != 0:
        raise SystemExit("bench: %s failed (%d)" % (cmd[0], p.returncode))
    log("  %.0f s" % (time.time() - t0))
    return p.stdout.decode("utf-8", "replace")


def micro(build, out_dir, quick):
    out = os.path.join(out_dir, "micro.json")
    cmd = ["taskset", "-c", "1", os.path.join(build, "bench", "sluice-bench-micro"),
           "--benchmark_out=" + out, "--benchmark_out_format=json",
           "--benchmark_min_time=%s" % ("0.05" if quick else "0.3"),
           "--benchmark_repetitions=%d" % (1 if quick else 3),
           "--benchmark_report_aggregates_only=%s" % ("false" if quick else "true")]
    if quick:
        cmd.append("--benchmark_filter=-/1000000")  # skip the 1M-flow tables
    run(cmd, 900)
    with open(out) as f:
        return json.load(f)


def throughput(build, out_dir, quick):
    out = os.path.join(out_dir, "throughput.json")
    cmd = [os.path.join(build, "bench", "sluice-bench-throughput"), "--out", out]
    cmd += ["--quick"] if quick else ["--seconds", "1", "--repeat", "3"]
    run(cmd, 900)
    with open(out) as f:
        return json.load(f)


def update(build, out_dir, quick):
    out = os.path.join(out_dir, "update.json")
    cmd = [os.path.join(build, "bench", "sluice-bench-update"), "--out", out]
    cmd += ["--quick"] if quick else []
    run(cmd, 900)
    with open(out) as f:
        return json.load(f)


def kernel(out_dir, quick):
    out = os.path.join(out_dir, "kernel.json")
    script = os.path.join(HERE, "kernel", "run_kernel_bench.py")
    cmd = ["/usr/bin/python3", script, "--out", out] + (["--quick"] if quick else [])
    run(cmd, 900)
    with open(out) as f:
        return json.load(f)


def etcd(build, out_dir, quick):
    """Put -> callback latency of the etcd source; None without etcd."""
    binary = os.path.join(build, "bench", "sluice-bench-etcd")
    if not os.path.exists(binary) or not os.path.exists("/usr/bin/etcd"):
        log("etcd source latency skipped (no sluice-bench-etcd or /usr/bin/etcd)")
        return None
    out = os.path.join(out_dir, "etcd.json")
    run([binary, "--puts", "200", "--repeat", "1" if quick else "3", "--out", out], 300)
    with open(out) as f:
        return json.load(f)


def source(build, out_dir, quick):
    """An etcd put to the running dataplane holding it, through the real
    processes; None without etcd or the programs."""
    binary = os.path.join(build, "bench", "sluice-bench-source")
    progs = [os.path.join(build, "app", p) for p in ("sluice-node", "sluice-control")]
    if not all(os.path.exists(p) for p in [binary] + progs) or not os.path.exists("/usr/bin/etcd"):
        log("source-to-dataplane latency skipped (no sluice-bench-source, programs or etcd)")
        return None
    out = os.path.join(out_dir, "source_to_dataplane.json")
    run([binary, "--node", progs[0], "--control", progs[1], "--cluster",
         os.path.join(ROOT, "examples", "cluster", "node-228.json"),
         "--changes", "50" if quick else "200", "--out", out], 300)
    with open(out) as f:
        return json.load(f)


def source_kube(build, out_dir, quick):
    """A Kubernetes watch event (an EndpointSlice change, pushed by the fake
    API server) to the running dataplane holding it, through the real
    processes; None without the programs or /usr/bin/python3."""
    binary = os.path.join(build, "bench", "sluice-bench-source")
    progs = [os.path.join(build, "app", p) for p in ("sluice-node", "sluice-control")]
    if not all(os.path.exists(p) for p in [binary] + progs + ["/usr/bin/python3"]):
        log("API-watch-to-dataplane latency skipped (no sluice-bench-source, programs or "
            "/usr/bin/python3)")
        return None
    out = os.path.join(out_dir, "kube_to_dataplane.json")
    run([binary, "--source", "kube", "--node", progs[0], "--control", progs[1], "--cluster",
         os.path.join(ROOT, "examples", "cluster", "node-228.json"),
         "--changes", "50" if quick else "200", "--out", out], 300)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-kernel", action="store_true",
                    help="skip the kernel side (it needs root)")
    ap.add_argument("--out", help="results directory (default bench/results/<date>)")
    args = ap.parse_args()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    out_dir = args.out or os.path.join(HERE, "results", stamp + ("-quick" if args.quick else ""))
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    hp = reserve_hugepages()
    log(hp)
    data = {"hugepages": hp, "quick": args.quick, "date": stamp}
    data["micro"] = micro(args.build, out_dir, args.quick)
    data["throughput"] = throughput(args.build, out_dir, args.quick)
    data["etcd"] = etcd(args.build, out_dir, args.quick)
    data["source"] = source(args.build, out_dir, args.quick)
    data["source_kube"] = source_kube(args.build, out_dir, args.quick)
    data["update"] = update(args.build, out_dir, args.quick)
    if args.no_kernel or os.geteuid() != 0:
        data["kernel"] = None
        log("kernel side skipped" + ("" if args.no_kernel else " (needs root)"))
    else:
        data["kernel"] = kernel(out_dir, args.quick)
    data["elapsed_s"] = time.time() - t0
    sys.path.insert(0, HERE)
    import report
    path = report.write(data, out_dir)
    log("report: %s (%.0f s in all)" % (os.path.relpath(path, ROOT), time.time() - t0))
    print(open(path).read().split("## Details")[0])


if __name__ == "__main__":
    main()
