"""Writes bench/results/<date>/report.md and the PNG plots from the raw
results gathered by run_bench.py (also usable alone:
`report.py DIR` re-renders DIR/results.json)."""
import json
import os
import platform
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fmt_stats(s, unit=""):
    if not s:
        return "n/a"
    return "%.2f%s [%.2f-%.2f]" % (s["median"], unit, s["min"], s["max"])


def us(stat):
    """A kernel latency (microseconds stats) as text; restores that timed out
    have a null median."""
    if not stat:
        return "n/a"
    if stat.get("median") is None:
        t = stat.get("timed_out_after_us")
        return "timed out%s" % (" after %.0f s" % (t / 1e6) if t else "")
    return "%.0f us" % stat["median"]


def scenario(thr, name, services=None):
    for s in thr.get("scenarios", []):
        if s["name"] == name and (services is None or s["services"] == services):
            return s
    return None


def kernel_rate(kern, shape, services):
    """Median Mpps of the kernel for a traffic shape at a Service count."""
    if not kern:
        return None
    for r in kern.get("throughput", []):
        if r.get("shape") == shape and r.get("services") == services:
            return r.get("mpps")
    return None


def verdict(ok):
    return "met" if ok else "**not met**"


def write(data, out_dir):
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    thr = data["throughput"]
    kern = data.get("kernel")
    main_services = thr["settings"]["services"]
    iofwd = thr["iofwd"]["median"]
    lines = []
    add = lines.append
    add("# Sluice benchmark report, %s%s" % (data["date"], " (quick)" if data["quick"] else ""))
    add("")
    add("Machine: %s, %d cores, TSC %.2f GHz, kernel %s; %s." % (
        thr["machine"]["cpu"], os.cpu_count(), thr["machine"]["tsc_hz"] / 1e9,
        platform.release(), data["hugepages"]))
    add("Figures are medians of %d run(s) with [min-max]; one worker lcore, burst %d. "
        "Ran %.0f s." % (thr["settings"]["repeat"], thr["settings"]["burst"], data["elapsed_s"]))
    add("")
    add("## Summary against the goals")
    add("")
    add("| figure | measured | goal | |")
    add("|---|---|---|---|")
    est = scenario(thr, "established_clusterip_dnat_vxlan", main_services)
    if est:
        add("| established flows, pod -> ClusterIP, DNAT + VXLAN encap, %d flows, %d Services "
            "| %s Mpps | >= 10 Mpps | %s |" % (est["flows"], main_services,
                                               fmt_stats(est["mpps"]),
                                               verdict(est["mpps"]["median"] >= 10)))
        add("| same, as a fraction of io forwarding on the same ports (%.2f Mpps) | %.2f | >= 0.5 "
            "| %s |" % (iofwd, est["fraction_of_iofwd"], verdict(est["fraction_of_iofwd"] >= 0.5)))
    for name, label in (("established_nodeport_dnat_snat_vxlan", "NodePort, DNAT + masquerade + VXLAN"),
                        ("reply_vxlan_decap_reverse_nat", "reply path, VXLAN decap + reverse NAT"),
                        ("established_egress_masquerade", "egress masquerade, pod -> internet")):
        s = scenario(thr, name, main_services)
        if s:
            add("| %s, %d flows | %s Mpps (%.2f of io fwd) | | |" % (
                label, s["flows"], fmt_stats(s["mpps"]), s["fraction_of_iofwd"]))
    for nf in thr.get("new_flows", []):
        if "mflows_per_second" in nf:
            m = nf["mflows_per_second"]
            add("| new flows/s, %s, %d Services | %s M/s | >= 1 M/s | %s |" % (
                nf["name"].replace("_", " "), nf["services"], fmt_stats(m),
                verdict(m["median"] >= 1)))
    small = scenario(thr, "established_clusterip_dnat_vxlan", 100)
    big = scenario(thr, "established_clusterip_dnat_vxlan", 100000) or est
    if small and big:
        ratio = small["mpps"]["median"] / big["mpps"]["median"]
        add("| cost per packet at %d vs 100 Services (established) | %.2fx | <= 1.2x | %s |" % (
            big["services"], ratio, verdict(ratio <= 1.2)))
    mem = thr.get("memory")
    if mem:
        add("| memory per connection, both directions indexed (heap bytes of a %d-flow table) "
            "| %.0f B (entry %d B) | <= 128 B | %s |" % (
                mem["capacity"], mem["heap_bytes_per_flow"], mem["entry_bytes"],
                verdict(mem["heap_bytes_per_flow"] <= 128)))
    if kern:
        nf = [x for x in thr.get("new_flows", []) if x["name"] == "udp_new_flows"]
        for shape, goal, label in (("established_first", 20, "established flows, first Service"),
                                   ("established_last", 20, "established flows, last Service"),
                                   ("new_first", 50, "new flows, first Service"),
                                   ("new_last", 50, "new flows, last Service")):
            k = kernel_rate(kern, shape, 10000)
            if shape.startswith("established"):
                s = est["mpps"]["median"] if est else None
            else:
                s = nf[0]["mflows_per_second"]["median"] if nf else None
            if k and s:
                add("| Sluice / kernel, %s in the rule list, 10000 Services | %.1fx (%.2f vs %.3f Mpps) "
                    "| >= %dx | %s |" % (label, s / k, s, k, goal, verdict(s / k >= goal)))
    upd = {u["services"]: sorted(u["microseconds"]) for u in thr.get("update_latency", [])}
    for n, samples in sorted(upd.items()):
        line = "| one endpoint change applied to live tables, %d Services | p50 %.0f us, max %.0f us" % (
            n, samples[len(samples) // 2], samples[-1])
        if kern:
            for r in kern.get("programming", []):
                if r.get("services") != n:
                    continue
                line += "; iptables-restore (%s): one change %s, full %s" % (
                    r.get("backend", "?"), us(r.get("one_change_us")), us(r.get("full_restore_us")))
        add(line + " | | |")
    add("")
    add("## Details")
    add("")
    add("### One worker lcore, end to end (sluice-bench-throughput)")
    add("")
    add("Method: the worker runs Sluice's real loop on net_ring ports; a generator on the "
        "main lcore refills the rx ring from pre-built packets and recycles what the worker "
        "sends. io forwarding (rx burst -> tx burst, no work) on the same ports and generator "
        "is the limit of this I/O path: %s Mpps." % fmt_stats(thr["iofwd"]))
    add("")
    add("| scenario | Services | flows | Mpps | of io fwd | cycles/pkt | drops |")
    add("|---|---|---|---|---|---|---|")
    for s in thr["scenarios"]:
        add("| %s | %d | %d | %s | %.2f | %.0f | %d |" % (
            s["name"], s["services"], s["flows"], fmt_stats(s["mpps"]),
            s["fraction_of_iofwd"], s["cycles_per_packet"], s["drops"]))
    add("")
    add("### Per stage (sluice-bench-micro, burst %d, pinned to one core)" % thr["settings"]["burst"])
    add("")
    add("| benchmark | ns/pkt | cycles/pkt |")
    add("|---|---|---|")
    for b in data["micro"]["benchmarks"]:
        if b.get("aggregate_name") not in (None, "median"):
            continue
        ips = b.get("items_per_second")
        if not ips:
            continue
        add("| %s | %.1f | %.0f |" % (b["name"].replace("_median", ""), 1e9 / ips,
                                      b.get("cycles/pkt", 0)))
    if kern:
        add("")
        add("### The kernel: kube-proxy's iptables rules (bench/kernel)")
        add("")
        add(kern.get("method", ""))
        add("")
        add("| shape | Services | Mpps |")
        add("|---|---|---|")
        for r in kern.get("throughput", []):
            add("| %s | %d | %s |" % (r["shape"], r["services"], fmt_stats(r.get("mpps_stats"))
                                      if r.get("mpps_stats") else "%.3f" % r["mpps"]))
    plots = plot(thr, kern, out_dir)
    add("")
    for p in plots:
        add("![%s](%s)" % (p, p))
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def plot(thr, kern, out_dir):
    made = []
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = sorted((s["services"], s["mpps"]["median"]) for s in thr["scenarios"]
                 if s["name"] == "established_clusterip_dnat_vxlan")
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="Sluice, established")
    if kern:
        for shape, style in (("established_first", "s--"), ("established_last", "s:"),
                             ("new_first", "^--")):
            kp = sorted((r["services"], r["mpps"]) for r in kern.get("throughput", [])
                        if r.get("shape") == shape)
            if kp:
                ax.plot([p[0] for p in kp], [p[1] for p in kp], style,
                        label="kernel iptables, " + shape.replace("_", " "))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Services")
    ax.set_ylabel("Mpps on one core")
    ax.set_title("Throughput vs number of Services")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "mpps_vs_services.png"), dpi=110)
    plt.close(fig)
    made.append("mpps_vs_services.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for u in thr.get("update_latency", []):
        xs = sorted(u["microseconds"])
        ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post",
                label="Sluice reload, %d Services" % u["services"])
    if kern:
        for r in kern.get("programming", []):
            xs = sorted(x for x in (r.get("one_change_us") or {}).get("runs", []) if x is not None)
            if xs:
                ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post",
                        linestyle="--", label="iptables-restore (%s) one change, %d Services" %
                        (r.get("backend", "?"), r["services"]))
    ax.set_xscale("log")
    ax.set_xlabel("microseconds")
    ax.set_ylabel("fraction of updates")
    ax.set_title("Programming latency of one endpoint change (CDF)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "update_latency_cdf.png"), dpi=110)
    plt.close(fig)
    made.append("update_latency_cdf.png")
    return made


if __name__ == "__main__":
    d = sys.argv[1]
    with open(os.path.join(d, "results.json")) as f:
        print(write(json.load(f), d))
