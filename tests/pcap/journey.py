"""Runs sluice-replay on the example captures and checks what comes out.

Shared by tests/pcap/run_pcap_tests.py (the pcap test suite) and
examples/demo.py (the story told with the dataplane's own traces). Every
check raises AssertionError with the field, the expected and the actual
value; outputs are parsed with scapy and all checksums are recomputed
independently (check_output.assert_all_checksums_valid).

    sys.path.insert(0, "<repo>/tests/pcap")
    import journey
    r = journey.Replayer("build/app/sluice-replay", "<repo>", "/tmp/work")
    j = journey.ThreeNodeJourney(r, seed=4242)
    j.run_all()

Needs Debian's scapy: run with /usr/bin/python3.
"""

import collections
import json
import os
import re
import subprocess
import sys
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import logging  # noqa: E402
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.utils import rdpcap, wrpcap  # noqa: E402

import check_output as co  # noqa: E402
import journey_packets as jp  # noqa: E402

ROLES = ("uplink", "pods", "host")
DLT_EN10MB = 1
DEFAULT_SEED = 4242
# VXLAN outer UDP source ports: [32768, 60999) (Linux's default
# ip_local_port_range, from which the kernel hashes flannel.1's port).
VXLAN_SPORT_RANGE = (jp.VXLAN_SPORT_MIN, jp.VXLAN_SPORT_MAX - 1)


# ---------------------------------------------------------------------------
# Running sluice-replay
# ---------------------------------------------------------------------------


def counter_kinds(source_root):
    """{counter name: "STAT" | "DROP"} from dataplane/common/counters.def."""
    path = os.path.join(source_root, "dataplane", "common", "counters.def")
    kinds = collections.OrderedDict()
    with open(path) as f:
        for m in re.finditer(r"^SLUICE_COUNTER\((\w+),\s*(STAT|DROP)\b",
                             f.read(), re.M):
            kinds[m.group(1)] = m.group(2)
    if not kinds:
        raise RuntimeError("no counters found in %s" % path)
    return kinds


class Run(object):
    """One sluice-replay invocation and what it produced."""

    def __init__(self, name, cmd):
        self.name = name
        self.cmd = cmd
        self.rc = None
        self.stdout = ""
        self.stderr = ""
        self.inputs = {}        # role -> [packets fed]
        self.out = {}           # role -> [packets emitted]
        self.out_paths = {}     # role -> output pcap path
        self.total = {}         # counters JSON "total"
        self.workers = []       # counters JSON "workers"
        self.drop_names = ()
        # (in role, in packet, what happened, out role, out packet), filled
        # in by the scenario checks: the rows of a hop summary.
        self.pairs = []

    def drops(self):
        """{reason: n} for every DROP counter that is not 0."""
        return {k: v for k, v in self.total.items()
                if k in self.drop_names and v}

    def describe_outputs(self):
        lines = []
        for role in ROLES:
            for i, p in enumerate(self.out.get(role, [])):
                lines.append("  %s out %d: %s" % (role, i, co.describe(p)))
        return "\n".join(lines) or "  (no output packets)"


class Replayer(object):
    """Runs the sluice-replay binary with captures written into `work`."""

    def __init__(self, binary, source_root, work):
        self.binary = os.path.abspath(binary)
        self.source_root = os.path.abspath(source_root)
        self.work = os.path.abspath(work)
        self.cluster_dir = os.path.join(self.source_root, "examples",
                                        "cluster")
        self.kinds = counter_kinds(self.source_root)
        self.drop_names = tuple(k for k, v in self.kinds.items()
                                if v == "DROP")
        os.makedirs(self.work, exist_ok=True)
        self.last = None        # the latest Run (to show it on a failure)

    def cluster(self, node):
        return os.path.join(self.cluster_dir, node + ".json")

    def path(self, name):
        return os.path.join(self.work, name)

    def write_pcap(self, name, pkts):
        path = self.path(name)
        wrpcap(path, list(pkts), linktype=DLT_EN10MB)
        return path

    def run(self, name, cluster, inputs, workers=1, dispatch=None,
            seed=None, trace=False, causal_gap_us=None, counters=True,
            outputs=ROLES):
        """Runs sluice-replay. `inputs`: {role: [packets] or pcap path};
        `cluster`: a node name ("node-228") or a file path. Output captures
        go to <work>/<name>.<role>-out.pcap for each role in `outputs`."""
        cluster_path = (self.cluster(cluster)
                        if os.path.sep not in cluster else cluster)
        cmd = [self.binary, "--cluster", cluster_path,
               "--workers", str(workers)]
        run = Run(name, cmd)
        run.drop_names = self.drop_names
        for role, src in inputs.items():
            if isinstance(src, str):
                path = src
                run.inputs[role] = list(rdpcap(path))
            else:
                path = self.write_pcap("%s.%s-in.pcap" % (name, role), src)
                run.inputs[role] = [co._as_ether(p) for p in src]
            cmd += ["--%s-in" % role, path]
        for role in outputs:
            path = self.path("%s.%s-out.pcap" % (name, role))
            if os.path.exists(path):
                os.unlink(path)
            run.out_paths[role] = path
            cmd += ["--%s-out" % role, path]
        if dispatch:
            cmd += ["--dispatch", dispatch]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if trace:
            cmd.append("--trace")
        if causal_gap_us is not None:
            cmd += ["--causal-gap-us", str(causal_gap_us)]
        cjson = self.path("%s.counters.json" % name)
        if os.path.exists(cjson):
            os.unlink(cjson)
        if counters:
            cmd += ["--counters-json", cjson]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        run.rc = p.returncode
        run.stdout = p.stdout.decode("utf-8", "replace")
        run.stderr = p.stderr.decode("utf-8", "replace")
        for role, path in run.out_paths.items():
            run.out[role] = read_capture(path)
        if counters and os.path.exists(cjson):
            with open(cjson) as f:
                doc = json.load(f)
            run.total = doc["total"]
            run.workers = doc["workers"]
        self.last = run
        return run


