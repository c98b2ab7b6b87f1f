#!/usr/bin/python3
"""Kernel side of the Sluice benchmark: kube-proxy's iptables rules run by the Linux kernel.

Three network namespaces, made and removed by this script:

    client (afp_blast) --veth c0|c1-- node (kube-proxy rules, conntrack, forwarding) --veth n1|p0-- pod

The node namespace holds exactly the iptables rule set kube-proxy writes for N Services
(kube_proxy_rules.py); the pod namespace owns the endpoints' subnet and drops everything in its
raw PREROUTING hook, so the sink costs almost nothing; delivered packets are counted on the pod
side of the veth (p0 rx_packets). afp_blast is pinned to one CPU: veth transmit runs the peer's
receive path on the sending CPU, so the node's whole forwarding path runs on that core too.

For every N in --services it measures delivered Mpps for established flows and new flows, to the
first and to the last Service of the (linear) KUBE-SERVICES list, and for NodePort traffic to the
node's address; and the programming latency of kube-proxy's full and partial iptables-restore.
Everything lands in one JSON file (--out). See README.md beside this file.

Run as root: /usr/bin/python3 bench/kernel/run_kernel_bench.py [--quick] --out /tmp/k.json
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # run as root from the source tree: leave no __pycache__ behind
sys.path.insert(0, HERE)
import kube_proxy_rules as kpr  # noqa: E402

SCHEMA = "sluice-kernel-bench/1"

# Addresses of the three namespaces. The client side stands for a pod on this node (its sources
# are inside the cluster CIDR, so ClusterIP traffic is not masqueraded) or for an external client
# (198.18.0.0/15, outside the cluster CIDR, for NodePort traffic, which is masqueraded).
CLIENT_IP, NODE_CLIENT_SIDE_IP = "10.0.1.2", "10.0.1.1"
NODE_POD_SIDE_IP, POD_IP = "10.0.2.1", "10.0.2.2"
POD_CLIENT_NET = "10.244.128.0/17"  # "local pods" that send to Services
POD_CLIENT_SRC = "10.244.128.1"
ENDPOINT_NET = "10.244.0.0/17"  # every generated endpoint lives here, behind the pod namespace
EXTERNAL_NET = "198.18.0.0/15"
EXTERNAL_SRC = "198.18.0.1"

CLIENT_SEQ, SERVER_SEQ = 1000, 5000
CONNTRACK_MAX = 4194304  # global (read-only inside a netns); restored on exit
RESTORE_TOOLS = {"nft": "iptables-nft-restore", "legacy": "iptables-legacy-restore"}
SAVE_TOOLS = {"nft": "iptables-nft-save", "legacy": "iptables-legacy-save"}

METHOD = (
    "Three network namespaces: client --veth-- node --veth-- pod. The node namespace has "
    "ip_forward=1, rp_filter=0, route_localnet=1, nf_conntrack, and kube-proxy's iptables rule "
    "set for N Services (2 endpoints each, NodePorts on the first min(N,2000)), generated line for "
    "line as kube-proxy's iptables proxier writes it (kube_proxy_rules.py) plus kube-proxy's "
    "PREROUTING/OUTPUT/POSTROUTING/INPUT/FORWARD jump rules; the traffic namespace is loaded in "
    "slices of 1000 Services because iptables-nft needs minutes for one 10000-Service restore (the "
    "resulting rule set is identical and is checked against a single restore when one finished). "
    "The pod namespace routes the endpoints' subnet and drops every packet in raw PREROUTING; "
    "'delivered' is the rx_packets counter of the pod end of the node->pod veth. Traffic: 60-byte "
    "TCP frames with valid checksums written by afp_blast (AF_PACKET, PACKET_QDISC_BYPASS, "
    "sendmmsg batches of {batch}) on the client veth, the generator pinned with taskset to CPU "
    "{cpu}. A veth transmit queues the frame to the sending CPU's backlog and the softirq runs as "
    "the send returns, so the node's whole path (conntrack, nat, filter, routing, the second veth) "
    "runs on that same core (each run records the softirq share of that CPU and of the others): "
    "the figures are single-core kernel forwarding rates with the generator on the same core; "
    "the baseline (a second client/node/pod set with no iptables rules, so no conntrack and no "
    "NAT, the same packets routed to an endpoint address) is the apparatus's own ceiling. "
    "'established': {flows} "
    "flows complete a real handshake first (SYN from the client, the SYN-ACK sent from the "
    "endpoint side to the reply tuple read from /proc/net/nf_conntrack, ACK), then the client "
    "sends pure ACKs cycling over the flows: conntrack ESTABLISHED, the nat table is not "
    "traversed. 'new': every packet is a SYN with a new source port/address, so each one "
    "traverses KUBE-SERVICES down to its Service (linear), picks an endpoint, is DNATed and "
    "creates a conntrack entry; conntrack is flushed (ctnetlink) before each new-flow run and "
    "nf_conntrack_max is raised so the table never fills. 'first'/'last' are the first and the "
    "last Service in KUBE-SERVICES. NodePort traffic goes to the node's address on the client "
    "veth, port 30000+i of the last NodePort Service (i = min(N,2000)-1), from an off-cluster "
    "source (masqueraded with --random-fully). Each figure is delivered packets / generator "
    "seconds over a {seconds} s run. Runs are interleaved in {repeat} rounds (established cases, "
    "then new-flow cases), each round starting with a baseline run, so that the VM's speed "
    "drifts hit all cases alike; every run also carries its ratio to its round's baseline. "
    "Median, min, max over the rounds. Programming latency: wall time of one "
    "`iptables-restore --noflush --counters` run (through `ip netns exec`, whose overhead is "
    "reported separately) of the full rule set into an empty namespace (initial) and over the "
    "same rules (resync, what kube-proxy's periodic full sync does), and of the partial restore "
    "kube-proxy writes when one Service's endpoint changes (whole filter table and shared nat "
    "chains, the changed Service's chains, -X of the stale endpoint chain); a restore that runs "
    "past {timeout} s is stopped and reported as timed out (the resync is then skipped, and the "
    "partial restores run against the traffic namespace, loaded in slices)."
)


class BenchError(Exception):
    pass


def run(cmd, input_text=None, check=True, timeout=None):
    proc = subprocess.run(cmd, input=input_text.encode() if input_text is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and proc.returncode != 0:
        raise BenchError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
                         f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


def nsexec(ns, *cmd, **kw):
    return run(["ip", "netns", "exec", ns, *cmd], **kw)


def sysctl(ns, key, value):
    nsexec(ns, "sysctl", "-qw", f"{key}={value}")


def cpu_times():
    """{cpu index: [user, nice, system, idle, iowait, irq, softirq, steal]} from /proc/stat."""
    out = {}
    with open("/proc/stat") as fp:
        for line in fp:
            if line.startswith("cpu") and line[3].isdigit():
                fields = line.split()
                out[int(fields[0][3:])] = [int(x) for x in fields[1:9]]
    return out


def cpu_noise(before, after, cpu):
    """What else the machine did during a run: the steal share of the measuring CPU (time the
    hypervisor gave to someone else) and how busy the other CPUs were (other processes share
    caches, memory bandwidth and, on a VM, possibly the physical core)."""
    def delta(c):
        return [b - a for a, b in zip(before[c], after[c])]
    d = delta(cpu)
    steal = d[7] / max(sum(d), 1)
    others = [delta(c) for c in after if c != cpu]
    busy = [1.0 - (o[3] + o[4] + o[7]) / max(sum(o), 1) for o in others]
    user = [(o[0] + o[1]) / max(sum(o), 1) for o in others]
    softirq = [o[6] / max(sum(o), 1) for o in others]
    return {"measuring_cpu_softirq": round(d[6] / max(sum(d), 1), 3),
            "other_cpus_softirq": round(max(softirq), 3) if softirq else None,
            "measuring_cpu_steal": round(steal, 3),
            "other_cpus_busy": round(max(busy), 3) if busy else None,
            "other_cpus_user": round(max(user), 3) if user else None}


def cpu_busy_fraction(cpu, interval=0.25):
    """Share of `interval` that CPU `cpu` spent outside idle/iowait (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as fp:
            for line in fp:
                if line.startswith(f"cpu{cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    return sum(v), v[3] + v[4]
        raise BenchError(f"no cpu{cpu} in /proc/stat")
    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def settle(cpu, limit):
    """Waits (up to `limit` s) until the measuring CPU is idle: namespace teardown and nft
    commits leave kernel work behind (netns cleanup, RCU callbacks) that would otherwise run on
    the pinned CPU in the middle of a measurement. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit and cpu_busy_fraction(cpu) > 0.05:
        pass
    return round(time.monotonic() - start, 2)


def stats(samples):
    if not samples:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


# ---------------------------------------------------------------- conntrack (netlink, /proc)

def ct_flush_here():
    """Flushes this namespace's conntrack table: ctnetlink IPCTNL_MSG_CT_DELETE, no attributes
    (what `conntrack -F` sends), so the benchmark needs no conntrack tool."""
    nfnl_subsys_ctnetlink, ipctnl_msg_ct_delete = 1, 2
    nlm_f_request, nlm_f_ack, nlmsg_error = 0x1, 0x4, 2
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    try:
        sock.bind((0, 0))
        body = struct.pack("=BBH", socket.AF_INET, 0, 0)  # nfgenmsg: family, version, res_id
        header = struct.pack("=IHHII", 16 + len(body),
                             nfnl_subsys_ctnetlink << 8 | ipctnl_msg_ct_delete,
                             nlm_f_request | nlm_f_ack, 1, 0)
        sock.send(header + body)
        reply = sock.recv(65536)
        _, msg_type, _, _, _ = struct.unpack("=IHHII", reply[:16])
        if msg_type == nlmsg_error:
            err = struct.unpack("=i", reply[16:20])[0]
            if err not in (0, -2):  # -ENOENT: table already empty
                raise OSError(-err, os.strerror(-err))
    finally:
        sock.close()


def ct_flush(ns):
    nsexec(ns, sys.executable, os.path.abspath(__file__), "--ct-flush-here")


def ct_entries(ns):
    """Parses /proc/net/nf_conntrack: [(state, orig tuple, reply tuple)], tuples as
    (src, dst, sport, dport)."""
    out = []
    for line in nsexec(ns, "cat", "/proc/net/nf_conntrack").splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[2] != "tcp":
            continue
        kv = [f.split("=", 1) for f in fields if "=" in f]
        src = [v for k, v in kv if k == "src"]
        dst = [v for k, v in kv if k == "dst"]
        sport = [int(v) for k, v in kv if k == "sport"]
        dport = [int(v) for k, v in kv if k == "dport"]
        if len(src) < 2 or len(sport) < 2:
            continue
        out.append((fields[5], (src[0], dst[0], sport[0], dport[0]),
                    (src[1], dst[1], sport[1], dport[1])))
    return out


def ct_count(ns):
    return int(nsexec(ns, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").strip())


def ct_drop_stats(ns):
    """Sums the per-CPU drop/early_drop/insert_failed columns of /proc/net/stat/nf_conntrack."""
    lines = nsexec(ns, "cat", "/proc/net/stat/nf_conntrack").splitlines()
    names = lines[0].split()
    totals = dict.fromkeys(("drop", "early_drop", "insert_failed"), 0)
    for line in lines[1:]:
        for name, value in zip(names, line.split()):
            if name in totals:
                totals[name] += int(value, 16)
    return totals


# ---------------------------------------------------------------- namespaces

class Namespaces:
    """Every namespace this run creates, so that a finally block can remove them all."""

    def __init__(self):
        self.tag = f"sluicekb{os.getpid()}"
        self.live = []

    def add(self, role):
        name = f"{self.tag}-{role}"
        run(["ip", "netns", "add", name])
        self.live.append(name)
        return name

    def delete(self, name):
        run(["ip", "netns", "del", name], check=False)
        if name in self.live:
            self.live.remove(name)

    def delete_all(self):
        for name in list(self.live):
            self.delete(name)


class Topology:
    """client --c0|c1-- node --n1|p0-- pod."""

    def __init__(self, spaces, backend, name):
        self.spaces = spaces
        self.backend = backend
        self.client = spaces.add(f"{name}-client")
        self.node = spaces.add(f"{name}-node")
        self.pod = spaces.add(f"{name}-pod")
        for ns in (self.client, self.node, self.pod):
            sysctl(ns, "net.ipv6.conf.all.disable_ipv6", 1)
            sysctl(ns, "net.ipv6.conf.default.disable_ipv6", 1)
            nsexec(ns, "ip", "link", "set", "lo", "up")
        run(["ip", "-n", self.client, "link", "add", "c0", "type", "veth", "peer", "name", "c1",
             "netns", self.node])
        run(["ip", "-n", self.node, "link", "add", "n1", "type", "veth", "peer", "name", "p0",
             "netns", self.pod])
        for ns, dev, addr in ((self.client, "c0", CLIENT_IP), (self.node, "c1", NODE_CLIENT_SIDE_IP),
                              (self.node, "n1", NODE_POD_SIDE_IP), (self.pod, "p0", POD_IP)):
            nsexec(ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            nsexec(ns, "ip", "link", "set", dev, "up")
        self.mac = {dev: nsexec(ns, "cat", f"/sys/class/net/{dev}/address").strip()
                    for ns, dev in ((self.client, "c0"), (self.node, "c1"),
                                    (self.node, "n1"), (self.pod, "p0"))}
        sysctl(self.node, "net.ipv4.ip_forward", 1)
        for conf in ("all", "default", "c1", "n1"):
            sysctl(self.node, f"net.ipv4.conf.{conf}.rp_filter", 0)
        sysctl(self.node, "net.ipv4.conf.all.route_localnet", 1)  # kube-proxy sets it
        for net in (POD_CLIENT_NET, EXTERNAL_NET):
            nsexec(self.node, "ip", "route", "add", net, "via", CLIENT_IP, "dev", "c1")
        nsexec(self.node, "ip", "route", "add", ENDPOINT_NET, "via", POD_IP, "dev", "n1")
        # Static neighbours: no ARP in flight, no first packets parked in a neighbour queue.
        nsexec(self.node, "ip", "neigh", "replace", POD_IP, "lladdr", self.mac["p0"], "dev", "n1",
               "nud", "permanent")
        nsexec(self.node, "ip", "neigh", "replace", CLIENT_IP, "lladdr", self.mac["c0"], "dev",
               "c1", "nud", "permanent")
        # Sinks: drop before conntrack/routing, so neither end answers (no RSTs) or costs much.
        for ns in (self.pod, self.client):
            nsexec(ns, RESTORE_TOOLS[backend], "--noflush",
                   input_text="*raw\n-A PREROUTING -j DROP\nCOMMIT\n")

    def pod_rx(self):
        return int(nsexec(self.pod, "cat", "/sys/class/net/p0/statistics/rx_packets").strip())


# ---------------------------------------------------------------- traffic

class Blaster:
    """Runs afp_blast in a namespace, pinned to `cpu`, optionally SCHED_FIFO (`rt_priority` > 0)
    so that other processes on the machine cannot time-share the measuring CPU with it."""

    def __init__(self, binary, cpu, batch, rt_priority):
        self.binary, self.cpu, self.batch = binary, cpu, batch
        self.sched = ["chrt", "-f", str(rt_priority)] if rt_priority > 0 else []

    def send(self, ns, dev, src_mac, dst_mac, *, flags, seq, ack=0, flows=None, new_flows=False,
             tuples=None, saddr=None, daddr=None, sport=None, dport=None, seconds=None,
             packets=None):
        cmd = ["ip", "netns", "exec", ns, *self.sched, "taskset", "-c", str(self.cpu), self.binary,
               "--ifname", dev, "--src-mac", src_mac, "--dst-mac", dst_mac,
               "--tcp-flags", flags, "--seq", str(seq), "--ack", str(ack),
               "--batch", str(self.batch)]
        if tuples:
            cmd += ["--tuples", tuples]
        else:
            cmd += ["--saddr", saddr, "--daddr", daddr, "--sport", str(sport), "--dport", str(dport)]
        if new_flows:
            cmd.append("--new-flows")
        elif flows:
            cmd += ["--flows", str(flows)]
        if seconds:
            cmd += ["--seconds", str(seconds)]
        if packets:
            cmd += ["--packets", str(packets)]
        timeout = (seconds or 0) + 30
        return json.loads(run(cmd, timeout=timeout))


def ack_kw(saddr, daddr, dport, flows):
    """Pure ACKs of established connections (sport 10000.., seq/ack after the handshake)."""
    return dict(flags="A", seq=CLIENT_SEQ + 1, ack=SERVER_SEQ + 1, saddr=saddr, daddr=daddr,
                sport=10000, dport=dport, flows=flows)


def syn_kw(saddr, daddr, dport):
    """SYNs, each from a new source port (and every 64512 packets a new source address)."""
    return dict(flags="S", seq=CLIENT_SEQ, saddr=saddr, daddr=daddr, sport=1024, dport=dport,
                new_flows=True)


class TrafficBench:
    """Traffic through one Topology: handshakes, runs, the delivered counter."""

    def __init__(self, topo, blaster, args, workdir):
        self.topo, self.blaster, self.args, self.workdir = topo, blaster, args, workdir

    def client(self, **kw):
        t = self.topo
        return self.blaster.send(t.client, "c0", t.mac["c0"], t.mac["c1"], **kw)

    def measure(self, **kw):
        rx0 = self.topo.pod_rx()
        times0 = cpu_times()
        res = self.client(seconds=self.args.seconds, **kw)
        times1 = cpu_times()
        time.sleep(0.05)  # let the last softirq batch land (it runs on the same CPU anyway)
        delivered = self.topo.pod_rx() - rx0
        return {"sent": res["sent"], "delivered": delivered, "seconds": res["seconds"],
                "mpps": delivered / res["seconds"] / 1e6 if res["seconds"] > 0 else 0.0,
                "noise": cpu_noise(times0, times1, self.args.cpu)}

    def measure_new_flows(self, **kw):
        node = self.topo.node
        ct_flush(node)
        drops0 = ct_drop_stats(node)
        r = self.measure(**kw)
        r["conntrack_entries_after"] = ct_count(node)
        drops1 = ct_drop_stats(node)
        r["conntrack_drops"] = {k: drops1[k] - drops0[k] for k in drops0}
        return r

    def handshake(self, saddr, daddr, dport):
        """Opens `flows` real TCP connections through the node: SYNs from the client, SYN-ACKs
        from the endpoint side sent to the reply tuples conntrack expects (after DNAT and any
        masquerade), ACKs. Returns how many conntrack entries reached ESTABLISHED."""
        t, k = self.topo, self.args.flows
        syn = dict(saddr=saddr, daddr=daddr, sport=10000, dport=dport, flows=k, packets=k)
        self.client(flags="S", seq=CLIENT_SEQ, **syn)
        replies = [reply for state, orig, reply in ct_entries(t.node)
                   if orig[0] == saddr and orig[1] == daddr and orig[3] == dport]
        if not replies:
            raise BenchError(f"no conntrack entry for SYNs to {daddr}:{dport}: rules not working?")
        path = os.path.join(self.workdir, "reply_tuples.txt")
        with open(path, "w") as fp:
            fp.writelines(f"{s} {d} {sp} {dp}\n" for s, d, sp, dp in replies)
        self.blaster.send(t.pod, "p0", t.mac["p0"], t.mac["n1"], flags="SA", seq=SERVER_SEQ,
                          ack=CLIENT_SEQ + 1, tuples=path, packets=len(replies))
        self.client(packets=k, **ack_kw(saddr, daddr, dport, k))
        return sum(1 for state, orig, _ in ct_entries(t.node) if state == "ESTABLISHED"
                   and orig[0] == saddr and orig[1] == daddr and orig[3] == dport)


def traffic(bench, base, services):
    """All traffic cases for one rule set, measured in interleaved rounds.

    The machine's speed drifts over tens of seconds (a shared VM), so instead of running each
    case's repeats back to back, every round runs each case once, preceded by the baseline
    (`base`: the same kind of packets through a node with no rules at all). A slow period then
    hits all cases alike, and each run's ratio to its round's baseline cancels the drift.
    Established cases share one conntrack table (their connections have distinct
    destinations); new-flow runs flush it first, so they come after the established rounds.
    """
    first, last = services[0], services[-1]
    nodeport = [s for s in services if s.node_port][-1]
    k = bench.args.flows
    endpoint = (kpr.endpoint_ip(0, 0), kpr.TARGET_PORT)
    established = {
        "clusterip_established_first": (first, POD_CLIENT_SRC, first.cluster_ip, first.port),
        "clusterip_established_last": (last, POD_CLIENT_SRC, last.cluster_ip, last.port),
        "nodeport_established_last": (nodeport, EXTERNAL_SRC, NODE_CLIENT_SIDE_IP,
                                      nodeport.node_port),
    }
    new = {
        "clusterip_new_first": (first, POD_CLIENT_SRC, first.cluster_ip, first.port),
        "clusterip_new_last": (last, POD_CLIENT_SRC, last.cluster_ip, last.port),
        "nodeport_new_last": (nodeport, EXTERNAL_SRC, NODE_CLIENT_SIDE_IP, nodeport.node_port),
    }
    cases = {}
    for name, (svc, saddr, daddr, dport) in {**established, **new}.items():
        cases[name] = {"dst": f"{daddr}:{dport}", "service_index": services.index(svc),
                       "runs": []}
        if name in established:
            cases[name].update(src=saddr, flows=k)
        else:
            cases[name]["src"] = f"{saddr}+ (new source port/address per packet)"
    baseline = {"dst": "%s:%d" % endpoint, "src": POD_CLIENT_SRC, "flows": k, "runs": []}
    base_kw = ack_kw(POD_CLIENT_SRC, endpoint[0], endpoint[1], k)

    ct_flush(bench.topo.node)
    for name, (_, saddr, daddr, dport) in established.items():
        cases[name]["flows_established"] = bench.handshake(saddr, daddr, dport)
    base.client(seconds=0.2, **base_kw)  # warm-ups, not counted
    for name, (_, saddr, daddr, dport) in established.items():
        bench.client(seconds=0.2, **ack_kw(saddr, daddr, dport, k))

    def round_of(rnd, phase, names, measure_case):
        ref = base.measure(**base_kw)
        ref.update(round=rnd, phase=phase)
        baseline["runs"].append(ref)
        for name in names:
            r = measure_case(name)
            r["round"] = rnd
            r["relative_to_baseline"] = r["mpps"] / ref["mpps"] if ref["mpps"] else None
            cases[name]["runs"].append(r)

    for rnd in range(bench.args.repeat):
        round_of(rnd, "established", established,
                 lambda name: bench.measure(**ack_kw(*established[name][1:], k)))
    for rnd in range(bench.args.repeat):
        round_of(rnd, "new", new,
                 lambda name: bench.measure_new_flows(**syn_kw(*new[name][1:])))
    ct_flush(bench.topo.node)

    for case in list(cases.values()) + [baseline]:
        case["mpps"] = stats([r["mpps"] for r in case["runs"]])
    for case in cases.values():
        case["relative_to_baseline"] = stats([r["relative_to_baseline"] for r in case["runs"]
                                              if r["relative_to_baseline"] is not None])
    return cases, baseline


# ---------------------------------------------------------------- rule loading and programming

def restore(ns, backend, text, timeout=None):
    """One timed `iptables-restore --noflush --counters`; returns seconds, or None on timeout."""
    cmd = ["ip", "netns", "exec", ns, RESTORE_TOOLS[backend], "--noflush", "--counters"]
    start = time.perf_counter()
    try:
        run(cmd, input_text=text, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - start


def load_rules(ns, backend, services):
    start = time.perf_counter()
    for text in kpr.full_restore_chunks(services):
        restore(ns, backend, text)
    restore(ns, backend, kpr.jump_rules_restore())
    return time.perf_counter() - start


def kube_rules(ns, backend):
    """The KUBE-* part of iptables-save, for comparing two ways of loading the same rules."""
    out = nsexec(ns, SAVE_TOOLS[backend], timeout=300)
    return [line for line in out.splitlines()
            if line.startswith((":KUBE", "-A KUBE", "*")) and not line.startswith("#")]


def programming(spaces, backend, services, args, loaded_ns=None):
    """Times kube-proxy's full restore (initial and resync) and its one-endpoint-change partial
    restore. loaded_ns, if given, already holds the full rule set for `backend` (loaded in
    slices) and serves the partial restores when no single full restore finished in time.
    Returns (result, kube_rules of a namespace loaded by one full restore, or None)."""
    cap, repeat = args.restore_timeout, args.repeat
    full = kpr.full_restore(services)
    res = {"restore_tool": RESTORE_TOOLS[backend], "restore_bytes": len(full),
           "restore_lines": full.count("\n")}
    reference = None

    initial, timed_out = [], False
    ns = None
    for i in range(repeat):
        if ns:
            spaces.delete(ns)
        ns = spaces.add(f"prog{i}")
        t = restore(ns, backend, full, timeout=cap)
        if t is None:
            timed_out = True
            break
        initial.append(t)
    res["full_restore_initial_s"] = stats(initial)
    res["full_restore_initial_s"]["timed_out_after_s"] = cap if timed_out else None
    if initial and backend == args.backend:
        reference = kube_rules(ns, backend)

    if timed_out:
        # The resync writes the same input over the same chains and costs as much; skip it.
        res["full_restore_resync_s"] = stats([])
        res["full_restore_resync_s"]["skipped"] = "initial full restore ran past the time cap"
        spaces.delete(ns)
        if loaded_ns:
            ns = loaded_ns
        else:
            ns = spaces.add("prog")
            load_rules(ns, backend, services)
    else:
        resync, resync_timeout = [], False
        for _ in range(repeat):
            t = restore(ns, backend, full, timeout=cap)
            if t is None:
                resync_timeout = True
                break
            resync.append(t)
        res["full_restore_resync_s"] = stats(resync)
        res["full_restore_resync_s"]["timed_out_after_s"] = cap if resync_timeout else None

    # One endpoint of Service 0 moves to a new pod IP, then back: two real changes of equal size.
    svc0 = services[0]
    moved = (svc0.endpoints[0], kpr.Endpoint(kpr.spare_endpoint_ip(services), kpr.TARGET_PORT))
    change, changed = kpr.endpoint_change_restore(services, 0, moved)
    revert, _ = kpr.endpoint_change_restore(changed, 0, svc0.endpoints)
    partial = []
    for i in range(repeat):
        t = restore(ns, backend, change if i % 2 == 0 else revert, timeout=cap)
        if t is None:
            break
        partial.append(t)
    res["endpoint_change_partial_s"] = stats(partial)
    res["endpoint_change_partial_s"]["restore_lines"] = change.count("\n")
    if ns != loaded_ns:
        spaces.delete(ns)
    return res, reference


def exec_overhead(spaces, backend):
    ns = spaces.add("overhead")
    try:
        samples = [restore(ns, backend, "*filter\nCOMMIT\n") for _ in range(5)]
    finally:
        spaces.delete(ns)
    return statistics.median(samples)


def rule_counts(services):
    filt, nat = kpr.full_restore(services).split("*nat\n", 1)
    def count(text, prefix):
        return sum(1 for line in text.splitlines() if line.startswith(prefix))
    return {"nat_rules": count(nat, "-A "), "nat_chains": count(nat, ":"),
            "filter_rules": count(filt, "-A "),
            "large_cluster_mode": kpr.is_large_cluster(services),
            "kube_services_rules": len(services) + 1,
            "kube_nodeports_rules": sum(1 for s in services if s.node_port)}


# ---------------------------------------------------------------- flat views

SHAPES = {"clusterip_established_first": "established_first",
          "clusterip_established_last": "established_last",
          "clusterip_new_first": "new_first", "clusterip_new_last": "new_last",
          "nodeport_established_last": "nodeport_established",
          "nodeport_new_last": "nodeport_new"}


def flat_views(report, backend):
    """One row per (shape, N) and per N, for tables and plots; `results` holds the detail.
    Programming rows are the traffic backend's; a timed-out restore has median null and
    timed_out_after_us set."""
    def us(st):
        row = {k: (None if st.get(k) is None else st[k] * 1e6) for k in ("median", "min", "max")}
        row["runs"] = [x * 1e6 for x in st.get("samples", [])]
        row["timed_out_after_us"] = (st["timed_out_after_s"] * 1e6
                                     if st.get("timed_out_after_s") else None)
        return row
    throughput, programming_rows = [], []
    for entry in report["results"]:
        for case, shape in SHAPES.items():
            st = entry["traffic"][case]["mpps"]
            throughput.append({"shape": shape, "case": case, "services": entry["services"],
                               "mpps": st["median"], "mpps_stats": st})
        prog = entry["programming"].get(backend)
        if prog:
            programming_rows.append({
                "services": entry["services"], "backend": backend,
                "one_change_us": us(prog["endpoint_change_partial_s"]),
                "full_restore_us": us(prog["full_restore_initial_s"]),
                "full_resync_us": us(prog["full_restore_resync_s"])})
    return throughput, programming_rows


# ---------------------------------------------------------------- environment

def require_environment(args):
    if os.geteuid() != 0:
        sys.exit("run_kernel_bench: must run as root (network namespaces, veth, iptables)")
    tools = ["ip", "taskset", "chrt", "sysctl", "cc", RESTORE_TOOLS[args.backend], SAVE_TOOLS[args.backend]]
    tools += [RESTORE_TOOLS[b] for b in args.programming_backends]
    missing = sorted({t for t in tools if shutil.which(t) is None})
    if missing:
        sys.exit(f"run_kernel_bench: missing tools: {', '.join(missing)} "
                 "(Debian: apt-get install iproute2 util-linux procps gcc iptables)")
    if not os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max"):
        try:
            run(["modprobe", "nf_conntrack"], check=False)
        except FileNotFoundError:
            pass
        if not os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max"):
            sys.exit("run_kernel_bench: the kernel has no nf_conntrack")
    if args.cpu >= os.cpu_count():
        sys.exit(f"run_kernel_bench: --cpu {args.cpu} but only {os.cpu_count()} CPUs")
    for n in args.services:
        if n < 1 or kpr.ENDPOINT_BASE + kpr.ENDPOINTS_PER_SERVICE * (n + 1) > kpr.ENDPOINT_LIMIT:
            sys.exit(f"run_kernel_bench: --services {n}: must be 1..16000")


def system_info():
    cpu = "unknown"
    with open("/proc/cpuinfo") as fp:
        for line in fp:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for tool in ("iptables-nft", "iptables-legacy"):
        if shutil.which(tool):
            versions[tool] = run([tool, "--version"], check=False).strip()
    return {"kernel": platform.release(), "kernel_build": platform.version(),
            "iptables": run(["iptables", "--version"], check=False).strip(),
            "iptables_variants": versions, "cpu_model": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version()}


def build_blaster(workdir):
    binary = os.path.join(workdir, "afp_blast")
    run(["cc", "-O2", "-Wall", "-o", binary, os.path.join(HERE, "afp_blast.c")])
    return binary


def parse_args(argv):
    p = argparse.ArgumentParser(description="kube-proxy (iptables) in the kernel, measured the "
                                            "way Sluice is.")
    p.add_argument("--out", help="JSON output file (default: stdout)")
    p.add_argument("--quick", action="store_true",
                   help="100 and 10000 Services, 1 s runs, 1 round, 5 s restore cap (< ~60 s)")
    p.add_argument("--services", help="comma-separated Service counts (default 100,1000,10000)")
    p.add_argument("--repeat", type=int, help="repeats of every measurement (default 3)")
    p.add_argument("--seconds", type=float, help="seconds per traffic run (default 2)")
    p.add_argument("--flows", type=int, default=1000, help="flows of an established run")
    p.add_argument("--batch", type=int, default=64, help="frames per sendmmsg")
    p.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                   help="CPU to pin the generator (and so the kernel path) to")
    p.add_argument("--rt-priority", type=int, default=1,
                   help="run the generator SCHED_FIFO at this priority so other processes "
                        "cannot share its CPU during a run (0: normal scheduling)")
    p.add_argument("--backend", choices=sorted(RESTORE_TOOLS), default="nft",
                   help="iptables backend of the traffic namespace (default nft, Debian's default)")
    p.add_argument("--programming-backends", default="nft,legacy",
                   help="backends whose restore latency is timed (default nft,legacy)")
    p.add_argument("--restore-timeout", type=float,
                   help="stop a restore that runs longer (default 60 s; 5 s with --quick)")
    p.add_argument("--settle-limit", type=float,
                   help="longest wait for the measuring CPU to go idle before traffic "
                        "(default 10 s; 2 s with --quick)")
    p.add_argument("--ct-flush-here", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.services = [int(x) for x in (args.services or ("100,10000" if quick else
                                                         "100,1000,10000")).split(",")]
    args.repeat = args.repeat or (1 if quick else 3)
    args.seconds = args.seconds or (1.0 if quick else 2.0)
    args.restore_timeout = args.restore_timeout or (5.0 if quick else 60.0)
    args.settle_limit = args.settle_limit or (2.0 if quick else 10.0)
    args.programming_backends = [b for b in args.programming_backends.split(",") if b]
    for b in args.programming_backends:
        if b not in RESTORE_TOOLS:
            p.error(f"unknown backend {b}")
    return args


def main(argv):
    args = parse_args(argv)
    if args.ct_flush_here:
        ct_flush_here()
        return 0
    require_environment(args)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)

    started = time.time()
    spaces = Namespaces()
    workdir = tempfile.mkdtemp(prefix="sluice-kernel-bench-")
    ct_max_path = "/proc/sys/net/netfilter/nf_conntrack_max"
    with open(ct_max_path) as fp:
        ct_max_before = int(fp.read())
    report = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "default",
        "system": system_info(),
        "config": {"services": args.services, "repeat": args.repeat, "seconds": args.seconds,
                   "flows": args.flows, "batch": args.batch, "frame_bytes": 60, "cpu": args.cpu,
                   "rt_priority": args.rt_priority,
                   "backend": args.backend, "programming_backends": args.programming_backends,
                   "restore_timeout_s": args.restore_timeout,
                   "nf_conntrack_max": max(CONNTRACK_MAX, ct_max_before),
                   "nf_conntrack_max_before": ct_max_before,
                   "nf_conntrack_buckets": int(open("/proc/sys/net/netfilter/nf_conntrack_buckets")
                                               .read())},
        "method": METHOD.format(batch=args.batch, cpu=args.cpu, flows=args.flows,
                                seconds=args.seconds, repeat=args.repeat,
                                timeout=args.restore_timeout),
        "exec_overhead_s": {},
        "results": [],
    }
    try:
        blaster = Blaster(build_blaster(workdir), args.cpu, args.batch, args.rt_priority)
        with open(ct_max_path, "w") as fp:
            fp.write(str(max(CONNTRACK_MAX, ct_max_before)))
        for b in args.programming_backends:
            report["exec_overhead_s"][b] = exec_overhead(spaces, b)
        # The baseline path (no rules in its node namespace) lives for the whole run.
        base = TrafficBench(Topology(spaces, args.backend, "base"), blaster, args, workdir)
        for n in args.services:
            services = kpr.make_services(n)
            entry = {"services": n, "rules": rule_counts(services)}
            log(f"N={n}: traffic namespaces, rules ({args.backend})")
            topo = Topology(spaces, args.backend, "kube")
            entry["load_chunked_s"] = load_rules(topo.node, args.backend, services)
            entry["settle_wait_s"] = settle(args.cpu, args.settle_limit)
            log(f"N={n}: traffic (waited {entry['settle_wait_s']} s for CPU {args.cpu} to idle)")
            entry["traffic"], entry["baseline_forward_no_rules"] = traffic(
                TrafficBench(topo, blaster, args, workdir), base, services)
            loaded = kube_rules(topo.node, args.backend)
            entry["programming"] = {}
            entry["chunked_load_matches_single_restore"] = None
            for b in args.programming_backends:
                log(f"N={n}: programming latency ({b})")
                entry["programming"][b], reference = programming(
                    spaces, b, services, args, topo.node if b == args.backend else None)
                if reference is not None:
                    entry["chunked_load_matches_single_restore"] = reference == loaded
            for ns in (topo.client, topo.node, topo.pod):
                spaces.delete(ns)
            report["results"].append(entry)
            log(f"N={n}: " + ", ".join(
                f"{k} {v['mpps']['median']:.3f}" for k, v in entry["traffic"].items()) + " Mpps")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second ^C must not cut the cleanup short
        spaces.delete_all()
        with open(ct_max_path, "w") as fp:
            fp.write(str(ct_max_before))
        shutil.rmtree(workdir, ignore_errors=True)
    report["throughput"], report["programming"] = flat_views(report, args.backend)
    report["elapsed_s"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        with open(args.out, "w") as fp:
            fp.write(text)
        log(f"wrote {args.out} in {report['elapsed_s']} s")
    else:
        sys.stdout.write(text)
    return 0


def log(msg):
    print(f"[kernel-bench] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
