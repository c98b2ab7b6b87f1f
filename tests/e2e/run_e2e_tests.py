#!/usr/bin/python3
"""End-to-end suite: sluice-node on AF_PACKET ports between real Linux
network stacks in namespaces this run creates (tests/e2e/topology.py): a
pod's TCP connection through a ClusterIP, DNATed by Sluice, carried in VXLAN
to node-227's kernel flannel.1 and back.

Needs root (namespaces, veth). Every scenario builds its own topology and
removes it, also on failure; the run fails if anything of ours is left.

    run_e2e_tests.py --node build/app/sluice-node --source-root . [--only NAME]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import topology as topo  # noqa: E402

ECHO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "echo.py")
PY = "/usr/bin/python3"
SCENARIOS = []
CLUSTER_IP = "10.111.123.177"  # tzp-pytorch-2 (ssh, 22) -> 10.244.25.149:22 on node-227


def scenario(name):
    def wrap(f):
        SCENARIOS.append((name, f))
        return f
    return wrap


class Ctx:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = []
        self.t = None

    def cluster_file(self):
        return os.path.join(self.args.source_root, "examples", "cluster", "node-228.json")

    def spawn(self, cmd, ns=None, **kw):
        if ns is not None:
            cmd = ["ip", "netns", "exec", ns] + cmd
        p = subprocess.Popen(cmd, stdout=kw.pop("stdout", subprocess.DEVNULL),
                             stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(p)
        return p

    def start_node(self, name, extra=(), cluster=True):
        out = open(os.path.join(self.tmp, name + ".out"), "w+")
        cmd = ([self.args.node] + self.t.node_eal_args(name) + ["--"] +
               (["--cluster", self.cluster_file()] if cluster else []) +
               self.t.node_port_args() + list(extra))
        p = self.spawn(cmd, stdout=out, stderr=subprocess.STDOUT)
        p.log = out
        topo.wait_for(lambda: "sluice-node: node " in read_log(p) or p.poll() is not None,
                      20, "sluice-node to start")
        if p.poll() is not None:
            raise AssertionError("sluice-node exited %d:\n%s" % (p.returncode, read_log(p)))
        return p

    def stop_node(self, p):
        """SIGINT, wait, return its output (counters at exit)."""
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("sluice-node did not stop on SIGINT")
        return read_log(p)

    def socket(self):
        return os.path.join(self.tmp, "sluice.sock")

    def start_control(self, name, cluster):
        out = open(os.path.join(self.tmp, name + ".out"), "w+")
        p = self.spawn([self.args.control, "--socket", self.socket(), "--cluster", cluster,
                        "--metrics-bind", "127.0.0.1:0", "--healthz-bind", "127.0.0.1:0"],
                       stdout=out, stderr=subprocess.STDOUT)
        p.log = out
        return p

    def ctl(self, *what):
        """sluicectl -o json WHAT...: the parsed answer."""
        p = subprocess.run([self.args.ctl, "--socket", self.socket(), "-o", "json"] + list(what),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        if p.returncode != 0:
            raise AssertionError("sluicectl %s: %s" % (" ".join(what), p.stderr.decode()))
        return json.loads(p.stdout)

    def echo_servers(self):
        for ip, port in ((topo.PEER_PODS[0], 22), (topo.PEER_PODS[1], 8080)):
            self.spawn([PY, ECHO, "server", ip, str(port)], ns=self.t.peer_ns)
        time.sleep(0.3)

    def client(self, name, ip, port, seconds):
        status = os.path.join(self.tmp, name + ".json")
        p = self.spawn([PY, ECHO, "client", ip, str(port), status, str(seconds)],
                       ns=self.t.pod_ns)
        p.status_path = status
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            log = getattr(p, "log", None)
            if log is not None:
                log.close()
        self.procs = []


def read_log(p):
    p.log.flush()
    with open(p.log.name) as f:
        return f.read()


def status_of(client):
    try:
        with open(client.status_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"sent": 0, "echoed": 0, "max_gap_ms": 0, "errors": [], "done": False}


def counter(log, name):
    """A counter's total (over all workers) in sluice-node's last report:
    "name  total  worker0 ...  help"."""
    total = 0
    for line in log.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name and parts[1].isdigit():
            total = int(parts[1])
    return total


def connects(ctx, ip, port):
    return subprocess.run(["ip", "netns", "exec", ctx.t.pod_ns, PY, ECHO, "connect", ip,
                           str(port)], timeout=10).returncode == 0


@scenario("clusterip_over_kernel_vxlan")
def t_clusterip(ctx):
    """A pod on node-228 talks to a ClusterIP whose endpoint is on node-227:
    Sluice DNATs it, encapsulates it for node-227's kernel flannel.1, and
    reverse-translates the answers the kernel encapsulates back."""
    ctx.echo_servers()
    node = ctx.start_node("clusterip")
    c = ctx.client("flow", CLUSTER_IP, 22, 3.0)
    topo.wait_for(lambda: status_of(c)["done"], 15, "the client to finish")
    st = status_of(c)
    if st["errors"] or st["echoed"] < 50:
        raise AssertionError("client: %s\nnode:\n%s" % (st, ctx.stop_node(node)))
    if not connects(ctx, CLUSTER_IP, 22):
        raise AssertionError("a second, fresh connection failed")
    log = ctx.stop_node(node)
    for name, least in (("service_dnat", 2), ("vxlan_encapsulated", st["echoed"]),
                        ("vxlan_decapsulated", st["echoed"])):
        if counter(log, name) < least:
            raise AssertionError("%s = %d, expected >= %d\n%s" % (name, counter(log, name),
                                                                 least, log))
    return "%d echoes over one connection (longest gap %.0f ms), a second connection" % (
        st["echoed"], st["max_gap_ms"])


@scenario("seed002_control_dies")
def t_seed002(ctx):
    """Seed 002: cross-host pod traffic keeps flowing when the control side
    dies. sluice-node holds the tables; sluice-control feeds it from a
    cluster file and is killed (SIGKILL) in the middle of an update; the
    pod's connection to node-227's pod goes on over VXLAN; a restarted
    sluice-control resyncs without changing what was right; a restarted
    dataplane gets a full resync from the running sluice-control."""
    ctx.echo_servers()
    cluster = os.path.join(ctx.tmp, "cluster.json")
    with open(ctx.cluster_file()) as f:
        model = json.load(f)
    with open(cluster, "w") as f:
        json.dump(model, f)
    node = ctx.start_node("seed002", extra=["--socket", ctx.socket()], cluster=False)
    control = ctx.start_control("control1", cluster)
    topo.wait_for(lambda: os.path.exists(ctx.socket()) and ctx.ctl("status")["tables"], 15,
                  "the tables from sluice-control")
    first = ctx.ctl("status")
    c = ctx.client("flow", topo.PEER_PODS[0], 22, 6.0)  # pod to pod: no NAT, VXLAN both ways
    svc = ctx.client("svc", CLUSTER_IP, 22, 6.0)          # and through a ClusterIP (DNAT)
    topo.wait_for(lambda: status_of(c)["echoed"] >= 20 and status_of(svc)["echoed"] >= 20, 10,
                  "traffic to flow")
    port = status_of(svc)["local_port"]

    def svc_flow():
        flows = [f for f in ctx.ctl("conntrack", "-p", "tcp", "--port", str(port))["flows"]
                 if f["original"]["sport"] == port and f["original"]["dst"] == CLUSTER_IP]
        return flows[0] if flows else None
    before = svc_flow()
    if before is None or before["reply"]["src"] != topo.PEER_PODS[0] or not before["dnat"]:
        raise AssertionError("the ClusterIP flow in conntrack: %s" % before)
    # An update in flight (a new node's lease), then SIGKILL.
    model["etcd"]["kvs"].append({
        "key": "/coreos.com/network/subnets/10.244.30.0-24",
        "value": json.dumps({"PublicIP": "10.10.100.230", "BackendType": "vxlan",
                             "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:f0"}})})
    with open(cluster + ".new", "w") as f:
        json.dump(model, f)
    os.replace(cluster + ".new", cluster)
    time.sleep(0.05)
    control.kill()
    control.wait(timeout=10)
    at_kill = status_of(c)["echoed"]
    time.sleep(1.5)
    mid = status_of(c)
    if mid["echoed"] < at_kill + 30 or mid["errors"]:
        raise AssertionError("traffic stalled after sluice-control died: %d -> %s"
                             % (at_kill, mid))
    if not ctx.ctl("status")["tables"]:
        raise AssertionError("the dataplane lost its tables")
    # A restarted sluice-control resyncs (a new epoch) and changes nothing right.
    control = ctx.start_control("control2", cluster)
    topo.wait_for(lambda: ctx.ctl("status")["last_epoch"] > first["last_epoch"], 15,
                  "a full sync from the restarted sluice-control")
    peers = {p["subnet"] for p in ctx.ctl("peers")["peers"]}
    if "10.244.30.0/24" not in peers or "10.244.25.0/24" not in peers:
        raise AssertionError("peers after the resync: %s" % sorted(peers))
    # The unchanged Service's flow survived the resync: the same entry.
    after = svc_flow()
    if after is None or after["reply"] != before["reply"]:
        raise AssertionError("the ClusterIP flow changed across the resync: %s -> %s"
                             % (before, after))
    services = {s["name"] for s in ctx.ctl("services")["services"]}
    if "ai/tzp-pytorch-2:ssh/TCP" not in services:
        raise AssertionError("Services after the resync: %s" % sorted(services))
    topo.wait_for(lambda: status_of(c)["done"] and status_of(svc)["done"], 15,
                  "the clients to finish")
    st = status_of(c)
    for name, s in (("pod to pod", st), ("ClusterIP", status_of(svc))):
        if s["errors"] or s["max_gap_ms"] > 500:
            raise AssertionError("the %s connection suffered: %s" % (name, s))
    # A restarted dataplane: sluice-control notices and resyncs it whole.
    ctx.stop_node(node)
    node = ctx.start_node("seed002b", extra=["--socket", ctx.socket()], cluster=False)
    topo.wait_for(lambda: os.path.exists(ctx.socket()) and ctx.ctl("status")["tables"], 15,
                  "the restarted dataplane's tables from the running sluice-control")
    if not connects(ctx, topo.PEER_PODS[0], 22) or not connects(ctx, CLUSTER_IP, 22):
        raise AssertionError("no traffic through the restarted dataplane")
    ctx.stop_node(node)
    return ("%d pod-to-pod and %d ClusterIP echoes, longest gap %.0f ms across sluice-control's "
            "SIGKILL; the ClusterIP flow's entry kept through the resync; a restarted dataplane "
            "resynced" % (st["echoed"], status_of(svc)["echoed"],
                          max(st["max_gap_ms"], status_of(svc)["max_gap_ms"])))


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Etcd:
    """A real etcd (Debian's etcd-server) on loopback with a temporary data
    dir, and flannel's keys written through its v3 JSON gateway."""

    def __init__(self, ctx):
        import base64
        import urllib.request
        self.b64 = lambda t: base64.b64encode(t.encode()).decode()
        self.urlopen = urllib.request.urlopen
        self.Request = urllib.request.Request
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        data = os.path.join(ctx.tmp, "etcd")
        self.p = ctx.spawn(["/usr/bin/etcd", "--name", "e2e", "--data-dir", data,
                            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                            "--listen-peer-urls", "http://127.0.0.1:%d" % free_port(),
                            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % free_port(),
                            "--initial-cluster-state", "new"])
        topo.wait_for(self.healthy, 20, "etcd to answer")

    def healthy(self):
        try:
            return self.urlopen(self.url + "/health", timeout=1).status == 200
        except OSError:
            return False

    def put(self, key, value):
        body = json.dumps({"key": self.b64(key), "value": self.b64(value)}).encode()
        req = self.Request(self.url + "/v3/kv/put", data=body, method="POST")
        self.urlopen(req, timeout=5).read()

    def delete(self, key):
        body = json.dumps({"key": self.b64(key)}).encode()
        req = self.Request(self.url + "/v3/kv/deleterange", data=body, method="POST")
        self.urlopen(req, timeout=5).read()

    def load_flannel(self, model):
        import base64
        for kv in model["etcd"]["kvs"]:
            key, value = kv["key"], kv["value"]
            if not key.startswith("/"):
                key = base64.b64decode(key).decode()
                value = base64.b64decode(value).decode()
            self.put(key, value)


@scenario("seed002_from_etcd")
def t_seed002_etcd(ctx):
    """Seed 002 with flannel's own store: sluice-control watches a real etcd;
    a lease added and changed in etcd reaches the dataplane; sluice-control
    is SIGKILLed, etcd changes meanwhile, traffic keeps flowing on the last
    good tables, and a restarted sluice-control brings the change."""
    if not os.path.exists("/usr/bin/etcd"):
        raise AssertionError("/usr/bin/etcd missing: install Debian's etcd-server "
                             "(scripts/deps.sh does)")
    ctx.echo_servers()
    with open(ctx.cluster_file()) as f:
        model = json.load(f)
    etcd = Etcd(ctx)
    etcd.load_flannel(model)
    node = ctx.start_node("etcd", extra=["--socket", ctx.socket()], cluster=False)

    def start():
        out = open(os.path.join(ctx.tmp, "control-etcd.out"), "a+")
        p = ctx.spawn([ctx.args.control, "--socket", ctx.socket(), "--cluster", ctx.cluster_file(),
                       "--etcd", etcd.url, "--metrics-bind", "127.0.0.1:0",
                       "--healthz-bind", "127.0.0.1:0"], stdout=out, stderr=subprocess.STDOUT)
        p.log = out
        return p
    control = start()
    topo.wait_for(lambda: os.path.exists(ctx.socket()) and ctx.ctl("status")["tables"], 15,
                  "tables from etcd through sluice-control")

    def peer(subnet):
        for p in ctx.ctl("peers")["peers"]:
            if p["subnet"] == subnet:
                return p
        return None
    c = ctx.client("flow", topo.PEER_PODS[0], 22, 8.0)
    topo.wait_for(lambda: status_of(c)["echoed"] >= 20, 10, "traffic to flow")
    key = "/coreos.com/network/subnets/10.244.30.0-24"
    lease = {"PublicIP": "10.10.100.230", "BackendType": "vxlan",
             "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:f0"}}
    t0 = time.monotonic()
    etcd.put(key, json.dumps(lease))
    topo.wait_for(lambda: peer("10.244.30.0/24") is not None, 5, "the new lease")
    added_ms = (time.monotonic() - t0) * 1000
    lease["BackendData"]["VtepMAC"] = "0e:00:00:00:00:f1"
    etcd.put(key, json.dumps(lease))
    topo.wait_for(lambda: (peer("10.244.30.0/24") or {}).get("vtep_mac") == "0e:00:00:00:00:f1",
                  5, "the changed VtepMAC")
    control.kill()
    control.wait(timeout=10)
    etcd.delete(key)  # while nobody feeds the dataplane
    time.sleep(1.0)
    if peer("10.244.30.0/24") is None:
        raise AssertionError("the dataplane changed with no control process")
    control = start()
    topo.wait_for(lambda: peer("10.244.30.0/24") is None, 10,
                  "the restarted sluice-control to bring the deletion")
    # etcd gone when sluice-control restarts: it must not sync a state
    # without leases (that would prune node-227's lease and cut the pods off).
    control.kill()
    control.wait(timeout=10)
    etcd.p.kill()
    etcd.p.wait(timeout=10)
    epoch = ctx.ctl("status")["last_epoch"]
    control = start()
    time.sleep(1.5)
    if ctx.ctl("status")["last_epoch"] != epoch or peer("10.244.25.0/24") is None:
        raise AssertionError("sluice-control synced without etcd's leases: %s"
                             % ctx.ctl("peers")["peers"])
    topo.wait_for(lambda: status_of(c)["done"], 15, "the client to finish")
    st = status_of(c)
    if st["errors"] or st["max_gap_ms"] > 500:
        raise AssertionError("the connection suffered: %s" % st)
    ctx.stop_node(node)
    return ("lease added in etcd -> in the dataplane in %.0f ms (sluicectl polling), VtepMAC "
            "change applied, deletion made while sluice-control was dead applied on its "
            "restart, nothing synced while etcd was down; %d echoes, longest gap %.0f ms" % (added_ms, st["echoed"], st["max_gap_ms"]))