def read_capture(path):
    """Packets of an output capture; [] when it is missing or header-only."""
    if not os.path.exists(path) or os.path.getsize(path) <= 24:
        return []
    return list(rdpcap(path))


def capture_packet_count(path):
    """Number of packet records in a pcap (None if the file is missing)."""
    if not os.path.exists(path):
        return None
    return len(read_capture(path))


# ---------------------------------------------------------------------------
# Generic checks
# ---------------------------------------------------------------------------


def check_ok(run):
    if run.rc != 0:
        raise AssertionError("%s: sluice-replay exited %s\n%s%s"
                             % (run.name, run.rc, run.stderr,
                                run.stdout[-2000:]))
    if not run.total:
        raise AssertionError("%s: no counters JSON written" % run.name)


def check_counters(run, expected, where=None):
    """Every counter in `expected` has that total (or per-worker value if
    `where` is a worker index)."""
    values = run.total if where is None else run.workers[where]
    bad = ["%s: expected %d, got %s" % (k, v, values.get(k))
           for k, v in sorted(expected.items()) if values.get(k) != v]
    unknown = [k for k in expected if k not in run.total]
    if unknown:
        bad.append("unknown counters %s" % ", ".join(unknown))
    if bad:
        raise AssertionError("%s: counters%s:\n  %s" % (
            run.name, "" if where is None else " of worker %d" % where,
            "\n  ".join(bad)))


def check_no_drops(run):
    drops = run.drops()
    if drops:
        raise AssertionError("%s: unexpected drops: %s" % (
            run.name, ", ".join("%s=%d" % kv for kv in sorted(drops.items()))))


def check_counts(run, **counts):
    """Number of packets per output role, e.g. uplink=4, pods=0."""
    bad = []
    for role, n in counts.items():
        got = len(run.out.get(role, []))
        if got != n:
            bad.append("%s out: expected %d packets, got %d" % (role, n, got))
    if bad:
        raise AssertionError("%s: %s\n%s" % (run.name, "; ".join(bad),
                                              run.describe_outputs()))


def check_checksums(run):
    pkts = [p for role in ROLES for p in run.out.get(role, [])]
    try:
        co.assert_all_checksums_valid(pkts)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (run.name, e))


def split_arp(pkts):
    arps = [p for p in pkts if ARP in p]
    rest = [p for p in pkts if ARP not in p]
    return arps, rest


def check_arp_reply(pkt, *, mac, ip, asker_mac, asker_ip, index=None):
    """An ARP is-at from (mac, ip) to the asker, Ethernet unicast to it."""
    co.assert_ether(pkt, src=mac, dst=asker_mac, type=0x0806, index=index)
    co.assert_arp(pkt, op=2, hwsrc=mac, psrc=ip, hwdst=asker_mac,
                  pdst=asker_ip, index=index)


def check_vxlan_outer(pkt, src_node, dst_node, index=None):
    """All outer fields of flannel's VXLAN from src_node to dst_node; returns
    the inner frame."""
    inner = co.assert_vxlan(
        pkt, src_mac=src_node.uplink_mac, dst_mac=dst_node.uplink_mac,
        src_ip=src_node.ip, dst_ip=dst_node.ip, ttl=64, df=False, vni=jp.VNI,
        dport=jp.VXLAN_PORT, sport_range=VXLAN_SPORT_RANGE,
        udp_checksum_zero=True, inner_src_mac=src_node.vtep_mac,
        inner_dst_mac=dst_node.vtep_mac, index=index)
    outer = co._as_ether(pkt)
    vx = bytes(outer[UDP].payload)[:8]
    bad = []
    if vx[0] != 0x08:
        bad.append("VXLAN flags: expected 0x08, got 0x%02x" % vx[0])
    if vx[1:4] != b"\x00\x00\x00" or vx[7] != 0:
        bad.append("VXLAN reserved bytes not zero: %s" % vx.hex())
    if outer[IP].flags.MF or outer[IP].frag:
        bad.append("outer IPv4 is fragmented")
    if outer[IP].ihl != 5:
        bad.append("outer IPv4 IHL %d (expected 5)" % outer[IP].ihl)
    if inner[Ether].type != 0x0800:
        bad.append("inner ethertype 0x%04x" % inner[Ether].type)
    if bad:
        raise AssertionError("%s: %s" % (co._label(outer, index),
                                         "; ".join(bad)))
    return inner


