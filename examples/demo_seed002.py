#!/usr/bin/python3
"""Seed 002 told by Sluice's own tools: why cross-host traffic keeps flowing
when the control process dies.

    /usr/bin/python3 examples/demo_seed002.py --build build

Builds the e2e suite's network namespaces (tests/e2e/topology.py): a pod on
node-228, and node-227 as the kernel's own flannel.1 with its pods. Starts a
real etcd holding flannel's keys, a sluice-node on AF_PACKET ports, and
sluice-control feeding it from etcd; runs a pod's connection to a pod on
node-227 and one through a ClusterIP; shows the routes and the live flows
with sluicectl; kills sluice-control (SIGKILL); shows the traffic still
flowing; restarts sluice-control and shows it changed nothing that was
right. Needs root and /usr/bin/etcd; removes everything it made. Exits 1 if
any step fails.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import run_e2e_tests as e2e  # noqa: E402
import topology as topo  # noqa: E402

WIDTH = 78


def header(n, title):
    print()
    print("=" * WIDTH)
    print("%d. %s" % (n, title))
    print("=" * WIDTH)


def say(text):
    print(textwrap.fill(text, WIDTH))


def show(ctx, *what):
    cmd = [ctx.args.ctl, "--socket", ctx.socket()] + list(what)
    print()
    print("$ sluicectl " + " ".join(what))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=10).stdout.decode()
    for line in out.rstrip("\n").splitlines():
        print("  | " + line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("demo_seed002: needs root (network namespaces)")
        return 1
    args = argparse.Namespace(node=os.path.join(a.build, "app", "sluice-node"),
                              control=os.path.join(a.build, "app", "sluice-control"),
                              ctl=os.path.join(a.build, "app", "sluicectl"), source_root=REPO)
    tmp = tempfile.mkdtemp(prefix="sluice-demo-")
    ctx = e2e.Ctx(args, tmp)
    ctx.t = topo.Topology()
    try:
        ctx.t.open()
        header(1, "node-228: sluice-node, fed by sluice-control from flannel's etcd")
        say("node-227 is a Linux network namespace whose flannel.1 is the kernel's VXLAN "
            "device with flannel's route, ARP and FDB entries. node-228 is sluice-node on "
            "two AF_PACKET ports. etcd holds flannel's config and the three leases; "
            "sluice-control watches it and feeds the dataplane over its Unix socket.")
        ctx.echo_servers()
        with open(ctx.cluster_file()) as f:
            model = json.load(f)
        etcd = e2e.Etcd(ctx)
        etcd.load_flannel(model)
        node = ctx.start_node("demo", extra=["--socket", ctx.socket()], cluster=False)
        control_cmd = [args.control, "--socket", ctx.socket(), "--cluster", ctx.cluster_file(),
                       "--etcd", etcd.url, "--metrics-bind", "127.0.0.1:0",
                       "--healthz-bind", "127.0.0.1:0"]
        print("\n$ sluice-control --socket SOCK --cluster examples/cluster/node-228.json "
              "--etcd %s" % etcd.url)
        control = ctx.spawn(control_cmd)
        topo.wait_for(lambda: os.path.exists(ctx.socket()) and ctx.ctl("status")["tables"], 15,
                      "the tables from sluice-control")
        show(ctx, "peers")

        header(2, "Traffic: a pod on node-228 to a pod on node-227, and through a ClusterIP")
        say("The pod 10.244.26.20 keeps one TCP connection to 10.244.25.149:22 (pod to "
            "pod: VXLAN both ways, no NAT) and one to the ClusterIP 10.111.123.177:22, "
            "DNATed by Sluice to the same pod. Each sends a line every 20 ms and waits "
            "for its echo.")
        pod = ctx.client("pod", topo.PEER_PODS[0], 22, 8.0)
        svc = ctx.client("svc", e2e.CLUSTER_IP, 22, 8.0)
        topo.wait_for(lambda: e2e.status_of(pod)["echoed"] >= 25 and
                      e2e.status_of(svc)["echoed"] >= 25, 10, "traffic")
        show(ctx, "conntrack", "-p", "tcp", "--port", "22")
        show(ctx, "services")

        header(3, "sluice-control is killed (SIGKILL)")
        before = (e2e.status_of(pod)["echoed"], e2e.status_of(svc)["echoed"])
        control.kill()
        control.wait(timeout=10)
        print("\n$ kill -9 <sluice-control>")
        time.sleep(2.0)
        after = (e2e.status_of(pod)["echoed"], e2e.status_of(svc)["echoed"])
        say("Two seconds later the echoes went on: pod to pod %d -> %d, ClusterIP %d -> %d. "
            "The tables live in the dataplane; nothing in the packet path needs the control "
            "process, as flannel.1's routes and FDB entries outlive flanneld."
            % (before[0], after[0], before[1], after[1]))
        if after[0] < before[0] + 50 or after[1] < before[1] + 50:
            raise AssertionError("traffic stalled without sluice-control")
        show(ctx, "status")

        header(4, "A restarted sluice-control changes nothing that was right")
        flow_before = ctx.ctl("conntrack", "-p", "tcp", "--port", "22")["flows"]
        epoch = ctx.ctl("status")["last_epoch"]
        control = ctx.spawn(control_cmd)
        topo.wait_for(lambda: ctx.ctl("status")["last_epoch"] > epoch, 15, "the resync")
        flow_after = ctx.ctl("conntrack", "-p", "tcp", "--port", "22")["flows"]
        same = sorted(json.dumps(f["reply"]) for f in flow_before) == \
            sorted(json.dumps(f["reply"]) for f in flow_after)
        say("It made a full sync with a new epoch; the dataplane kept every Service port's "
            "slot and endpoint set, so the flows are the same entries: %s."
            % ("yes" if same else "NO"))
        if not same:
            raise AssertionError("flows changed across the resync")
        show(ctx, "conntrack", "-p", "tcp", "--port", "22")
        topo.wait_for(lambda: e2e.status_of(pod)["done"] and e2e.status_of(svc)["done"], 15,
                      "the clients")
        for name, c in (("pod to pod", pod), ("ClusterIP", svc)):
            st = e2e.status_of(c)
            print("  %-10s %d echoes, longest gap %.0f ms, errors: %s"
                  % (name, st["echoed"], st["max_gap_ms"], st["errors"] or "none"))
            if st["errors"]:
                raise AssertionError("%s connection failed" % name)
        ctx.stop_node(node)
        print()
        print("Seed 002 told: the traffic did not notice the control process's death.")
        return 0
    except Exception as e:  # noqa: BLE001
        print("DEMO FAILED: %s" % e)
        return 1
    finally:
        ctx.cleanup()
        ctx.t.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
