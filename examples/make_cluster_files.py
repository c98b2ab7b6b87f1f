#!/usr/bin/python3
"""Writes the example cluster files examples/cluster/node-22{6,7,8}.json.

One cluster, three views: every file carries the same `etcd` section (what
`etcdctl get --prefix /coreos.com/network/ -w json` prints) and the same
`kubernetes` section (what `kubectl get services,endpointslices -A -o json`
prints); only the `node` section differs. See control/CLUSTER_FILE.md for the
format and examples/README.md for the cluster.

Everything is derived from the tables below, deterministically (no clocks, no
random numbers), so the output is byte-identical on every run. Do not edit the
JSON files by hand: change this script and rerun it.

    /usr/bin/python3 examples/make_cluster_files.py            # write
    /usr/bin/python3 examples/make_cluster_files.py --check    # compare only
    /usr/bin/python3 examples/make_cluster_files.py --out DIR  # elsewhere

Only the Python standard library is used.
"""

import argparse
import base64
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Topology
# ---------------------------------------------------------------------------

UNDERLAY_PREFIX_LENGTH = 24          # 10.10.100.0/24
GATEWAY_IP = "10.10.100.1"
GATEWAY_MAC = "02:00:0a:0a:64:01"
UPLINK_MTU = 1500

FLANNEL_NETWORK = "10.244.0.0/16"
FLANNEL_SUBNET_LEN = 24
FLANNEL_VNI = 1                      # flannel's default (config leaves it out)


def _octets(ip):
    return [int(x) for x in ip.split(".")]


def _mac(*octets):
    return ":".join("%02x" % o for o in octets)


def pod_mac(ip):
    """The MAC the CNI bridge plugin gives a pod: 0a:58 + the IPv4 bytes."""
    return _mac(0x0a, 0x58, *_octets(ip))


def _node(name, ip, subnet):
    last = _octets(ip)[3]
    third = _octets(subnet)[2]
    return {
        "name": name,
        "ip": ip,
        "subnet": subnet,                       # flannel lease, /24
        "uplink_mac": _mac(0x02, 0x00, 0x0a, 0x0a, 0x64, last),
        "pods_mac": _mac(0x02, 0x00, 0x0a, 0xf4, third, 0x01),
        "vtep_mac": _mac(0x0e, 0x00, 0x00, 0x00, 0x00, last),   # flannel.1
        "host_mac": _mac(0x02, 0x00, 0x00, 0x00, 0x00, last),
        "host_peer_mac": _mac(0x02, 0x00, 0x00, 0x00, 0x01, last),
    }


NODES = [
    _node("node-226", "10.10.100.226", "10.244.24.0"),   # control plane
    _node("node-227", "10.10.100.227", "10.244.25.0"),
    _node("node-228", "10.10.100.228", "10.244.26.0"),
]

# Pods that matter to the examples: (namespace, name, ip, node).
PODS = [
    ("ai", "tzp-pytorch-2-6c9d7b8f5d-8xkqz", "10.244.25.149", "node-227"),  # sshd
    ("default", "toolbox", "10.244.24.10", "node-226"),
    ("kube-system", "coredns-5dd5756b68-7xq2n", "10.244.24.53", "node-226"),
    ("default", "web-1", "10.244.26.20", "node-228"),
    ("default", "web-2", "10.244.25.30", "node-227"),
]

# ---------------------------------------------------------------------------
# etcd: flannel's keys, as `etcdctl get --prefix /coreos.com/network/ -w json`
# prints them (keys and values base64, revisions and lease ids as numbers;
# etcdctl leaves out "lease" when the key has none).
# ---------------------------------------------------------------------------

ETCD_CLUSTER_ID = 14841639068965178418
ETCD_MEMBER_ID = 10276657743932975437
ETCD_RAFT_TERM = 4
ETCD_REVISION = 1204

