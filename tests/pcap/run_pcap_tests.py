#!/usr/bin/python3
"""The pcap test suite: sluice-replay on the example captures, outputs
checked field by field with scapy and against the counters JSON.

    /usr/bin/python3 tests/pcap/run_pcap_tests.py --replay build/app/sluice-replay \\
        [--source-root .] [--work DIR] [-k SUBSTRING] [-v]

Generates the captures with examples/make_captures.py into <work>/captures,
runs each scenario, prints one PASS/FAIL line per scenario, then
"N passed, M failed"; exits 1 if any failed. Registered with meson as
`meson test --suite pcap`. Needs Debian's scapy (/usr/bin/python3).
"""

import argparse
import base64
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import journey  # noqa: E402
import journey_packets as jp  # noqa: E402
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

SCENARIOS = []


def scenario(name, opt_in=None):
    """Registers a scenario. `opt_in` (a reason) keeps it out of the default
    run: it runs with --all or when -k selects it."""
    def register(fn):
        SCENARIOS.append((name, fn, opt_in))
        return fn
    return register


class Context(object):
    def __init__(self, replayer, captures, verbose):
        self.r = replayer
        self.captures = captures
        self.verbose = verbose

    def capture(self, name):
        return os.path.join(self.captures, name)


# ---------------------------------------------------------------------------
# 1. NodePort from outside, node-228
# ---------------------------------------------------------------------------


@scenario("nodeport_forward")
def t_nodeport_forward(ctx):
    run = ctx.r.run("s1-nodeport", "node-228",
                    {"uplink": ctx.capture("nodeport_forward.pcap")},
                    workers=2, dispatch="roundrobin")
    port = journey.check_nodeport_forward(run, 2)
    return "ARP reply + 3 VXLAN to node-227, masquerade 10.244.26.0:%d" % port

# ---------------------------------------------------------------------------
# 2. The three-node journey
# ---------------------------------------------------------------------------


@scenario("three_node_journey")
def t_journey(ctx):
    j = journey.ThreeNodeJourney(
        ctx.r, seed=journey.DEFAULT_SEED, workers=2,
        forward_pcap=ctx.capture("nodeport_forward.pcap"))
    j.run_all()
    creator = journey.creating_worker(j.pass2)
    return ("port %d in both passes; %d replies back as 10.10.100.228:8014 "
            "-> 172.100.0.6:51234; flow on worker %d, replies on %s"
            % (j.snat_port, len(j.returned), creator,
               [w["conntrack_hit_reply"] for w in j.pass2.workers]))

# ---------------------------------------------------------------------------
# 3. Pod to pod and ClusterIP on node-228
# ---------------------------------------------------------------------------


@scenario("pod_to_pod")
def t_pod_to_pod(ctx):
    seen = collections.OrderedDict()
    # One run without --seed (whatever the dataplane picks), then seeds
    # until both endpoints were chosen at least once.
    outcome = journey.check_pod_to_pod(
        ctx.r.run("s3-pod2pod", "node-228",
                  {"pods": ctx.capture("pod_to_pod.pcap")}, workers=2), 2)
    seen.setdefault(outcome, "unseeded")
    for seed in range(1, 21):
        if len(seen) == 2:
            break
        run = ctx.r.run("s3-pod2pod-seed%d" % seed, "node-228",
                        {"pods": ctx.capture("pod_to_pod.pcap")},
                        workers=2, seed=seed)
        seen.setdefault(journey.check_pod_to_pod(run, 2), "seed %d" % seed)
    if len(seen) != 2:
        raise AssertionError("the ClusterIP SYN always went %s in 21 runs "
                             "(2 ready endpoints)" % list(seen)[0])
    return "both endpoints chosen: %s" % ", ".join(
        "%s (%s)" % kv for kv in seen.items())

# ---------------------------------------------------------------------------
# 4. Pod to the internet and to kube-dns on node-226
# ---------------------------------------------------------------------------


