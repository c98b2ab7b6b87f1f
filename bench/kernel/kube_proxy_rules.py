#!/usr/bin/python3
"""iptables-restore input for N Services, written the way kube-proxy's iptables proxier writes it.

This is the kernel half of the Sluice-vs-kube-proxy benchmark: the rules the kernel runs must be
the rules a real node has, line for line, or the comparison says nothing. The layout follows
kubernetes pkg/proxy/iptables/proxier.go (the generation with KUBE-EXT/KUBE-SVL chains,
largeClusterMode and the localhost-NodePort KUBE-FIREWALL rule):

  * one restore input with both tables, `*filter` first, then `*nat`, loaded with
    `iptables-restore --noflush --counters` (kube-proxy's RestoreAll(NoFlushTables, RestoreCounters));
  * top-level chain lines first, then every rule in the order syncProxyRules() writes them
    (per Service: the KUBE-SERVICES rule, the KUBE-NODEPORTS rule, the KUBE-SVC masquerade rule,
    the KUBE-EXT rules, the KUBE-SVC -> KUBE-SEP cascade, the KUBE-SEP rules); the
    `addrtype LOCAL -> KUBE-NODEPORTS` rule last;
  * chain names: prefix + first 16 chars of base32(sha256(svcPortName + protocol)) for
    KUBE-SVC/KUBE-EXT, and base32(sha256(svcPortName + protocol + "ip:port")) for KUBE-SEP, where
    svcPortName is "namespace/name:portname" and protocol is lower case ("tcp");
  * largeClusterMode (more than 1000 endpoints in total): the per-endpoint comments are dropped
    from the KUBE-SVC -> KUBE-SEP and KUBE-SEP rules, as kube-proxy does;
  * the masquerade mark is 1 << 14 written with Go's "%#08x", i.e. "0x00004000" (iptables-save
    prints it back as 0x4000).

One deliberate difference: kube-proxy iterates its Service map in Go's random map order, so its
KUBE-SERVICES order is arbitrary. Here Services are written in index order so that "the first
Service" and "the last Service" of the linear KUBE-SERVICES list are known to the benchmark.

Left out, because the benchmark's Services do not use them: LoadBalancer/externalIPs (KUBE-FW),
externalTrafficPolicy/internalTrafficPolicy Local (KUBE-SVL), session affinity (-m recent),
health-check NodePorts, Services without endpoints (filter REJECT rules), and the nfacct
counting rules newer kube-proxies add when the nfacct netlink subsystem is present.

Usable as a module (the benchmark imports it) or as a command:
  kube_proxy_rules.py --services 100                 full restore input
  kube_proxy_rules.py --services 100 --jumps         the jump rules (-I lines, for --noflush)
  kube_proxy_rules.py --services 100 --endpoint-change 0
                                                     the partial restore for one endpoint change
"""

import argparse
import base64
import dataclasses
import hashlib
import ipaddress
import sys

# The cluster the benchmark pretends to be.
NAMESPACE = "bench"
PORT_NAME = "http"
PROTOCOL = "tcp"
SERVICE_PORT = 80
TARGET_PORT = 8080
SERVICE_NETWORK = ipaddress.IPv4Address("10.96.0.0")  # ClusterIPs: 10.96.0.10 + i
CLUSTER_CIDR = "10.244.0.0/16"  # --cluster-cidr: the local-traffic detector's "! -s" match
ENDPOINT_BASE = ipaddress.IPv4Address("10.244.0.16")  # endpoints: 2 per Service, from here up
ENDPOINT_LIMIT = ipaddress.IPv4Address("10.244.127.255")  # endpoints stay in 10.244.0.0/17
ENDPOINTS_PER_SERVICE = 2
NODE_PORT_BASE = 30000
MAX_NODE_PORTS = 2000  # the first min(N, 2000) Services are NodePort Services
MASQUERADE_BIT = 14
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000  # kube-proxy's largeClusterEndpointsThreshold

# Go's fmt.Sprintf("%#08x", 1<<14): the zero padding applies to the digits, then "0x" goes in front.
MASQUERADE_MARK = "0x%08x" % (1 << MASQUERADE_BIT)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain; kube-proxy writes an identical copy