# The config as an operator typically writes it: only Network, SubnetLen and
# the backend type; VNI (1) and Port (0 = 8472) are left to flannel's defaults.
FLANNEL_CONFIG = {"Network": FLANNEL_NETWORK, "SubnetLen": FLANNEL_SUBNET_LEN,
                  "Backend": {"Type": "vxlan"}}

# Per lease: (create_revision, mod_revision, version, lease id). flannel renews
# its 24 h lease every 23 h, bumping mod_revision and version.
LEASE_META = {
    "node-226": (4, 1187, 9, 7587875196390371330),
    "node-227": (6, 1191, 9, 7587875196390371337),
    "node-228": (8, 1196, 9, 7587875196390371345),
}


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _go_json(obj):
    """json.Marshal style: no spaces, keys in the given (struct) order."""
    return json.dumps(obj, separators=(",", ":"))


def etcd_section():
    kvs = [{
        "key": _b64("/coreos.com/network/config"),
        "create_revision": 2,
        "mod_revision": 2,
        "version": 1,
        "value": _b64(_go_json(FLANNEL_CONFIG)),
    }]
    for n in sorted(NODES, key=lambda n: n["subnet"]):   # etcd sorts by key
        create, mod, version, lease = LEASE_META[n["name"]]
        value = {
            "PublicIP": n["ip"],
            "PublicIPv6": None,
            "BackendType": "vxlan",
            "BackendData": {"VNI": FLANNEL_VNI, "VtepMAC": n["vtep_mac"]},
        }
        kvs.append({
            "key": _b64("/coreos.com/network/subnets/%s-%d"
                        % (n["subnet"], FLANNEL_SUBNET_LEN)),
            "create_revision": create,
            "mod_revision": mod,
            "version": version,
            "value": _b64(_go_json(value)),
            "lease": lease,
        })
    return {
        "header": {
            "cluster_id": ETCD_CLUSTER_ID,
            "member_id": ETCD_MEMBER_ID,
            "revision": ETCD_REVISION,
            "raft_term": ETCD_RAFT_TERM,
        },
        "kvs": kvs,
        "count": len(kvs),
    }

# ---------------------------------------------------------------------------
# kubernetes: a v1 List as `kubectl get services,endpointslices -A -o json`
# prints it (services first, then slices, each sorted by namespace/name).
# ---------------------------------------------------------------------------

_UID_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def _uid(kind, namespace, name):
    """Deterministic stand-in for the (version 4) UUIDs the apiserver hands
    out: a name-based hash, stamped as version 4."""
    h = uuid.uuid5(_UID_NAMESPACE, "%s/%s/%s" % (kind, namespace, name))
    return str(uuid.UUID(bytes=h.bytes, version=4))


def _pod_ref(pod_name):
    for ns, name, ip, node in PODS:
        if name == pod_name:
            return ns, name, ip, node
    raise KeyError(pod_name)


def _service(namespace, name, *, created, rv, labels, spec, annotations=None):
    meta = {}
    if annotations:
        meta["annotations"] = annotations
    meta["creationTimestamp"] = created
    if labels:
        meta["labels"] = labels
    meta["name"] = name
    meta["namespace"] = namespace
    meta["resourceVersion"] = rv
    meta["uid"] = _uid("Service", namespace, name)
    full_spec = {
        "clusterIP": spec["clusterIP"],
        "clusterIPs": [spec["clusterIP"]],
    }
    if spec.get("externalTrafficPolicy"):
        full_spec["externalTrafficPolicy"] = spec["externalTrafficPolicy"]
    full_spec["internalTrafficPolicy"] = "Cluster"
    full_spec["ipFamilies"] = ["IPv4"]
    full_spec["ipFamilyPolicy"] = "SingleStack"
    full_spec["ports"] = spec["ports"]
    if spec.get("selector"):
        full_spec["selector"] = spec["selector"]
    full_spec["sessionAffinity"] = "None"
    full_spec["type"] = spec["type"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": full_spec,
        "status": {"loadBalancer": {}},
    }