FAKE_APISERVER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "control", "sources", "fake_apiserver.py")
SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"


class FakeApi:
    """tests/control/sources/fake_apiserver.py on loopback, driven over its
    stdin: the cluster file's Services and EndpointSlices as the lists, and
    watch events pushed while sluice-control watches. A kubeconfig for it."""

    def __init__(self, ctx, items, list_rv):
        import queue
        import threading
        self.p = ctx.spawn([PY, FAKE_APISERVER, "--max-seconds", "120"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
        self.lines = queue.Queue()
        self.seen = []
        line = self.p.stdout.readline().decode()
        if not line.startswith("READY "):
            raise AssertionError("fake API server: %r" % line)
        self.url = "http://127.0.0.1:%d" % int(line.split()[1])
        threading.Thread(target=self._read, daemon=True).start()
        self.rv = list_rv
        for path, kind in ((SERVICES, "Service"), (SLICES, "EndpointSlice")):
            self._send({"op": "respond", "path": path, "watch": False, "response": {
                "status": 200, "body": {"kind": kind + "List", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": str(list_rv)},
                                        "items": [i for i in items if i["kind"] == kind]}}})
        self.kubeconfig = os.path.join(ctx.tmp, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                    "clusters:\n- name: fake\n  cluster:\n    server: %s\n"
                    "users:\n- name: e2e\n  user:\n    token: e2e-token\n"
                    "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: e2e\n"
                    % self.url)

    def _read(self):
        for raw in self.p.stdout:
            self.lines.put(raw.decode().rstrip("\n"))

    def _send(self, command):
        self.p.stdin.write((json.dumps(command) + "\n").encode())
        self.p.stdin.flush()

    def requests(self, path, watch):
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return [json.loads(l[len("REQUEST "):]) for l in self.seen if l.startswith("REQUEST ")
                and json.loads(l[len("REQUEST "):])["path"] == path
                and json.loads(l[len("REQUEST "):])["watch"] == watch]

    def mismatches(self):
        self.requests("", False)
        return [l for l in self.seen if l.startswith("MISMATCH ")]

    def push(self, path, kind, obj):
        """One watch event for `obj`, with the next resourceVersion."""
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self._send({"op": "push", "path": path, "events": [{"type": kind, "object": obj}]})


LEARNED_IP, LEARNED_MAC = "10.244.26.21", "02:aa:00:00:00:21"


def check_neighbors(ctx, model):
    """sluicectl neighbors: the cluster file's static neighbours (sent by
    sluice-control) as PERMANENT, and a pod address the dataplane learned
    from an ARP request to its gateway address as REACHABLE."""
    arp = ("import socket, struct; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
           "s.bind(('pod0', 0)); mac = bytes.fromhex('%s'); "
           "s.send(b'\\xff' * 6 + mac + b'\\x08\\x06' + struct.pack('!HHBBH6s4s6s4s', 1, "
           "0x0800, 6, 4, 1, mac, socket.inet_aton('%s'), bytes(6), "
           "socket.inet_aton('10.244.26.1')))" % (LEARNED_MAC.replace(":", ""), LEARNED_IP))
    topo.run([PY, "-c", arp], ns=ctx.t.pod_ns)

    def entries():
        return {(n["port"], n["ip"]): n for n in ctx.ctl("neighbors")["neighbors"]}
    topo.wait_for(lambda: ("pods", LEARNED_IP) in entries(), 5, "the learned neighbour")
    doc = ctx.ctl("neighbors")
    got = {(n["port"], n["ip"]): n for n in doc["neighbors"]}
    want = {(n["port"], n["ip"]): n["mac"] for n in model["node"]["neighbors"]}
    statics = {k: n["mac"] for k, n in got.items() if n["static"]}
    if statics != want or any(got[k]["state"] != "PERMANENT" for k in want):
        raise AssertionError("static neighbours %s, expected the cluster file's %s"
                             % (statics, want))
    learned = got[("pods", LEARNED_IP)]
    if (learned["mac"] != LEARNED_MAC or learned["static"] or learned["state"] != "REACHABLE"
            or not 0 <= learned["confirmed_seconds_ago"] < 30):
        raise AssertionError("the learned neighbour: %s" % learned)
    if [k for k, n in got.items() if k[0] == "pods" and not n["static"]] != [("pods", LEARNED_IP)]:
        raise AssertionError("learned on the pods port: %s" % got)
    pods = next(p for p in doc["ports"] if p["port"] == "pods")
    if doc["static"]["count"] != len(want) or pods["learned"] != 1:
        raise AssertionError("neighbour counts: %s, %s" % (doc["static"], doc["ports"]))
    text = subprocess.run([ctx.args.ctl, "--socket", ctx.socket(), "neighbors"],
                          stdout=subprocess.PIPE, timeout=10, check=True).stdout.decode()
    for line in ("10.10.100.1 dev uplink lladdr 02:00:0a:0a:64:01 PERMANENT\n",
                 "%s dev pods lladdr %s REACHABLE (confirmed " % (LEARNED_IP, LEARNED_MAC),
                 "static %d of " % len(want)):
        if line not in text:
            raise AssertionError("sluicectl neighbors lacks %r:\n%s" % (line, text))


@scenario("services_from_kube_api")
def t_kube_api(ctx):
    """sluice-control fed by the Kubernetes API (the fake API server's list
    and watch) for a running dataplane: the listed Services and endpoints
    reach it, an EndpointSlice change on the watch stream (one endpoint
    added, one removed) moves the ClusterIP's traffic to the new endpoint,
    and a Service deleted on the stream goes away. Also sluicectl neighbors
    (check_neighbors)."""
    ctx.echo_servers()  # 10.244.25.149:22 (the listed endpoint), 10.244.25.30:8080
    new_ep = ctx.spawn([PY, ECHO, "server", topo.PEER_PODS[1], "22"], ns=ctx.t.peer_ns)
    old_ep = next(p for p in ctx.procs if p.args[-3:] == ["server", topo.PEER_PODS[0], "22"])
    with open(ctx.cluster_file()) as f:
        model = json.load(f)
    items = model["kubernetes"]["items"]
    api = FakeApi(ctx, items, 9000000)
    node = ctx.start_node("kube", extra=["--socket", ctx.socket()], cluster=False)
    out = open(os.path.join(ctx.tmp, "control-kube.out"), "w+")
    control = ctx.spawn([ctx.args.control, "--socket", ctx.socket(), "--cluster",
                         ctx.cluster_file(), "--kubeconfig", api.kubeconfig,
                         "--metrics-bind", "127.0.0.1:0", "--healthz-bind", "127.0.0.1:0"],
                        stdout=out, stderr=subprocess.STDOUT)
    control.log = out

    def endpoints():
        """Service port name -> its endpoints as "ip:port", from the dataplane."""
        if not os.path.exists(ctx.socket()):
            return {}
        return {s["name"]: sorted("%s:%d" % (e["ip"], e["port"]) for e in s["endpoints"])
                for s in ctx.ctl("services")["services"]}
    tzp, web = "ai/tzp-pytorch-2:ssh/TCP", "default/web:http/TCP"
    try:
        topo.wait_for(lambda: tzp in endpoints() and api.requests(SLICES, True), 15,
                      "the listed Services in the dataplane and the watches")
    except AssertionError:
        raise AssertionError("services: %s\nsluice-control:\n%s" % (endpoints(),
                                                                   read_log(control)))
    got = endpoints()
    want = {tzp: ["10.244.25.149:22"], web: ["10.244.25.30:8080", "10.244.26.20:8080"],
            "default/kubernetes:https/TCP": ["10.10.100.226:6443"],
            "kube-system/kube-dns:dns/UDP": ["10.244.24.53:53"],
            "kube-system/kube-dns:dns-tcp/TCP": ["10.244.24.53:53"]}
    if got != want:
        raise AssertionError("the dataplane's Services from the API: %s, expected %s"
                             % (got, want))
    # Filtered as an operator would ask: one ClusterIP, one NodePort number.
    by_ip = [x["name"] for x in ctx.ctl("services", "--addr", "10.96.100.10")["services"]]
    by_port = [x["name"] for x in ctx.ctl("services", "--port", "53")["services"]]
    if by_ip != [web] or by_port != ["kube-system/kube-dns:dns-tcp/TCP",
                                     "kube-system/kube-dns:dns/UDP"]:
        raise AssertionError("sluicectl services --addr 10.96.100.10: %s; --port 53: %s"
                             % (by_ip, by_port))
    watches = api.requests(SERVICES, True) + api.requests(SLICES, True)
    if len(watches) != 2 or any(w["query"].get("resourceVersion") != "9000000" or
                                w["authorization"] != "Bearer e2e-token" for w in watches):
        raise AssertionError("watch requests: %s" % watches)
    check_neighbors(ctx, model)
    if not connects(ctx, CLUSTER_IP, 22):
        raise AssertionError("no connection through the ClusterIP to the listed endpoint")
    # The listed endpoint's server goes: the ClusterIP is refused until the
    # watch moves the Service to 10.244.25.30.
    old_ep.kill()
    old_ep.wait(timeout=10)
    if connects(ctx, CLUSTER_IP, 22):
        raise AssertionError("the ClusterIP still connects with its endpoint's server gone")
    tzp_slice = next(i for i in items if i["kind"] == "EndpointSlice" and
                     i["metadata"]["name"].startswith("tzp-pytorch-2"))
    moved = json.loads(json.dumps(tzp_slice))
    moved["endpoints"][0]["addresses"] = [topo.PEER_PODS[1]]  # 149 removed, 30 added
    t0 = time.monotonic()
    api.push(SLICES, "MODIFIED", moved)
    topo.wait_for(lambda: endpoints().get(tzp) == ["10.244.25.30:22"], 5,
                  "the EndpointSlice change in the dataplane")
    moved_ms = (time.monotonic() - t0) * 1000
    if not connects(ctx, CLUSTER_IP, 22):
        raise AssertionError("the ClusterIP does not reach the endpoint the watch added")
    web_svc = next(i for i in items if i["kind"] == "Service" and i["metadata"]["name"] == "web")
    t0 = time.monotonic()
    api.push(SERVICES, "DELETED", web_svc)
    topo.wait_for(lambda: web not in endpoints(), 5, "the deleted Service to go")
    deleted_ms = (time.monotonic() - t0) * 1000
    if sorted(endpoints()) != sorted(k for k in want if k != web):
        raise AssertionError("Services after the deletion: %s" % endpoints())
    if api.mismatches():
        raise AssertionError("fake API server: %s" % api.mismatches())
    log = ctx.stop_node(node)
    if counter(log, "service_dnat") < 2:
        raise AssertionError("service_dnat = %d\n%s" % (counter(log, "service_dnat"), log))
    new_ep.kill()
    return ("5 Service ports from the API's lists; an EndpointSlice MODIFIED on the watch "
            "(149 -> 30) in the dataplane in %.0f ms and the ClusterIP follows it; a Service "
            "DELETED gone in %.0f ms (sluicectl polling); sluicectl neighbors: the file's "
            "statics and one learned from ARP" % (moved_ms, deleted_ms))


@scenario("operator_endpoints")
def t_operator(ctx):
    """kube-proxy's operator surface, served by sluice-control for a live
    dataplane: /healthz and /livez, /metrics with kube-proxy's names and the
    dataplane's counters, and the healthCheckNodePort of an
    externalTrafficPolicy Local Service answering its local endpoints (503
    once it has none)."""
    import urllib.error
    import urllib.request
    with open(ctx.cluster_file()) as f:
        model = json.load(f)
    hc_port = free_port()
    for it in model["kubernetes"]["items"]:
        if it["kind"] == "Service" and it["metadata"]["name"] == "web":
            it["spec"]["type"] = "LoadBalancer"
            it["spec"]["externalTrafficPolicy"] = "Local"
            it["spec"]["healthCheckNodePort"] = hc_port
            it["spec"]["ports"][0]["nodePort"] = 30080
    cluster = os.path.join(ctx.tmp, "cluster.json")
    with open(cluster, "w") as f:
        json.dump(model, f)
    node = ctx.start_node("operator", extra=["--socket", ctx.socket()], cluster=False)
    mport, hport = free_port(), free_port()
    out = open(os.path.join(ctx.tmp, "control.out"), "w+")
    p = ctx.spawn([ctx.args.control, "--socket", ctx.socket(), "--cluster", cluster,
                   "--metrics-bind", "127.0.0.1:%d" % mport, "--healthz-bind",
                   "127.0.0.1:%d" % hport, "--health-check-address", "127.0.0.1"],
                  stdout=out, stderr=subprocess.STDOUT)
    p.log = out

    def get(port, path):
        try:
            r = urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=2)
            return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""
    topo.wait_for(lambda: get(hc_port, "/")[0] == 200, 15, "the healthCheckNodePort server")
    status, body = get(hc_port, "/")
    doc = json.loads(body)
    if doc != {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 1,
               "serviceProxyHealthy": True}:
        raise AssertionError("healthCheckNodePort answered %s" % body)
    status, body = get(hport, "/healthz")
    if status != 200 or '"nodeEligible": true' not in body:
        raise AssertionError("/healthz: %d %s" % (status, body))
    status, body = get(mport, "/metrics")
    for want in ("kubeproxy_sync_proxy_rules_duration_seconds_count 1",
                 "kubeproxy_network_programming_duration_seconds_bucket",
                 'sluice_rx_packets_total{worker="0"}'):
        if want not in body:
            raise AssertionError("/metrics lacks %r" % want)
    # The local endpoint goes (node-228's web pod moves to node-227).
    for it in model["kubernetes"]["items"]:
        if it["kind"] == "EndpointSlice" and it["metadata"]["name"].startswith("web"):
            for e in it["endpoints"]:
                e["nodeName"] = "node-227"
    with open(cluster + ".new", "w") as f:
        json.dump(model, f)
    os.replace(cluster + ".new", cluster)
    topo.wait_for(lambda: get(hc_port, "/")[0] == 503, 10, "503 with no local endpoint")
    if json.loads(get(hc_port, "/")[1])["localEndpoints"] != 0:
        raise AssertionError("localEndpoints after the move: %s" % get(hc_port, "/")[1])
    ctx.stop_node(node)
    return ("healthCheckNodePort %d: 200 with 1 local endpoint, 503 at 0; /healthz 200; "
            "/metrics with kube-proxy's names and sluice_* counters" % hc_port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("e2e: needs root (network namespaces)")
        return 1
    failed = 0
    for name, f in SCENARIOS:
        if args.only and name != args.only:
            continue
        tmp = tempfile.mkdtemp(prefix="sluice-e2e-")
        ctx = Ctx(args, tmp)
        ctx.t = topo.Topology()
        t0 = time.monotonic()
        try:
            ctx.t.open()
            msg = f(ctx)
            print("ok   %-32s %5.1f s  %s" % (name, time.monotonic() - t0, msg))
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed += 1
            print("FAIL %-32s %5.1f s  %s" % (name, time.monotonic() - t0, e))
            traceback.print_exc()
        finally:
            ctx.cleanup()
            ctx.t.close()
            left = ctx.t.leftovers()
            shutil.rmtree(tmp, ignore_errors=True)
            if left:
                failed += 1
                print("FAIL %s left behind: %s" % (name, left))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