@dataclasses.dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self):  # BaseEndpointInfo.String(): net.JoinHostPort(ip, port)
        return f"{self.ip}:{self.port}"


@dataclasses.dataclass(frozen=True)
class Service:
    """One Service port, with what syncProxyRules() needs to write its rules."""

    name: str
    cluster_ip: str
    port: int
    node_port: int  # 0: ClusterIP only
    endpoints: tuple

    @property
    def port_name(self):  # proxy.ServicePortName.String(): "ns/name" + ":" + port name
        return f"{NAMESPACE}/{self.name}:{PORT_NAME}"

    @property
    def svc_chain(self):
        return "KUBE-SVC-" + _hash16(self.port_name + PROTOCOL)

    @property
    def ext_chain(self):
        return "KUBE-EXT-" + _hash16(self.port_name + PROTOCOL)

    def sep_chain(self, endpoint):
        return "KUBE-SEP-" + _hash16(self.port_name + PROTOCOL + str(endpoint))


def _hash16(text):
    """First 16 characters of base32(sha256(text)): kube-proxy's chain-name hash."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def probability(n):
    """Go's fmt.Sprintf("%0.10f", 1.0/float64(n)), as kube-proxy's computeProbability."""
    return "%0.10f" % (1.0 / n)


def cluster_ip(index):
    return str(SERVICE_NETWORK + 10 + index)


def endpoint_ip(index, which):
    ip = ENDPOINT_BASE + ENDPOINTS_PER_SERVICE * index + which
    if ip > ENDPOINT_LIMIT:
        raise ValueError(f"Service {index}: endpoint {ip} is outside 10.244.0.0/17")
    return str(ip)


def node_port(index):
    return NODE_PORT_BASE + index


def make_services(count):
    """count Services: svc-00000.. with ClusterIP 10.96.0.10+i:80/TCP, 2 endpoints each at
    10.244.0.16+2i(+1):8080, and NodePort 30000+i on the first min(count, 2000)."""
    services = []
    for i in range(count):
        endpoints = tuple(Endpoint(endpoint_ip(i, j), TARGET_PORT)
                          for j in range(ENDPOINTS_PER_SERVICE))
        services.append(Service(
            name="svc-%05d" % i,
            cluster_ip=cluster_ip(i),
            port=SERVICE_PORT,
            node_port=node_port(i) if i < MAX_NODE_PORTS else 0,
            endpoints=endpoints,
        ))
    return services


def spare_endpoint_ip(services, k=0):
    """An address inside the pod range that no generated endpoint uses (for endpoint changes)."""
    return str(ENDPOINT_BASE + ENDPOINTS_PER_SERVICE * len(services) + k)


def _chain_line(chain):
    return f":{chain} - [0:0]"


def _filter_table():
    """The filter table as every sync writes it (all Services here have endpoints, so the
    per-Service REJECT/DROP rules are absent)."""
    lines = ["*filter"]
    for chain in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS,
                  KUBE_PROXY_FIREWALL):
        lines.append(_chain_line(chain))
    # localhostNodePorts is on by default (nodePortAddresses unset, IPv4): kube-proxy writes its
    # copy of kubelet's anti-martian rule.
    lines.append(_chain_line(KUBE_FIREWALL))
    lines.append(f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
                 '-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT '
                 '-j DROP')
    # nf_conntrack_tcp_be_liberal is 0 on a default node, so INVALID packets are dropped.
    lines.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP")
    lines.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                 f'-m mark --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} -j ACCEPT')
    lines.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                 '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT')
    lines.append("COMMIT")
    return lines


def _nat_top_level(chains, rules):
    for chain in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        chains.append(_chain_line(chain))
    rules.append(f"-A {KUBE_POSTROUTING} -m mark ! --mark {MASQUERADE_MARK}/{MASQUERADE_MARK} "
                 "-j RETURN")
    rules.append(f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {MASQUERADE_MARK}")
    rules.append(f'-A {KUBE_POSTROUTING} -m comment --comment '
                 '"kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully')
    rules.append(f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {MASQUERADE_MARK}")


def _service_capture_rules(svc, rules):
    """The rules that live in the shared top-level chains (rewritten on every sync)."""
    rules.append(f'-A {KUBE_SERVICES} -m comment --comment "{svc.port_name} cluster IP" '
                 f"-m {PROTOCOL} -p {PROTOCOL} -d {svc.cluster_ip} --dport {svc.port} "
                 f"-j {svc.svc_chain}")
    if svc.node_port:
        rules.append(f"-A {KUBE_NODEPORTS} -m comment --comment {svc.port_name} "
                     f"-m {PROTOCOL} -p {PROTOCOL} --dport {svc.node_port} -j {svc.ext_chain}")


def _service_chains(svc, chains, rules, large_cluster):
    """The Service's own chains (KUBE-EXT, KUBE-SVC, KUBE-SEP): written only when the Service or
    its endpoints changed, or on a full sync."""
    # Off-cluster traffic to the ClusterIP is masqueraded (the local detector is the cluster CIDR).
    rules.append(f'-A {svc.svc_chain} -m comment --comment "{svc.port_name} cluster IP" '
                 f"-m {PROTOCOL} -p {PROTOCOL} -d {svc.cluster_ip} --dport {svc.port} "
                 f"! -s {CLUSTER_CIDR} -j {KUBE_MARK_MASQ}")
    if svc.node_port:  # externalTrafficPolicy: Cluster
        chains.append(_chain_line(svc.ext_chain))
        rules.append(f'-A {svc.ext_chain} -m comment --comment '
                     f'"masquerade traffic for {svc.port_name} external destinations" '
                     f"-j {KUBE_MARK_MASQ}")
        rules.append(f"-A {svc.ext_chain} -j {svc.svc_chain}")
    chains.append(_chain_line(svc.svc_chain))
    n = len(svc.endpoints)
    for i, ep in enumerate(svc.endpoints):
        parts = [f"-A {svc.svc_chain}"]
        if not large_cluster:
            parts.append(f'-m comment --comment "{svc.port_name} -> {ep}"')
        if i < n - 1:
            parts.append(f"-m statistic --mode random --probability {probability(n - i)}")
        parts.append(f"-j {svc.sep_chain(ep)}")
        rules.append(" ".join(parts))
    for ep in svc.endpoints:
        sep = svc.sep_chain(ep)
        chains.append(_chain_line(sep))
        comment = "" if large_cluster else f"-m comment --comment {svc.port_name} "
        rules.append(f"-A {sep} {comment}-s {ep.ip} -j {KUBE_MARK_MASQ}")  # hairpin
        rules.append(f"-A {sep} {comment}-m {PROTOCOL} -p {PROTOCOL} -j DNAT "
                     f"--to-destination {ep}")


def _nodeports_jump():
    # nodePortAddresses unset (match all) and localhostNodePorts on: no "! -d 127.0.0.0/8".
    return (f'-A {KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this '
            f'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}')


def is_large_cluster(services):
    return sum(len(s.endpoints) for s in services) > LARGE_CLUSTER_ENDPOINTS_THRESHOLD


def full_restore(services):
    """What a full sync hands to `iptables-restore --noflush --counters`."""
    large = is_large_cluster(services)
    chains, rules = [], []
    _nat_top_level(chains, rules)
    for svc in services:
        _service_capture_rules(svc, rules)
        _service_chains(svc, chains, rules, large)
    rules.append(_nodeports_jump())
    return "\n".join(_filter_table() + ["*nat"] + chains + rules + ["COMMIT", ""])


def endpoint_change_restore(services, index, new_endpoints, delete_stale=True):
    """What a partial sync writes after Service `index`'s endpoints became `new_endpoints`.

    Returns (restore_text, updated_services). A partial sync still rewrites the whole filter table
    and the shared nat chains (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ,
    i.e. one rule per Service), but only the changed Service's KUBE-EXT/KUBE-SVC/KUBE-SEP chains;
    the endpoint chains no longer used are flushed and deleted (`-X`). In largeClusterMode
    kube-proxy skips that deletion when it last cleaned up less than syncPeriod ago: pass
    delete_stale=False for that case.
    """
    old = services[index]
    new = dataclasses.replace(old, endpoints=tuple(new_endpoints))
    updated = list(services)
    updated[index] = new
    large = is_large_cluster(updated)
    chains, rules = [], []
    _nat_top_level(chains, rules)
    for svc in updated:
        _service_capture_rules(svc, rules)
        if svc is new:
            _service_chains(svc, chains, rules, large)
    if delete_stale:
        live = {new.sep_chain(ep) for ep in new.endpoints}
        for ep in old.endpoints:
            stale = old.sep_chain(ep)
            if stale not in live:
                chains.append(_chain_line(stale))
                rules.append(f"-X {stale}")
    rules.append(_nodeports_jump())
    return "\n".join(_filter_table() + ["*nat"] + chains + rules + ["COMMIT", ""]), updated


def full_restore_chunks(services, chunk=1000):
    """The full rule set split into several restore inputs, for loading a benchmark namespace
    quickly; kube-proxy itself never does this.

    iptables-nft 1.8.x spends time quadratic in the number of chains created by one restore
    (10000 Services: minutes), so the benchmark loads its traffic namespace in slices of `chunk`
    Services, each applied with `iptables-restore --noflush`. Only the first slice declares (and
    so flushes) the shared chains; later slices append to them, so applying the slices in order
    leaves exactly the rules full_restore() leaves, in the same order. Programming latency is
    always measured with full_restore(), the way kube-proxy writes it.
    """
    large = is_large_cluster(services)
    texts = []
    for start in range(0, max(len(services), 1), chunk):
        chains, rules = [], []
        if start == 0:
            _nat_top_level(chains, rules)
        for svc in services[start:start + chunk]:
            _service_capture_rules(svc, rules)
            _service_chains(svc, chains, rules, large)
        if start + chunk >= len(services):
            rules.append(_nodeports_jump())
        head = _filter_table() if start == 0 else []
        texts.append("\n".join(head + ["*nat"] + chains + rules + ["COMMIT", ""]))
    return texts


# kube-proxy's iptablesJumpChains and iptablesKubeletJumpChains, in list order:
# (table, source chain, destination chain, comment, extra match arguments).
_NEW = "-m conntrack --ctstate NEW"
JUMP_CHAINS = (
    ("filter", "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    ("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
    ("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports", ""),
    ("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    ("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    ("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules", ""),
    ("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    ("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    ("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
    ("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", ""),
    ("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals", ""),
    ("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules", ""),
    ("filter", "INPUT", KUBE_FIREWALL, "", ""),
    ("filter", "OUTPUT", KUBE_FIREWALL, "", ""),
)


def jump_rules_restore():
    """The hook rules kube-proxy installs with `iptables -I` (EnsureRule(Prepend)) before each full
    sync, as one `iptables-restore --noflush` input. Load it after full_restore(), which creates
    the destination chains. Each -I prepends, so a chain ends up holding them in reverse list
    order, exactly as the sequence of `iptables -I` calls leaves it."""
    out = []
    for table in ("filter", "nat"):
        out.append(f"*{table}")
        for tbl, src, dst, comment, extra in JUMP_CHAINS:
            if tbl != table:
                continue
            parts = [f"-I {src}"]
            if extra:
                parts.append(extra)
            if comment:
                parts.append(f'-m comment --comment "{comment}"')
            parts.append(f"-j {dst}")
            out.append(" ".join(parts))
        out.append("COMMIT")
    return "\n".join(out + [""])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, required=True, help="number of Services")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--jumps", action="store_true", help="print the hook jump rules instead")
    mode.add_argument("--endpoint-change", type=int, metavar="INDEX",
                      help="print the partial restore after Service INDEX's second endpoint "
                           "moves to a new pod IP")
    args = parser.parse_args()
    services = make_services(args.services)
    if args.jumps:
        sys.stdout.write(jump_rules_restore())
    elif args.endpoint_change is not None:
        svc = services[args.endpoint_change]
        new_eps = (svc.endpoints[0], Endpoint(spare_endpoint_ip(services), TARGET_PORT))
        text, _ = endpoint_change_restore(services, args.endpoint_change, new_eps)
        sys.stdout.write(text)
    else:
        sys.stdout.write(full_restore(services))


if __name__ == "__main__":
    main()