def _pod_endpoint(pod_name):
    ns, name, ip, node = _pod_ref(pod_name)
    return {
        "addresses": [ip],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": node,
        "targetRef": {"kind": "Pod", "name": name, "namespace": ns,
                      "uid": _uid("Pod", ns, name)},
    }


def _controller_slice(service, suffix, *, created, rv, generation, changed,
                      endpoints, ports):
    meta = service["metadata"]
    ns, svc = meta["namespace"], meta["name"]
    labels = {"endpointslice.kubernetes.io/managed-by":
              "endpointslice-controller.k8s.io"}
    labels.update(meta.get("labels", {}))
    labels["kubernetes.io/service-name"] = svc
    name = "%s-%s" % (svc, suffix)
    return {
        "addressType": "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": endpoints,
        "kind": "EndpointSlice",
        "metadata": {
            "annotations": {
                "endpoints.kubernetes.io/last-change-trigger-time": changed},
            "creationTimestamp": created,
            "generateName": svc + "-",
            "generation": generation,
            "labels": dict(sorted(labels.items())),
            "name": name,
            "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "v1", "blockOwnerDeletion": True,
                "controller": True, "kind": "Service", "name": svc,
                "uid": meta["uid"]}],
            "resourceVersion": rv,
            "uid": _uid("EndpointSlice", ns, name),
        },
        "ports": ports,
    }


def _last_applied(manifest):
    return json.dumps(manifest, separators=(",", ":")) + "\n"