def l4_bytes(pkt):
    """The transport segment (header + payload, no padding) of the first IP
    layer of an Ether frame."""
    ip = pkt[IP]
    raw = bytes(ip)
    return raw[ip.ihl * 4:ip.len]


def check_same_segment(got, want, what, *, sport=None, dport=None,
                       index=None):
    """TCP/UDP segment of `got` equals `want`'s, except the checksum and the
    ports given (NAT): seq, ack, flags, window, options, payload."""
    g = bytearray(l4_bytes(got))
    w = bytearray(l4_bytes(want))
    csum_off = 16 if got[IP].proto == 6 else 6
    for b in (g, w):
        if len(b) >= csum_off + 2:
            b[csum_off:csum_off + 2] = b"\x00\x00"
    if sport is not None:
        w[0:2] = sport.to_bytes(2, "big")
    if dport is not None:
        w[2:4] = dport.to_bytes(2, "big")
    if g != w:
        where = next((i for i in range(min(len(g), len(w))) if g[i] != w[i]),
                     min(len(g), len(w)))
        raise AssertionError(
            "%s%s: segment differs from %s at byte %d (got %d bytes, want "
            "%d)\n  got  %s\n  want %s" % (
                what, "" if index is None else " %d" % index,
                want.summary() if hasattr(want, "summary") else "input",
                where, len(g), len(w), bytes(g).hex(), bytes(w).hex()))


def check_ip_kept(got, want, what, ttl, index=None):
    """IPv4 fields a router keeps (id, tos, DF) and the expected TTL."""
    g, w = got[IP], want[IP]
    bad = []
    for field in ("id", "tos", "proto"):
        if getattr(g, field) != getattr(w, field):
            bad.append("IP %s: expected %r, got %r" % (
                field, getattr(w, field), getattr(g, field)))
    if bool(g.flags.DF) != bool(w.flags.DF):
        bad.append("IP DF: expected %s, got %s" % (bool(w.flags.DF),
                                                   bool(g.flags.DF)))
    if g.ttl != ttl:
        bad.append("IP ttl: expected %d, got %d" % (ttl, g.ttl))
    if bad:
        raise AssertionError("%s%s: %s" % (what, "" if index is None else
                                           " %d" % index, "; ".join(bad)))


def check_masq_port(port, source_port, creator, workers, what):
    """--random-fully from 1024..65535 (source ports >= 1024), and each
    worker allocates only ports p with p % workers == its id."""
    if source_port >= 1024 and not 1024 <= port <= 65535:
        raise AssertionError("%s: masquerade port %d outside 1024..65535"
                             % (what, port))
    if creator is not None and port % workers != creator:
        raise AssertionError("%s: masquerade port %d allocated by worker %d "
                             "of %d (expected port %% %d == %d)" % (
                                 what, port, creator, workers, workers,
                                 creator))


def creating_worker(run):
    """Index of the only worker whose conntrack_created is non-zero."""
    ws = [i for i, w in enumerate(run.workers) if w.get("conntrack_created")]
    if len(ws) != 1:
        raise AssertionError("%s: expected one worker to create the flow, "
                             "got workers %s" % (run.name, ws))
    return ws[0]


def tuple_of(pkt):
    """"proto src:sport -> dst:dport" of the innermost IP packet."""
    pkt = co._as_ether(pkt)
    if co.is_vxlan(pkt):
        pkt = co.decode_vxlan(pkt)[1]
    if IP not in pkt:
        if ARP in pkt:
            a = pkt[ARP]
            return "ARP %s %s" % ("who-has" if a.op == 1 else "is-at",
                                  a.pdst if a.op == 1 else a.psrc)
        return pkt.summary()
    ip = pkt[IP]
    if TCP in pkt:
        return "TCP %s:%d -> %s:%d" % (ip.src, pkt[TCP].sport, ip.dst,
                                       pkt[TCP].dport)
    if UDP in pkt:
        return "UDP %s:%d -> %s:%d" % (ip.src, pkt[UDP].sport, ip.dst,
                                       pkt[UDP].dport)
    return "IP %s -> %s proto %d" % (ip.src, ip.dst, ip.proto)


# ---------------------------------------------------------------------------
# Scenario checks
# ---------------------------------------------------------------------------

