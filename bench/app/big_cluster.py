#!/usr/bin/python3
"""Writes a cluster file: the example node-228 cluster plus N generated
ClusterIP Services (bulk-0 .. bulk-N-1, copies of default/web with their own
ClusterIP in 10.97.0.0/16) and one EndpointSlice of 10 endpoints on node-227
each, for measuring sluice-control at scale:

  bench/app/big_cluster.py 10000 /tmp/cluster-10k.json
  build/bench/sluice-bench-source --node build/app/sluice-node \\
      --control build/app/sluice-control --cluster /tmp/cluster-10k.json \\
      --source kube --changes 200
"""
import copy
import json
import os
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: big_cluster.py SERVICES OUT.json")
    n, out = int(sys.argv[1]), sys.argv[2]
    if not 0 < n <= 60000:
        sys.exit("SERVICES must be 1..60000")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "examples", "cluster", "node-228.json")) as f:
        d = json.load(f)
    items = d["kubernetes"]["items"]
    svc = next(i for i in items if i["kind"] == "Service" and i["metadata"]["name"] == "web")
    es = next(i for i in items
              if i["kind"] == "EndpointSlice" and i["metadata"]["name"].startswith("web"))
    for k in range(n):
        s, e = copy.deepcopy(svc), copy.deepcopy(es)
        name = "bulk-%d" % k
        s["metadata"]["name"] = name
        s["metadata"].pop("annotations", None)
        ip = "10.97.%d.%d" % (k // 250, k % 250 + 1)
        s["spec"]["clusterIP"], s["spec"]["clusterIPs"] = ip, [ip]
        e["metadata"]["name"] = name + "-abcde"
        e["metadata"].setdefault("labels", {})["kubernetes.io/service-name"] = name
        endpoints = []
        for j in range(10):
            ep = copy.deepcopy(es["endpoints"][0])
            ep["addresses"] = ["10.244.25.%d" % ((k * 10 + j) % 250 + 2)]
            ep["nodeName"] = "node-227"
            ep.pop("targetRef", None)
            endpoints.append(ep)
        e["endpoints"] = endpoints
        items += [s, e]
    with open(out, "w") as f:
        json.dump(d, f)


if __name__ == "__main__":
    main()
