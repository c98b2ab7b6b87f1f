"""Network namespaces for the end-to-end suite: a running sluice-node
between a real Linux pod and a real Linux node-227 whose flannel.1 is the
kernel's own VXLAN device, as flannel configures it.

    ns POD (a pod on node-228)        root ns               ns PEER (node-227, kernel)
    pod0 10.244.26.20/24  ---veth---  PODS  [sluice-node]  UP ---veth--- eth0 10.10.100.227/24
    gw 10.244.26.1 (sluice answers)        af_packet ports            flannel.1 (VXLAN 1, 8472)
                                                                      10.244.25.0/32
                                                                      "pods" 10.244.25.149,
                                                                      10.244.25.30 on lo

Names carry the test's pid so that runs never collide; everything made is
removed by Topology.close() (also after a failure), and the harness checks
nothing of ours is left. Addresses and MACs are the example cluster's
(examples/cluster/node-228.json) so that its cluster file applies as is.
"""

import os
import subprocess
import time

POD_IP = "10.244.26.20"
POD_MAC = "0a:58:0a:f4:1a:14"
NODE_IP = "10.10.100.228"
NODE_UPLINK_MAC = "02:00:0a:0a:64:e4"
NODE_PODS_MAC = "02:00:0a:f4:1a:01"
NODE_VTEP_MAC = "0e:00:00:00:00:e4"
PEER_IP = "10.10.100.227"
PEER_MAC = "02:00:0a:0a:64:e3"
PEER_VTEP_MAC = "0e:00:00:00:00:e3"
PEER_PODS = ("10.244.25.149", "10.244.25.30")


def run(cmd, check=True, ns=None, timeout=20):
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), p.returncode,
                                                p.stderr.decode().strip()))
    return p.stdout.decode()


class Topology:
    def __init__(self, tag=None):
        tag = tag or "%d" % (os.getpid() % 100000)
        self.tag = tag
        self.pod_ns = "slpod%s" % tag
        self.peer_ns = "slpeer%s" % tag
        self.pods_if = "slp%s" % tag   # root side of the pod veth: sluice's pods port
        self.up_if = "slu%s" % tag     # root side of the uplink veth: sluice's uplink port
        self.made = []

    # -- building ---------------------------------------------------------

    def open(self):
        try:
            self._build()
        except Exception:
            self.close()
            raise
        return self

    def _netns(self, name):
        run(["ip", "netns", "add", name])
        self.made.append(("ns", name))
        run(["ip", "link", "set", "lo", "up"], ns=name)

    def _veth(self, root_if, ns, ns_if, ns_mac, root_mac):
        run(["ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", ns])
        self.made.append(("link", root_if))
        run(["ip", "link", "set", ns_if, "address", ns_mac], ns=ns)
        run(["ip", "link", "set", root_if, "address", root_mac])
        # The root ends belong to sluice (AF_PACKET): no kernel addresses,
        # no IPv6 chatter, no offloads that leave checksums unfinished.
        for cmd in (["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % root_if],):
            run(cmd)
        run(["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % ns_if], ns=ns)
        for ifname, where in ((root_if, None), (ns_if, ns)):
            run(["ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                 "gro", "off"], ns=where, check=False)
        run(["ip", "link", "set", root_if, "up"])
        run(["ip", "link", "set", ns_if, "up"], ns=ns)

    def _build(self):
        self._netns(self.pod_ns)
        self._netns(self.peer_ns)
        # The pod: cni0's .1 is its gateway (sluice answers ARP for it).
        self._veth(self.pods_if, self.pod_ns, "pod0", POD_MAC, NODE_PODS_MAC)
        run(["ip", "addr", "add", POD_IP + "/24", "dev", "pod0"], ns=self.pod_ns)
        run(["ip", "route", "add", "default", "via", "10.244.26.1"], ns=self.pod_ns)
        # node-227: the underlay and flannel.1 exactly as flanneld sets them up.
        self._veth(self.up_if, self.peer_ns, "eth0", PEER_MAC, NODE_UPLINK_MAC)
        p = self.peer_ns
        run(["ip", "addr", "add", PEER_IP + "/24", "dev", "eth0"], ns=p)
        run(["ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", PEER_IP,
             "dev", "eth0", "dstport", "8472", "nolearning"], ns=p)
        run(["ip", "link", "set", "flannel.1", "address", PEER_VTEP_MAC], ns=p)
        run(["ip", "link", "set", "flannel.1", "mtu", "1450"], ns=p)
        run(["ethtool", "-K", "flannel.1", "tx", "off", "tso", "off", "gso", "off"], ns=p,
            check=False)
        run(["ip", "addr", "add", "10.244.25.0/32", "dev", "flannel.1"], ns=p)
        run(["ip", "link", "set", "flannel.1", "up"], ns=p)
        # flannel's three entries per remote lease: route, ARP, FDB.
        run(["ip", "route", "add", "10.244.26.0/24", "via", "10.244.26.0", "dev", "flannel.1",
             "onlink"], ns=p)
        run(["ip", "neigh", "add", "10.244.26.0", "lladdr", NODE_VTEP_MAC, "dev", "flannel.1",
             "nud", "permanent"], ns=p)
        run(["bridge", "fdb", "append", NODE_VTEP_MAC, "dev", "flannel.1", "dst", NODE_IP],
            ns=p)
        for ip in PEER_PODS:  # the "pods" of node-227: local addresses
            run(["ip", "addr", "add", ip + "/32", "dev", "lo"], ns=p)
        run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"], ns=p)
        run(["sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"], ns=p)

    # -- sluice-node ------------------------------------------------------

    def node_eal_args(self, name):
        """EAL options for a sluice-node on this topology's two ports."""
        return ["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry",
                "--file-prefix=sluice-e2e-%s-%d" % (name, os.getpid()), "-l", "0-1",
                "--log-level=*:warning",
                "--vdev", "net_af_packet0,iface=%s,qpairs=1" % self.up_if,
                "--vdev", "net_af_packet1,iface=%s,qpairs=1" % self.pods_if]

    @staticmethod
    def node_port_args():
        return ["--uplink", "net_af_packet0", "--pods", "net_af_packet1", "--workers", "1"]

    # -- teardown ---------------------------------------------------------

    def close(self):
        for kind, name in reversed(self.made):
            if kind == "ns":
                # Processes still in it would keep it alive: end them first.
                pids = run(["ip", "netns", "pids", name], check=False).split()
                for pid in pids:
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "del", name], check=False)
            else:
                run(["ip", "link", "del", name], check=False)
        self.made = []

    def leftovers(self):
        """Our namespaces or links that still exist (should be none)."""
        left = []
        if any(n.split()[0] in (self.pod_ns, self.peer_ns)
               for n in run(["ip", "netns", "list"], check=False).splitlines() if n):
            left.append("namespaces")
        links = run(["ip", "-o", "link", "show"], check=False)
        for ifname in (self.pods_if, self.up_if):
            if (" %s@" % ifname) in links or (" %s:" % ifname) in links:
                left.append(ifname)
        return left


def wait_for(pred, timeout, what, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