FORWARD_COUNTERS = dict(rx_packets=4, tx_uplink=4, arp_replied=1,
                        conntrack_created=1, conntrack_hit_original=2,
                        service_dnat=1, masquerade=1, vxlan_encapsulated=3)


def check_nodeport_forward_outputs(run, forward_in, workers, n_extra=0):
    """node-228's uplink output for nodeport_forward.pcap: the ARP reply to
    the gateway and 3 VXLAN frames to node-227 carrying the client's
    segments DNATed to 10.244.25.149:22 and masqueraded to 10.244.26.0.
    `n_extra` further non-VXLAN-to-227 packets are allowed (pass 2's
    replies). Returns (masquerade port, [VXLAN packets])."""
    n228, n227 = jp.NODE_228, jp.NODE_227
    up = run.out.get("uplink", [])
    arps, rest = split_arp(up)
    if len(arps) != 1:
        raise AssertionError("%s: expected 1 ARP packet on the uplink, got "
                             "%d\n%s" % (run.name, len(arps),
                                         run.describe_outputs()))
    check_arp_reply(arps[0], mac=n228.uplink_mac, ip=n228.ip,
                    asker_mac=jp.GATEWAY_MAC, asker_ip=jp.GATEWAY_IP)
    vx = [p for p in rest if co.is_vxlan(p)]
    if len(vx) != 3 or len(rest) != 3 + n_extra:
        raise AssertionError("%s: expected 3 VXLAN (+%d other) packets on "
                             "the uplink, got %d VXLAN of %d\n%s" % (
                                 run.name, n_extra, len(vx), len(rest),
                                 run.describe_outputs()))
    clients = [p for p in forward_in if TCP in p]
    ports = set()
    sports = set()
    for i, (out, cin) in enumerate(zip(vx, clients)):
        inner = check_vxlan_outer(out, n228, n227, index=i)
        co.assert_tcp(inner, src=n228.vtep_ip, dst=jp.POD_SSHD.ip,
                      dport=jp.SSH_PORT, ttl=cin[IP].ttl - 1,
                      flags=str(cin[TCP].flags), seq=cin[TCP].seq,
                      ack=cin[TCP].ack, index=i)
        check_ip_kept(inner, cin, "%s: inner packet" % run.name,
                      cin[IP].ttl - 1, index=i)
        port = inner[TCP].sport
        check_same_segment(inner, cin, "%s: inner TCP" % run.name,
                           sport=port, dport=jp.SSH_PORT, index=i)
        # Byte for byte what node-228 with kube-proxy + flannel would send
        # inside the tunnel (the kernel reference model).
        ref = jp.split_vxlan(jp.linux_forward_nodeport(cin, port))[1]
        if bytes(inner[IP]) != bytes(ref[IP]):
            raise AssertionError("%s: inner packet %d differs from the kernel "
                                 "reference model:\n  got  %s\n  want %s" % (
                                     run.name, i, bytes(inner[IP]).hex(),
                                     bytes(ref[IP]).hex()))
        ports.add(port)
        sports.add(co._as_ether(out)[UDP].sport)
    if len(ports) != 1:
        raise AssertionError("%s: the 3 segments used masquerade ports %s, "
                             "expected one" % (run.name, sorted(ports)))
    if len(sports) != 1:
        raise AssertionError("%s: one inner flow used outer UDP source ports "
                             "%s (flannel hashes the flow: expected one)"
                             % (run.name, sorted(sports)))
    port = ports.pop()
    check_masq_port(port, jp.CLIENT_PORT, creating_worker(run), workers,
                    run.name)
    return port, vx


def check_nodeport_forward(run, workers):
    """Scenario 1: nodeport_forward.pcap on node-228."""
    check_ok(run)
    check_counts(run, uplink=4, pods=0, host=0)
    check_checksums(run)
    port, _ = check_nodeport_forward_outputs(run, run.inputs["uplink"],
                                             workers)
    check_counters(run, FORWARD_COUNTERS)
    check_no_drops(run)
    return port