@scenario("pod_to_internet")
def t_pod_to_internet(ctx):
    run = ctx.r.run("s4-internet", "node-226",
                    {"pods": ctx.capture("pod_to_internet.pcap")}, workers=2)
    port = journey.check_pod_to_internet(run, 2)
    return ("SYN out as 10.10.100.226:%d, DNS DNATed to 10.244.24.53:53"
            % port)

# ---------------------------------------------------------------------------
# 5. Malformed frames
# ---------------------------------------------------------------------------


def _only_arp_requests(run):
    extra = [(role, p) for role in journey.ROLES for p in run.out.get(role, [])
             if not (ARP in p and p[ARP].op == 1)]
    if extra:
        raise AssertionError("%s: output besides ARP requests:\n%s"
                             % (run.name, run.describe_outputs()))


def _pinpoint_malformed(ctx):
    """Feeds each frame alone; returns lines 'index: expected X, got Y'."""
    lines = []
    frames = jp.malformed_packets()
    for i, (m, frame) in enumerate(zip(jp.MALFORMED, frames)):
        run = ctx.r.run("s5-malformed-%02d" % i, "node-228",
                        {"uplink": [frame]}, workers=1)
        got = run.drops()
        got_s = ", ".join("%s=%d" % kv for kv in sorted(got.items())) or \
            "no drop counter"
        if run.rc != 0:
            got_s += " (exit %s)" % run.rc
        if got != {m.reason: 1} or run.rc != 0:
            lines.append("frame %d (%s): expected %s, got %s"
                         % (i, m.description, m.reason, got_s))
    return lines


@scenario("malformed")
def t_malformed(ctx):
    run = ctx.r.run("s5-malformed", "node-228",
                    {"uplink": ctx.capture("malformed.pcap")}, workers=2)
    if run.rc != 0:
        raise AssertionError("exit code %s\n%s" % (run.rc, run.stderr))
    n = len(jp.MALFORMED)
    problems = []
    if len(run.inputs["uplink"]) != n:
        problems.append("malformed.pcap holds %d frames, the table %d"
                        % (len(run.inputs["uplink"]), n))
    if run.total.get("rx_packets") != n:
        problems.append("rx_packets: expected %d, got %s"
                        % (n, run.total.get("rx_packets")))
    try:
        _only_arp_requests(run)
    except AssertionError as e:
        problems.append(str(e))
    want = journey.expected_malformed_drops()
    got = run.drops()
    if dict(want) != got:
        diff = ["%s: expected %d, got %d" % (k, want.get(k, 0), got.get(k, 0))
                for k in sorted(set(want) | set(got))
                if want.get(k, 0) != got.get(k, 0)]
        problems.append("drop counters differ: " + "; ".join(diff))
        problems += _pinpoint_malformed(ctx)
    if problems:
        raise AssertionError("\n".join(problems))
    return "%d frames, %d drop reasons, counts match the table" % (
        n, len(want))

# ---------------------------------------------------------------------------
# 6. Rejected cluster files
# ---------------------------------------------------------------------------


def _bad_service_port(doc):
    for i, item in enumerate(doc["kubernetes"]["items"]):
        if item["kind"] == "Service" and \
                item["metadata"]["name"] == "web":
            item["spec"]["ports"][0]["port"] = 70000
            return ["kubernetes.items[%d]" % i, "Service default/web",
                    "spec.ports[0].port", "70000"]
    raise AssertionError("no Service default/web in node-228.json")


def _bad_vtep_mac(doc):
    for kv in doc["etcd"]["kvs"]:
        key = base64.b64decode(kv["key"]).decode()
        if key.endswith("/subnets/10.244.26.0-24"):
            value = json.loads(base64.b64decode(kv["value"]))
            value["BackendData"]["VtepMAC"] = "zz"
            kv["value"] = base64.b64encode(
                json.dumps(value, separators=(",", ":")).encode()).decode()
            return [key, "VtepMAC", "zz"]
    raise AssertionError("no lease 10.244.26.0-24 in node-228.json")