def kubernetes_section():
    svc_kubernetes = _service(
        "default", "kubernetes", created="2023-11-02T07:41:15Z", rv="196",
        labels={"component": "apiserver", "provider": "kubernetes"},
        spec={"clusterIP": "10.96.0.1", "type": "ClusterIP",
              "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                         "targetPort": 6443}]})

    tzp_manifest = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"annotations": {}, "labels": {"app": "tzp-pytorch-2"},
                     "name": "tzp-pytorch-2", "namespace": "ai"},
        "spec": {"ports": [{"name": "ssh", "nodePort": 8014, "port": 22,
                            "protocol": "TCP", "targetPort": 22}],
                 "selector": {"app": "tzp-pytorch-2"}, "type": "NodePort"}}
    svc_tzp = _service(
        "ai", "tzp-pytorch-2", created="2024-03-18T02:17:44Z", rv="8841207",
        labels={"app": "tzp-pytorch-2"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration":
                     _last_applied(tzp_manifest)},
        spec={"clusterIP": "10.111.123.177", "type": "NodePort",
              "externalTrafficPolicy": "Cluster",
              "selector": {"app": "tzp-pytorch-2"},
              "ports": [{"name": "ssh", "nodePort": 8014, "port": 22,
                         "protocol": "TCP", "targetPort": 22}]})

    web_manifest = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"annotations": {}, "labels": {"app": "web"},
                     "name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.100.10",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                            "targetPort": 8080}],
                 "selector": {"app": "web"}}}
    svc_web = _service(
        "default", "web", created="2024-02-06T09:03:12Z", rv="6120455",
        labels={"app": "web"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration":
                     _last_applied(web_manifest)},
        spec={"clusterIP": "10.96.100.10", "type": "ClusterIP",
              "selector": {"app": "web"},
              "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                         "targetPort": 8080}]})

    svc_dns = _service(
        "kube-system", "kube-dns", created="2023-11-02T07:41:17Z", rv="251",
        annotations={"prometheus.io/port": "9153",
                     "prometheus.io/scrape": "true"},
        labels={"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "CoreDNS"},
        spec={"clusterIP": "10.96.0.10", "type": "ClusterIP",
              "selector": {"k8s-app": "kube-dns"},
              "ports": [{"name": "dns", "port": 53, "protocol": "UDP",
                         "targetPort": 53},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                         "targetPort": 53}]})

    # default/kubernetes is kept by the apiserver's endpoint reconciler: no
    # managed-by label, no nodeName, only the "ready" condition.
    eps_kubernetes = {
        "addressType": "IPv4",
        "apiVersion": "discovery.k8s.io/v1",
        "endpoints": [{"addresses": ["10.10.100.226"],
                       "conditions": {"ready": True}}],
        "kind": "EndpointSlice",
        "metadata": {
            "creationTimestamp": "2023-11-02T07:41:15Z",
            "generation": 1,
            "labels": {"kubernetes.io/service-name": "kubernetes"},
            "name": "kubernetes",
            "namespace": "default",
            "resourceVersion": "198",
            "uid": _uid("EndpointSlice", "default", "kubernetes"),
        },
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    }
    eps_tzp = _controller_slice(
        svc_tzp, "x7k2p", created="2024-03-18T02:17:44Z", rv="8841391",
        generation=3, changed="2024-03-18T02:18:09Z",
        endpoints=[_pod_endpoint("tzp-pytorch-2-6c9d7b8f5d-8xkqz")],
        ports=[{"name": "ssh", "port": 22, "protocol": "TCP"}])
    eps_web = _controller_slice(
        svc_web, "9fq4m", created="2024-02-06T09:03:12Z", rv="6120533",
        generation=4, changed="2024-02-06T09:03:40Z",
        endpoints=[_pod_endpoint("web-1"), _pod_endpoint("web-2")],
        ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])
    eps_dns = _controller_slice(
        svc_dns, "h2wbd", created="2023-11-02T07:41:31Z", rv="498",
        generation=2, changed="2023-11-02T07:42:05Z",
        endpoints=[_pod_endpoint("coredns-5dd5756b68-7xq2n")],
        ports=[{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
               {"name": "dns", "port": 53, "protocol": "UDP"}])

    return {
        "apiVersion": "v1",
        "items": [svc_tzp, svc_kubernetes, svc_web, svc_dns,
                  eps_tzp, eps_kubernetes, eps_web, eps_dns],
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }

# ---------------------------------------------------------------------------
# node sections
# ---------------------------------------------------------------------------


def node_section(node):
    neighbors = [{"port": "uplink", "ip": GATEWAY_IP, "mac": GATEWAY_MAC}]
    for other in NODES:
        if other is not node:
            neighbors.append({"port": "uplink", "ip": other["ip"],
                              "mac": other["uplink_mac"]})
    for _, _, ip, where in sorted(PODS, key=lambda p: _octets(p[2])):
        if where == node["name"]:
            neighbors.append({"port": "pods", "ip": ip, "mac": pod_mac(ip)})
    return {
        "name": node["name"],
        "nodeIP": node["ip"],
        "uplinkPrefixLength": UNDERLAY_PREFIX_LENGTH,
        "gateway": GATEWAY_IP,
        "uplinkMTU": UPLINK_MTU,
        "ports": {
            "uplink": {"mac": node["uplink_mac"]},
            "pods": {"mac": node["pods_mac"]},
            "host": {"mac": node["host_mac"], "peerMAC": node["host_peer_mac"]},
        },
        "neighbors": neighbors,
    }


def cluster_files():
    """{file name: file text} for every node."""
    etcd = etcd_section()
    kube = kubernetes_section()
    out = {}
    for node in NODES:
        doc = {"node": node_section(node), "etcd": etcd, "kubernetes": kube}
        out[node["name"] + ".json"] = json.dumps(doc, indent=2) + "\n"
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "cluster"),
                    help="output directory (default: examples/cluster/)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the files differ")
    args = ap.parse_args(argv)

    files = cluster_files()
    if args.check:
        stale = []
        for name, text in files.items():
            path = os.path.join(args.out, name)
            try:
                with open(path) as f:
                    if f.read() == text:
                        continue
            except OSError:
                pass
            stale.append(path)
        for path in stale:
            print("out of date: %s" % path, file=sys.stderr)
        return 1 if stale else 0

    os.makedirs(args.out, exist_ok=True)
    for name, text in files.items():
        path = os.path.join(args.out, name)
        with open(path, "w") as f:
            f.write(text)
        print("wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