def check_pod_to_pod(run, workers):
    """Scenario 3: pod_to_pod.pcap on node-228's pods port. Returns
    "hairpin" (ClusterIP SYN DNATed to web-1 itself) or "remote" (to web-2
    on node-227)."""
    n228, n227 = jp.NODE_228, jp.NODE_227
    web1, web2 = jp.POD_WEB_1, jp.POD_WEB_2
    check_ok(run)
    check_checksums(run)
    check_no_drops(run)
    pods_arp, pods_rest = split_arp(run.out.get("pods", []))
    if len(pods_arp) != 1:
        raise AssertionError("%s: expected 1 ARP reply on the pods port, got "
                             "%d\n%s" % (run.name, len(pods_arp),
                                         run.describe_outputs()))
    check_arp_reply(pods_arp[0], mac=n228.pods_mac, ip=n228.pods_gateway,
                    asker_mac=web1.mac, asker_ip=web1.ip)
    up = run.out.get("uplink", [])
    if any(not co.is_vxlan(p) for p in up) or run.out.get("host"):
        raise AssertionError("%s: unexpected packets\n%s"
                             % (run.name, run.describe_outputs()))
    syn_direct, syn_svc = [p for p in run.inputs["pods"] if TCP in p]
    inners = [check_vxlan_outer(p, n228, n227, index=i)
              for i, p in enumerate(up)]
    direct = [x for x in inners if x[TCP].sport == syn_direct[TCP].sport]
    if len(direct) != 1:
        raise AssertionError("%s: expected the SYN to web-2 in VXLAN once, "
                             "got %d\n%s" % (run.name, len(direct),
                                             run.describe_outputs()))
    co.assert_tcp(direct[0], src=web1.ip, dst=web2.ip, sport=40112,
                  dport=8080, flags="S", ttl=63)
    check_ip_kept(direct[0], syn_direct, "%s: web-1 -> web-2" % run.name, 63)
    check_same_segment(direct[0], syn_direct, "%s: web-1 -> web-2 TCP"
                       % run.name)
    run.pairs.append(("pods", syn_direct, "pod to pod, no NAT", "uplink",
                      up[inners.index(direct[0])]))
    others = [x for x in inners if x is not direct[0]]
    common = dict(rx_packets=3, arp_replied=1, conntrack_created=1,
                  service_dnat=1, tx_packets=3)
    if len(others) == 1 and not pods_rest:
        # web-2 chosen: DNAT only, out to node-227 with web-1's source.
        x = others[0]
        co.assert_tcp(x, src=web1.ip, dst=web2.ip, sport=40114, dport=8080,
                      flags="S", ttl=63)
        check_ip_kept(x, syn_svc, "%s: ClusterIP -> web-2" % run.name, 63)
        check_same_segment(x, syn_svc, "%s: ClusterIP -> web-2 TCP"
                           % run.name, dport=8080)
        check_counters(run, dict(common, masquerade=0, vxlan_encapsulated=2,
                                 tx_uplink=2, tx_pods=1))
        run.pairs.append(("pods", syn_svc, "ClusterIP DNAT to web-2",
                          "uplink", up[inners.index(x)]))
        return "remote"
    if not others and len(pods_rest) == 1:
        # web-1 chosen: hairpin, masquerade to cni0's 10.244.26.1.
        x = pods_rest[0]
        co.assert_ether(x, src=n228.pods_mac, dst=web1.mac)
        co.assert_tcp(x, src=n228.pods_gateway, dst=web1.ip, dport=8080,
                      flags="S", ttl=63)
        check_ip_kept(x, syn_svc, "%s: hairpin" % run.name, 63)
        check_masq_port(x[TCP].sport, 40114, creating_worker(run), workers,
                        "%s: hairpin" % run.name)
        check_same_segment(x, syn_svc, "%s: hairpin TCP" % run.name,
                           sport=x[TCP].sport, dport=8080)
        check_counters(run, dict(common, masquerade=1, vxlan_encapsulated=1,
                                 tx_uplink=1, tx_pods=2))
        run.pairs.append(("pods", syn_svc, "ClusterIP DNAT to web-1 itself: "
                          "hairpin masquerade", "pods", x))
        return "hairpin"
    raise AssertionError("%s: the ClusterIP SYN went neither to web-2 in "
                         "VXLAN nor back to web-1\n%s"
                         % (run.name, run.describe_outputs()))


def check_pod_to_internet(run, workers):
    """Scenario 4: pod_to_internet.pcap on node-226's pods port."""
    n226 = jp.NODE_226
    check_ok(run)
    check_counts(run, uplink=1, pods=1, host=0)
    check_checksums(run)
    syn, dns = run.inputs["pods"]
    out = run.out["uplink"][0]
    co.assert_ether(out, src=n226.uplink_mac, dst=jp.GATEWAY_MAC)
    co.assert_tcp(out, src=n226.ip, dst="93.184.216.34", dport=443,
                  flags="S", seq=syn[TCP].seq, ttl=syn[IP].ttl - 1)
    check_ip_kept(out, syn, "%s: SYN to the internet" % run.name,
                  syn[IP].ttl - 1)
    port = out[TCP].sport
    check_masq_port(port, syn[TCP].sport, None, workers, run.name)
    check_same_segment(out, syn, "%s: SYN to the internet" % run.name,
                       sport=port)
    q = run.out["pods"][0]
    co.assert_ether(q, src=n226.pods_mac, dst=jp.POD_COREDNS.mac)
    co.assert_udp(q, src=jp.POD_TOOLBOX.ip, dst=jp.POD_COREDNS.ip,
                  sport=dns[UDP].sport, dport=53, ttl=dns[IP].ttl - 1)
    check_ip_kept(q, dns, "%s: DNS query" % run.name, dns[IP].ttl - 1)
    if q[UDP].chksum == 0:
        raise AssertionError("%s: DNS query lost its UDP checksum" % run.name)
    check_same_segment(q, dns, "%s: DNS query" % run.name)
    run.pairs += [("pods", syn, "flannel ip-masq to the node IP", "uplink",
                   out),
                  ("pods", dns, "ClusterIP DNAT to coredns", "pods", q)]
    check_counters(run, dict(rx_packets=2, tx_uplink=1, tx_pods=1,
                             conntrack_created=2, masquerade=1,
                             service_dnat=1))
    # The masquerading worker is the one that created the masqueraded flow.
    masq = [i for i, w in enumerate(run.workers) if w.get("masquerade")]
    if len(masq) == 1:
        check_masq_port(port, syn[TCP].sport, masq[0], workers, run.name)
    check_no_drops(run)
    return port