@scenario("bad_cluster_files")
def t_bad_cluster_files(ctx):
    with open(ctx.r.cluster("node-228")) as f:
        text = f.read()
    cases = []
    doc = json.loads(text)
    want = _bad_service_port(doc)
    cases.append(("service port 70000", json.dumps(doc, indent=1), want))
    cases.append(("truncated JSON", text[:len(text) // 2], ["JSON"]))
    doc = json.loads(text)
    want = _bad_vtep_mac(doc)
    cases.append(('lease VtepMAC "zz"', json.dumps(doc, indent=1), want))
    problems = []
    for i, (what, body, needles) in enumerate(cases):
        path = ctx.r.path("s6-bad-%d.json" % i)
        with open(path, "w") as f:
            f.write(body)
        run = ctx.r.run("s6-bad-%d" % i, path,
                        {"uplink": ctx.capture("nodeport_forward.pcap")},
                        workers=1)
        if run.rc != 2:
            problems.append("%s: exit %s, expected 2" % (what, run.rc))
        missing = [s for s in needles if s not in run.stderr]
        if missing or not run.stderr.strip():
            problems.append("%s: stderr lacks %s: %r" % (what, missing,
                                                         run.stderr))
        for role, p in run.out_paths.items():
            count = journey.capture_packet_count(p)
            if count:
                problems.append("%s: %s output holds %d packets"
                                % (what, role, count))
        if run.total.get("rx_packets"):
            problems.append("%s: packets were processed" % what)
        if ctx.verbose:
            print("    %s: %s" % (what, run.stderr.strip()))
    if problems:
        raise AssertionError("\n".join(problems))
    return "3 files rejected with exit 2, field named, no output"

# ---------------------------------------------------------------------------
# 7. (opt-in) VXLAN and the uplink MTU
# ---------------------------------------------------------------------------


def _web1_to_web2(ip_total_length, ip_id):
    return (Ether(src=jp.POD_WEB_1.mac, dst=jp.NODE_228.pods_mac)
            / IP(src=jp.POD_WEB_1.ip, dst=jp.POD_WEB_2.ip, ttl=64, id=ip_id,
                 flags="DF")
            / TCP(sport=40112, dport=8080, flags="A", seq=1, ack=1)
            / Raw(load=b"x" * (ip_total_length - 40)))


@scenario("vxlan_mtu")
def t_vxlan_mtu(ctx):
    """Uplink MTU 1500 leaves 1450 bytes for the inner IPv4 packet (flannel.1's
    MTU): 1450 goes out as a 1500-byte outer packet, 1451 and 1464 do not fit
    and are dropped as vxlan_too_big."""
    sizes = (1450, 1451, 1464)
    pkts = [_web1_to_web2(n, 0x3100 + i) for i, n in enumerate(sizes)]
    jp._stamp(pkts, jp.T_POD_TO_POD)
    run = ctx.r.run("s7-mtu", "node-228", {"pods": pkts}, workers=1)
    journey.check_ok(run)
    problems = []
    for i, p in enumerate(run.out.get("uplink", [])):
        if p[IP].len > 1500:
            inner = journey.co.decode_vxlan(p)[1]
            problems.append("uplink out %d: outer IPv4 of %d bytes (inner %d)"
                            " exceeds the uplink MTU 1500"
                            % (i, p[IP].len, inner[IP].len))
    for check in (lambda: journey.check_counts(run, uplink=1, pods=0, host=0),
                  lambda: journey.check_counters(
                      run, dict(vxlan_too_big=2, vxlan_encapsulated=1))):
        try:
            check()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        raise AssertionError("\n".join(problems))
    return "1450 bytes encapsulated to 1500, 1451 and 1464 dropped"

# ---------------------------------------------------------------------------


def _node_cmd(ctx, name, uplink_in, uplink_out, cluster, extra_vdev_args="",
              node_args=()):
    """sluice-node on two net_pcap ports (uplink, pods) with one worker."""
    pods_in = ctx.r.write_pcap("%s.pods-in.pcap" % name, [])
    pods_out = ctx.r.path("%s.pods-out.pcap" % name)
    return [ctx.node_binary, "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry",
            "--file-prefix=sluice-%s-%d" % (name, os.getpid()), "-l", "0-1",
            "--log-level=*:warning",
            "--vdev", "net_pcap_u,rx_pcap=%s,tx_pcap=%s%s" % (uplink_in, uplink_out,
                                                             extra_vdev_args),
            "--vdev", "net_pcap_p,rx_pcap=%s,tx_pcap=%s" % (pods_in, pods_out),
            "--", "--cluster", cluster, "--uplink", "net_pcap_u", "--pods",
            "net_pcap_p", "--workers", "1"] + list(node_args)


@scenario("sluice_node_on_ports")
def t_sluice_node(ctx):
    """sluice-node, the long-running program, polls real ethdev ports (here
    net_pcap devices) with the same workers: the NodePort journey's first hop
    comes out as from sluice-replay."""
    out = ctx.r.path("node.uplink-out.pcap")
    cmd = _node_cmd(ctx, "node", ctx.capture("nodeport_forward.pcap"), out,
                    ctx.r.cluster("node-228"), node_args=["--run-seconds", "2"])
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise AssertionError("sluice-node exited %d\n%s" % (p.returncode, p.stderr.decode()))
    pkts = journey.read_capture(out)
    vx = [q for q in pkts if q.haslayer("VXLAN")]
    if len(pkts) != 4 or len(vx) != 3:
        raise AssertionError("expected an ARP reply and 3 VXLAN packets, got: %s"
                             % [q.summary() for q in pkts])
    journey.co.assert_all_checksums_valid(pkts)
    inner = [journey.co.decode_vxlan(q)[1] for q in vx]
    if {i[IP].src for i in inner} != {"10.244.26.0"} or len({i[TCP].sport for i in inner}) != 1:
        raise AssertionError("inner sources: %s" % [(i[IP].src, i[TCP].sport) for i in inner])
    if {i[IP].dst for i in inner} != {"10.244.25.149"}:
        raise AssertionError("inner destinations: %s" % [i[IP].dst for i in inner])
    return "ARP answered, 3 packets masqueraded to 10.244.26.0:%d and sent to node-227" % (
        inner[0][TCP].sport)


@scenario("sluice_node_rejected_reload")
def t_sluice_node_reload(ctx):
    """SIGHUP with a broken cluster file: sluice-node says why, keeps its
    tables, and traffic keeps flowing; a later good file is applied."""
    import shutil
    import signal
    cluster = ctx.r.path("reload-cluster.json")
    shutil.copy(ctx.r.cluster("node-228"), cluster)
    # The client's packets replayed in a loop (net_pcap infinite_rx), so
    # traffic runs before, during and after the reloads.
    cmd = _node_cmd(ctx, "reload", ctx.capture("nodeport_forward.pcap"), "/dev/null",
                    cluster, extra_vdev_args=",infinite_rx=1",
                    node_args=["--stats-interval", "1", "--run-seconds", "6"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        with open(cluster, "w") as f:
            f.write('{"node": {"name": "node-228"')  # truncated JSON
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        shutil.copy(ctx.r.cluster("node-228"), cluster)
        proc.send_signal(signal.SIGHUP)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stdout, stderr = stdout.decode(), stderr.decode()
    if proc.returncode != 0:
        raise AssertionError("sluice-node exited %d\n%s" % (proc.returncode, stderr))
    if "rejected, last good tables keep serving" not in stderr or "JSON" not in stderr:
        raise AssertionError("no rejection message on stderr:\n" + stderr)
    if "sluice-node: reloaded" not in stdout:
        raise AssertionError("the good file was not reloaded:\n" + stdout[-2000:])
    # Counter blocks printed every second: the tx count must keep growing
    # after the rejected reload, and nothing may be dropped.
    tx = [int(line.split()[1]) for line in stdout.splitlines()
          if line.startswith("tx_uplink ")]
    if len(tx) < 4 or not all(b > a for a, b in zip(tx, tx[1:])):
        raise AssertionError("tx_uplink did not keep growing: %s" % tx)
    # The drop block ends at the first blank line (the stage table follows).
    block = stdout.split("-- drops (reason)")[-1].split("\n\n")[0]
    drops = [line for line in block.splitlines()[1:]
             if line.strip() and not line.startswith("(none)")]
    if drops:
        raise AssertionError("drops: %s" % drops)
    return "rejected file reported, %d packets forwarded, none dropped, good file reloaded" % tx[-1]

def _leftovers():
    """What sluice-replay and sluice-node may leave: temporary folders and
    DPDK runtime folders."""
    mine = "-%d" % os.getpid()  # sluice-node runs: --file-prefix=sluice-<name>-<our pid>
    found = set()
    for d in ("/tmp", "/var/run/dpdk"):
        if os.path.isdir(d):
            found |= {os.path.join(d, e) for e in os.listdir(d)
                      if e.startswith("sluice-replay-") or
                      (e.startswith("sluice-") and e.endswith(mine))}
    return found


@scenario("leaves_nothing_behind")
def leaves_nothing_behind(ctx):
    # Runs after every other scenario (last in the list): what they left is
    # compared with what was there before the suite started, then one more
    # replay with no output captures (all outputs go to its temporary folder).
    left = _leftovers() - ctx.leftovers_before
    if left:
        raise AssertionError("left behind by the scenarios: %s" % sorted(left))
    before = _leftovers()
    run = ctx.r.run("nothing_behind", "node-228",
                    {"uplink": ctx.capture("nodeport_forward.pcap")}, outputs=())
    if run.total.get("rx_packets", 0) == 0:
        raise AssertionError("the replay processed nothing")
    left = _leftovers() - before
    if left:
        raise AssertionError("left behind by one replay: %s" % sorted(left))
    return "no temporary or DPDK runtime folder left by %d scenarios" % (len(SCENARIOS) - 1)

# ---------------------------------------------------------------------------


def generate_captures(source_root, out):
    script = os.path.join(source_root, "examples", "make_captures.py")
    p = subprocess.run([sys.executable, script, "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise AssertionError("make_captures.py failed (%d):\n%s"
                             % (p.returncode, p.stdout.decode()))
    return out


def _indent(text):
    return text.replace("\n", "\n      ")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replay", required=True, help="sluice-replay binary")
    ap.add_argument("--node", help="sluice-node binary (default: beside --replay)")
    ap.add_argument("--source-root", default=os.path.dirname(
        os.path.dirname(HERE)), help="repository root")
    ap.add_argument("--work", help="work directory (default: a temporary "
                    "one, removed afterwards)")
    ap.add_argument("-k", dest="select", help="run scenarios whose name "
                    "contains this")
    ap.add_argument("--all", action="store_true", help="also run opt-in "
                    "scenarios (known dataplane bugs)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    tmp = None
    if args.work:
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="sluice-pcap-")
        work = tmp.name
    passed = failed = 0
    start = time.time()
    leftovers_before = _leftovers()
    try:
        try:
            captures = generate_captures(args.source_root,
                                         os.path.join(work, "captures"))
            replayer = journey.Replayer(args.replay, args.source_root, work)
        except Exception as e:
            print("FAIL  setup: %s" % _indent(str(e)))
            print("0 passed, 1 failed")
            return 1
        ctx = Context(replayer, captures, args.verbose)
        ctx.leftovers_before = leftovers_before
        ctx.node_binary = os.path.abspath(args.node or os.path.join(
            os.path.dirname(args.replay), "sluice-node"))
        for name, fn, opt_in in SCENARIOS:
            if args.select and args.select not in name:
                continue
            if opt_in and not args.all and not args.select:
                print("SKIP  %s (opt-in, --all: %s)" % (name, opt_in))
                continue
            t0 = time.time()
            try:
                detail = fn(ctx)
                passed += 1
                print("PASS  %s (%.1f s): %s" % (name, time.time() - t0,
                                                 detail))
            except AssertionError as e:
                failed += 1
                print("FAIL  %s: %s" % (name, _indent(str(e))))
            except Exception:
                failed += 1
                print("FAIL  %s: error\n      %s"
                      % (name, _indent(traceback.format_exc().rstrip())))
            sys.stdout.flush()
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.verbose:
        print("(%.1f s, work directory %s)" % (time.time() - start,
                                              work if tmp is None else
                                              "removed"))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
