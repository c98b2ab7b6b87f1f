#!/usr/bin/python3
"""The story of examples/README.md told by sluice-replay itself.

    /usr/bin/python3 examples/demo.py --build build [--seed N] [--quiet]

`scp -P 8014 xx.zip root@10.10.100.228:/data` from a laptop behind a VPN:
the SYN reaches NodePort 8014 on node-228, goes in VXLAN to the sshd pod on
node-227, and the pod's answers come back the same way. Each node is one
sluice-replay run (traced), fed with what the previous node sent. Then
pod-to-pod and pod-to-internet traffic, and a table of every hop built from
the output captures.

Regenerates the captures into BUILD/demo/ (examples/make_captures.py) and
writes each run's captures and counters under BUILD/demo/runs/. Every step
is checked (tests/pcap/journey.py, shared with the pcap test suite); the
demo exits 1 if any check fails. Needs Debian's scapy: /usr/bin/python3.
"""

import argparse
import os
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "pcap"))

import journey  # noqa: E402

WIDTH = 78


class Demo(object):
    def __init__(self, replayer, quiet):
        self.r = replayer
        self.quiet = quiet
        self.step = 0

    def header(self, title):
        self.step += 1
        print()
        print("=" * WIDTH)
        print("%d. %s" % (self.step, title))
        print("=" * WIDTH)

    def say(self, text):
        print(textwrap.fill(text, WIDTH))

    def command(self, run):
        shown = []
        for a in run.cmd:
            if os.path.isabs(a) and not os.path.relpath(a).startswith(".."):
                a = os.path.relpath(a)
            shown.append(a)
        print()
        print("$ " + " ".join(shown))

    def output(self, run, brief=False):
        text = run.stdout.rstrip("\n")
        if brief:
            # The per-packet trace only, without the counter table.
            text = text.split("\ncounter ")[0].rstrip("\n")
        if self.quiet:
            text = "\n".join(l for l in text.splitlines()
                             if not l.startswith("  ") or "dropped" in l)
        for line in text.splitlines():
            print("  | " + line if line else "  |")

    def narrate(self, title, text, run, brief=False):
        self.header(title)
        self.say(text)
        self.command(run)
        self.output(run, brief)
        print("  checked: every field of every output packet, all checksums, "
              "the counters")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="meson build directory holding app/sluice-replay")
    ap.add_argument("--seed", type=int, default=journey.DEFAULT_SEED,
                    help="sluice-replay --seed for every run (default %d)"
                    % journey.DEFAULT_SEED)
    ap.add_argument("--quiet", action="store_true",
                    help="show only the first line of each traced packet")
    args = ap.parse_args(argv)

    build = os.path.abspath(args.build)
    binary = os.path.join(build, "app", "sluice-replay")
    if not os.access(binary, os.X_OK):
        print("demo: %s not found: build first (ninja -C %s)"
              % (binary, args.build), file=sys.stderr)
        return 1
    demo_dir = os.path.join(build, "demo")
    print("Regenerating the example captures into %s" % os.path.relpath(
        demo_dir))
    p = subprocess.run([sys.executable,
                        os.path.join(HERE, "make_captures.py"),
                        "--out", demo_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in p.stdout.decode().splitlines():
        print("  " + line)
    if p.returncode != 0:
        print("demo: make_captures.py failed", file=sys.stderr)
        return 1

    replayer = journey.Replayer(binary, REPO, os.path.join(demo_dir, "runs"))
    demo = Demo(replayer, args.quiet)
    rows = []
    try:
        print()
        demo.say(
            "The story: a laptop behind a VPN (172.100.0.6) runs `scp -P 8014 "
            "xx.zip root@10.10.100.228:/data`. Port 8014 is the NodePort of "
            "Service ai/tzp-pytorch-2, whose only endpoint is the sshd pod "
            "10.244.25.149:22 on node-227. Sluice replaces kube-proxy and "
            "flannel's data path on every node; each node below is one "
            "sluice-replay run, fed with what the previous node sent "
            "(--seed %d, 2 workers, packets dealt round-robin)." % args.seed)
        j = journey.ThreeNodeJourney(
            replayer, seed=args.seed, trace=True, workers=2,
            narrate=demo.narrate,
            forward_pcap=os.path.join(demo_dir, "nodeport_forward.pcap"))
        j.run_all()
        rows += j.hops()

        run = replayer.run("pod-to-pod", "node-228",
                           {"pods": os.path.join(demo_dir, "pod_to_pod.pcap")},
                           workers=2, seed=args.seed, trace=True)
        outcome = journey.check_pod_to_pod(run, 2)
        demo.narrate(
            "node-228: pod to pod, and a ClusterIP",
            "web-1 asks for its gateway 10.244.26.1, opens a connection to "
            "web-2 (10.244.25.30 on node-227: VXLAN, addresses untouched), "
            "then to the ClusterIP 10.96.100.10:80 of Service default/web, "
            "whose endpoints are web-1 itself and web-2. This seed picked %s."
            % ("web-1: a hairpin, so the source is masqueraded to cni0's "
               "10.244.26.1 and the SYN goes back out of the pods port"
               if outcome == "hairpin" else
               "web-2: DNAT only, then VXLAN to node-227 with web-1's "
               "address as the source"), run, brief=True)
        rows += [journey.hop_row("node-228", *pair) for pair in run.pairs]

        run = replayer.run("pod-to-internet", "node-226",
                           {"pods": os.path.join(demo_dir,
                                                 "pod_to_internet.pcap")},
                           workers=2, seed=args.seed, trace=True)
        journey.check_pod_to_internet(run, 2)
        demo.narrate(
            "node-226: a pod reaches the internet and kube-dns",
            "toolbox connects to 93.184.216.34:443: leaving the cluster "
            "network, it is masqueraded to the node IP 10.10.100.226 (flannel "
            "--ip-masq) and sent to the gateway. Its DNS query to the "
            "ClusterIP 10.96.0.10:53 is DNATed to coredns on the same node.",
            run, brief=True)
        rows += [journey.hop_row("node-226", *pair) for pair in run.pairs]
    except AssertionError as e:
        last = replayer.last
        if last is not None:
            print()
            print("Output of the failing run (%s):" % last.name)
            demo.command(last)
            demo.output(last)
            print(last.stderr, end="")
        print()
        print("DEMO FAILED: %s" % e)
        return 1

    demo.header("Every hop, from the output captures")
    table_rows = []
    for i, r in enumerate(rows):
        table_rows.append((str(i + 1),) + tuple(r))
        table_rows.append(("",) * 6)
    print(journey.format_table(
        ("#", "node", "in-port", "what happened", "out-port", "tuple"),
        table_rows[:-1]))
    print()
    print("All steps checked. Captures and counters: %s" % os.path.relpath(
        replayer.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