def expected_malformed_drops():
    return collections.Counter(m.reason for m in jp.MALFORMED)


# ---------------------------------------------------------------------------
# The three-node journey of the story
# ---------------------------------------------------------------------------


class ThreeNodeJourney(object):
    """The scp connection to NodePort 8014 on node-228, through node-227's
    sshd pod and back, each node a separate sluice-replay run fed with the
    previous node's output.

    `narrate(title, text, run)` (optional) is called after each step with a
    heading, a one-paragraph explanation and the step's Run."""

    def __init__(self, replayer, seed=DEFAULT_SEED, trace=False,
                 narrate=None, workers=2, forward_pcap=None):
        self.r = replayer
        self.seed = seed
        self.trace = trace
        self.narrate = narrate or (lambda title, text, run: None)
        self.workers = workers
        # nodeport_forward.pcap as make_captures.py wrote it, or the same
        # packets straight from the builders.
        pkts = (rdpcap(forward_pcap) if forward_pcap
                else jp.nodeport_forward_packets())
        self.forward = [co._as_ether(p) for p in pkts]
        self.pass1 = self.at227 = self.replies = self.back227 = None
        self.pass2 = None
        self.snat_port = None
        self.delivered = self.pod_frames = self.vxlan_back = None
        self.returned = None

    def _run(self, name, node, inputs):
        return self.r.run(name, node, inputs, workers=self.workers,
                          dispatch="roundrobin", seed=self.seed,
                          trace=self.trace)

    def step_pass1(self):
        run = self._run("journey-1-node228", "node-228",
                        {"uplink": self.forward})
        self.pass1 = run
        self.snat_port = check_nodeport_forward(run, self.workers)
        self.narrate(
            "node-228: the client's connection to NodePort 8014",
            "The gateway asks for 10.10.100.228; the scp client's SYN, ACK "
            "and banner arrive for 10.10.100.228:8014. Sluice DNATs them to "
            "the sshd pod 10.244.25.149:22, masquerades them to flannel.1's "
            "10.244.26.0:%d and sends them in VXLAN to node-227."
            % self.snat_port, run)
        return run

    def step_node227_forward(self):
        # On the wire between the nodes: node-228's VXLAN frames, stamped
        # 20 us after the client packet each carries (sluice-replay's output
        # captures hold wall-clock times; keeping the input's 1 ms spacing
        # keeps the replay's causal order, as one flow on a NIC queue).
        clients = [p for p in self.forward if TCP in p]
        vx = []
        for p, c in zip([p for p in self.pass1.out["uplink"]
                         if co.is_vxlan(p)], clients):
            q = Ether(bytes(p))
            q.time = Decimal(c.time) + Decimal("0.000020")
            vx.append(q)
        run = self._run("journey-2-node227-in", "node-227", {"uplink": vx})
        self.at227 = run
        check_ok(run)
        check_counts(run, uplink=0, pods=3, host=0)
        check_checksums(run)
        check_counters(run, dict(rx_packets=3, vxlan_decapsulated=3,
                                 tx_pods=3, tx_uplink=0, conntrack_created=0,
                                 service_dnat=0, masquerade=0,
                                 forwarded_stateless=3))
        check_no_drops(run)
        n227 = jp.NODE_227
        delivered = run.out["pods"]
        for i, (out, tunnelled) in enumerate(zip(delivered, vx)):
            inner = co.decode_vxlan(tunnelled)[1]
            co.assert_ether(out, src=n227.pods_mac, dst=jp.POD_SSHD.mac,
                            index=i)
            co.assert_tcp(out, src=jp.NODE_228.vtep_ip, sport=self.snat_port,
                          dst=jp.POD_SSHD.ip, dport=jp.SSH_PORT,
                          ttl=inner[IP].ttl - 1, index=i)
            check_ip_kept(out, inner, "%s: delivered" % run.name,
                          inner[IP].ttl - 1, index=i)
            check_same_segment(out, inner, "%s: delivered TCP" % run.name,
                               index=i)
        self.delivered = delivered
        self.narrate(
            "node-227: decapsulation and delivery to the sshd pod",
            "node-227 receives the 3 VXLAN frames from 10.10.100.228, "
            "decapsulates them and routes them (no NAT: this is plain pod "
            "traffic to it) out of its pods port to the sshd pod's MAC %s, "
            "still from 10.244.26.0:%d." % (jp.POD_SSHD.mac, self.snat_port),
            run)
        return run

    def step_node227_reply(self):
        t0 = jp.T_NODEPORT + Decimal("0.050")
        self.pod_frames = jp.sshd_replies(self.delivered, t0=t0)
        if len(self.pod_frames) != 3:
            raise AssertionError("sshd_replies built %d frames, expected 3"
                                 % len(self.pod_frames))
        co.assert_all_checksums_valid(self.pod_frames)
        run = self._run("journey-3-node227-reply", "node-227",
                        {"pods": self.pod_frames})
        self.back227 = run
        check_ok(run)
        check_counts(run, uplink=3, pods=0, host=0)
        check_checksums(run)
        check_counters(run, dict(rx_packets=3, vxlan_encapsulated=3,
                                 tx_uplink=3, conntrack_created=0,
                                 service_dnat=0, masquerade=0,
                                 forwarded_stateless=3))
        check_no_drops(run)
        sports = set()
        for i, (out, sent) in enumerate(zip(run.out["uplink"],
                                            self.pod_frames)):
            inner = check_vxlan_outer(out, jp.NODE_227, jp.NODE_228, index=i)
            co.assert_tcp(inner, src=jp.POD_SSHD.ip, sport=jp.SSH_PORT,
                          dst=jp.NODE_228.vtep_ip, dport=self.snat_port,
                          ttl=sent[IP].ttl - 1, index=i)
            check_ip_kept(inner, sent, "%s: tunnelled reply" % run.name,
                          sent[IP].ttl - 1, index=i)
            check_same_segment(inner, sent, "%s: tunnelled reply TCP"
                               % run.name, index=i)
            sports.add(co._as_ether(out)[UDP].sport)
        if len(sports) != 1:
            raise AssertionError("%s: one flow, outer source ports %s"
                                 % (run.name, sorted(sports)))
        self.vxlan_back = run.out["uplink"]
        self.narrate(
            "node-227: the sshd pod answers",
            "sshd at 10.244.25.149 sends its SYN-ACK, its banner and an ACK "
            "of the client's banner to 10.244.26.0:%d. node-227 routes them "
            "into VXLAN back to node-228, addresses untouched."
            % self.snat_port, run)
        return run

    def pass2_input(self):
        """The forward capture, then node-227's VXLAN output 100 ms after
        its last packet, 1 ms apart."""
        last = max(p.time for p in self.forward)
        back = []
        for i, p in enumerate(self.vxlan_back):
            q = Ether(bytes(p))
            q.time = Decimal(last) + Decimal("0.100") + i * jp.T_STEP
            back.append(q)
        return list(self.forward) + back

    def step_pass2(self):
        run = self._run("journey-4-node228-pass2", "node-228",
                        {"uplink": self.pass2_input()})
        self.pass2 = run
        n228 = jp.NODE_228
        check_ok(run)
        # Same seed, same input order up to the SYN: the same port. (If
        # not, the replies match no flow and go elsewhere: say why first.)
        ports = sorted({co.decode_vxlan(p)[1][TCP].sport
                        for p in run.out["uplink"] if co.is_vxlan(p)
                        and TCP in co.decode_vxlan(p)[1]})
        if ports != [self.snat_port]:
            raise AssertionError(
                "%s: pass 2 masqueraded to port(s) %s, pass 1 to %d (same "
                "--seed %d, same input order)\n%s" % (
                    run.name, ports, self.snat_port, self.seed,
                    run.describe_outputs()))
        n = len(self.vxlan_back)
        check_counts(run, uplink=4 + n, pods=0, host=0)
        check_checksums(run)
        port, _ = check_nodeport_forward_outputs(
            run, self.forward, self.workers, n_extra=n)
        if port != self.snat_port:
            raise AssertionError("%s: pass 2 masqueraded to port %d, pass 1 "
                                 "to %d (same --seed %d)" % (
                                     run.name, port, self.snat_port,
                                     self.seed))
        returned = [p for p in run.out["uplink"]
                    if ARP not in p and not co.is_vxlan(p)]
        for i, (out, sent) in enumerate(zip(returned, self.pod_frames)):
            co.assert_ether(out, src=n228.uplink_mac, dst=jp.GATEWAY_MAC,
                            type=0x0800, index=i)
            co.assert_tcp(out, src=n228.ip, sport=jp.NODE_PORT,
                          dst=jp.CLIENT_IP, dport=jp.CLIENT_PORT,
                          flags=str(sent[TCP].flags), seq=sent[TCP].seq,
                          ack=sent[TCP].ack, ttl=sent[IP].ttl - 2, index=i)
            check_ip_kept(out, sent, "%s: reply to the client" % run.name,
                          sent[IP].ttl - 2, index=i)
            check_same_segment(out, sent, "%s: reply TCP" % run.name,
                               sport=jp.NODE_PORT, dport=jp.CLIENT_PORT,
                               index=i)
        check_counters(run, dict(
            rx_packets=4 + n, tx_uplink=4 + n, arp_replied=1,
            conntrack_created=1, conntrack_hit_original=2,
            conntrack_hit_reply=n, vxlan_decapsulated=n, service_dnat=1,
            masquerade=1, vxlan_encapsulated=3))
        check_no_drops(run)
        creator = creating_worker(run)
        others = [i for i, w in enumerate(run.workers)
                  if i != creator and w.get("conntrack_hit_reply", 0) > 0]
        if not others:
            raise AssertionError(
                "%s: flow created on worker %d; no other worker "
                "reverse-translated a reply (conntrack_hit_reply per worker: "
                "%s)" % (run.name, creator,
                         [w.get("conntrack_hit_reply") for w in run.workers]))
        self.returned = returned
        self.narrate(
            "node-228 again: the reply path",
            "Pass 2 replays the client's packets with the same seed (same "
            "masquerade port %d), then node-227's VXLAN 100 ms later. "
            "node-228 decapsulates, finds the flow by its reply tuple, "
            "reverses both translations and sends the answers out of the "
            "uplink to the gateway as 10.10.100.228:8014 -> "
            "172.100.0.6:51234. The flow was created on worker %d and "
            "replies were translated on worker(s) %s: conntrack is shared."
            % (self.snat_port, creator, ", ".join(map(str, others))), run)
        return run

    def run_all(self):
        self.step_pass1()
        self.step_node227_forward()
        self.step_node227_reply()
        self.step_pass2()
        return self

    def hops(self):
        """Summary rows (see hop_row) of the journey, from the captures."""
        syn = [p for p in self.forward if TCP in p][0]
        return [
            hop_row("node-228", "uplink", syn,
                    "NodePort DNAT + masquerade, VXLAN", "uplink",
                    [p for p in self.pass1.out["uplink"]
                     if co.is_vxlan(p)][0]),
            hop_row("node-227", "uplink", self.at227.inputs["uplink"][0],
                    "decapsulated, routed to the pod", "pods",
                    self.delivered[0]),
            hop_row("node-227", "pods", self.pod_frames[0],
                    "pod's reply routed into VXLAN", "uplink",
                    self.vxlan_back[0]),
            hop_row("node-228", "uplink", self.vxlan_back[0],
                    "decapsulated, reverse NAT", "uplink", self.returned[0]),
        ]


def _mac_names():
    names = {jp.GATEWAY_MAC: "gateway"}
    for n in jp.NODES.values():
        names[n.uplink_mac] = n.name
        names[n.pods_mac] = n.name + " cni0"
    for pod, label in ((jp.POD_SSHD, "sshd pod"), (jp.POD_TOOLBOX, "toolbox"),
                       (jp.POD_COREDNS, "coredns"), (jp.POD_WEB_1, "web-1"),
                       (jp.POD_WEB_2, "web-2")):
        names[pod.mac] = label
    return names


MAC_NAMES = _mac_names()


def port_desc(role, pkt, inbound):
    """Port and peer: "uplink\nVXLAN from node-228", "pods\nto web-1"."""
    pkt = co._as_ether(pkt)
    mac = pkt[Ether].src if inbound else pkt[Ether].dst
    peer = MAC_NAMES.get(mac.lower(), mac)
    kind = "VXLAN " if co.is_vxlan(pkt) else ""
    return "%s\n%s%s %s" % (role, kind, "from" if inbound else "to", peer)


def hop_row(node, in_role, in_pkt, what, out_role, out_pkt):
    """(node, in-port, what happened, out-port, "tuple in\n=> tuple out"),
    cells with line breaks (format_table lays them out)."""
    return (node, port_desc(in_role, in_pkt, True), what,
            port_desc(out_role, out_pkt, False),
            "%s\n=> %s" % (tuple_of(in_pkt), tuple_of(out_pkt)))


def format_table(header, rows):
    """A plain-text table; cells may hold several lines."""
    cells = [[str(c).split("\n") for c in r] for r in [header] + list(rows)]
    widths = [max(len(line) for r in cells for line in r[i])
              for i in range(len(header))]

    def lines(row):
        height = max(len(c) for c in row)
        return ["  ".join((c[k] if k < len(c) else "").ljust(w)
                          for c, w in zip(row, widths)).rstrip()
                for k in range(height)]
    out = lines(cells[0])
    out.append("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        out += lines(r)
    return "\n".join(out)
