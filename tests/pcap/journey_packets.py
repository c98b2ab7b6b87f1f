"""Packet builders for the example cluster (examples/README.md).

The packets of the journey `scp -P 8014 ... root@10.10.100.228:` takes through
Sluice, plus pod traffic and a corpus of malformed frames. Used by
examples/make_captures.py (which writes them as pcap files) and by tests.

Import it by putting this directory on sys.path:

    sys.path.insert(0, "<repo>/tests/pcap")
    import journey_packets as jp

Everything is deterministic (fixed sequence numbers, IP IDs, timestamps,
ports), so the pcap files are byte-identical across runs. Checksums are left
to scapy unless a builder breaks one on purpose.

The topology constants below mirror examples/make_cluster_files.py;
`check_cluster_file()` verifies that they agree with a generated file.
"""

import json
import base64
import ipaddress
import struct
import zlib
from collections import namedtuple
from decimal import Decimal

from scapy.layers.l2 import ARP, Ether
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.vxlan import VXLAN
from scapy.packet import Padding, Raw, bind_layers

# flannel's VXLAN port; scapy already binds it, made explicit for clarity.
VXLAN_PORT = 8472
bind_layers(UDP, VXLAN, dport=VXLAN_PORT)

# ---------------------------------------------------------------------------
# Topology (see examples/README.md)
# ---------------------------------------------------------------------------

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
GATEWAY_IP = "10.10.100.1"
GATEWAY_MAC = "02:00:0a:0a:64:01"
UNDERLAY = ipaddress.ip_network("10.10.100.0/24")
CLUSTER_CIDR = ipaddress.ip_network("10.244.0.0/16")
VNI = 1
# Linux picks the VXLAN source port from the inner flow hash within
# net.ipv4.ip_local_port_range.
VXLAN_SPORT_MIN, VXLAN_SPORT_MAX = 32768, 60999

Node = namedtuple("Node", "name ip subnet uplink_mac pods_mac vtep_mac "
                          "host_mac host_peer_mac pods_gateway vtep_ip")


def _node(name, ip, subnet):
    last = int(ip.split(".")[3])
    third = int(subnet.split(".")[2])
    net = ipaddress.ip_network(subnet + "/24")
    return Node(
        name=name, ip=ip, subnet=net,
        uplink_mac="02:00:0a:0a:64:%02x" % last,
        pods_mac="02:00:0a:f4:%02x:01" % third,
        vtep_mac="0e:00:00:00:00:%02x" % last,
        host_mac="02:00:00:00:00:%02x" % last,
        host_peer_mac="02:00:00:00:01:%02x" % last,
        pods_gateway=str(net.network_address + 1),   # cni0's address (.1)
        vtep_ip=str(net.network_address),            # flannel.1's address (.0)
    )


NODE_226 = _node("node-226", "10.10.100.226", "10.244.24.0")
NODE_227 = _node("node-227", "10.10.100.227", "10.244.25.0")
NODE_228 = _node("node-228", "10.10.100.228", "10.244.26.0")
NODES = {n.name: n for n in (NODE_226, NODE_227, NODE_228)}


def pod_mac(ip):
    """The MAC the CNI bridge plugin gives a pod: 0a:58 + the IPv4 bytes."""
    return "0a:58:" + ":".join("%02x" % int(o) for o in ip.split("."))


Pod = namedtuple("Pod", "name ip mac node")
POD_SSHD = Pod("tzp-pytorch-2-6c9d7b8f5d-8xkqz", "10.244.25.149",
               pod_mac("10.244.25.149"), "node-227")
POD_TOOLBOX = Pod("toolbox", "10.244.24.10", pod_mac("10.244.24.10"), "node-226")
POD_COREDNS = Pod("coredns-5dd5756b68-7xq2n", "10.244.24.53",
                  pod_mac("10.244.24.53"), "node-226")
POD_WEB_1 = Pod("web-1", "10.244.26.20", pod_mac("10.244.26.20"), "node-228")
POD_WEB_2 = Pod("web-2", "10.244.25.30", pod_mac("10.244.25.30"), "node-227")
PODS = (POD_SSHD, POD_TOOLBOX, POD_COREDNS, POD_WEB_1, POD_WEB_2)

# Services: (cluster IP, port, protocol, node port or 0).
SVC_SSH = ("10.111.123.177", 22, "TCP", 8014)       # ai/tzp-pytorch-2
SVC_KUBERNETES = ("10.96.0.1", 443, "TCP", 0)       # -> 10.10.100.226:6443
SVC_WEB = ("10.96.100.10", 80, "TCP", 0)            # -> :8080 on web-1/web-2
SVC_DNS_UDP = ("10.96.0.10", 53, "UDP", 0)          # -> 10.244.24.53:53
SVC_DNS_TCP = ("10.96.0.10", 53, "TCP", 0)
NODE_PORT = 8014
SSH_PORT = 22

# The scp client (behind the OpenVPN server, routed in through the gateway).
CLIENT_IP = "172.100.0.6"
CLIENT_PORT = 51234
CLIENT_TTL = 62            # 64 minus the VPN server and the gateway

# Fixed TCP state so replies can be derived and files stay identical.
CLIENT_ISN = 0x5A17C3E1
CLIENT_TSVAL = 1736413201
POD_ISN = 0x2C8B4F10
POD_TSVAL = 2893001234
CLIENT_BANNER = b"SSH-2.0-OpenSSH_9.2p1\r\n"
POD_BANNER = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n"
FLANNEL_MTU = 1450         # pods' MTU (uplink 1500 - 50)

# Base timestamps of the capture files (seconds; 1 ms between packets).
T_NODEPORT = Decimal("1000.0")
T_POD_TO_POD = Decimal("1100.0")
T_POD_TO_INTERNET = Decimal("1200.0")
T_MALFORMED = Decimal("2000.0")
T_STEP = Decimal("0.001")


def node_for_ip(ip):
    """The node whose flannel subnet holds `ip`, or whose node IP it is."""
    addr = ipaddress.ip_address(ip)
    for n in NODES.values():
        if addr in n.subnet or ip == n.ip:
            return n
    return None


def _stamp(pkts, t0, step=T_STEP):
    for i, p in enumerate(pkts):
        p.time = t0 + i * step
    return pkts


def _linux_syn_options(tsval, mss=1460, wscale=7):
    return [("MSS", mss), ("SAckOK", b""), ("Timestamp", (tsval, 0)),
            ("NOP", None), ("WScale", wscale)]


def _ts_options(tsval, tsecr):
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))]


def _pad60(pkt):
    """Frames received from a real wire are padded to the 60-byte minimum."""
    short = 60 - len(pkt)
    return pkt / Padding(load=b"\x00" * short) if short > 0 else pkt


def arp_request(src_mac, src_ip, target_ip, pad=False):
    p = (Ether(src=src_mac, dst=BROADCAST_MAC)
         / ARP(op=1, hwsrc=src_mac, psrc=src_ip,
               hwdst="00:00:00:00:00:00", pdst=target_ip))
    return _pad60(p) if pad else p

# ---------------------------------------------------------------------------
# a) scp client -> NodePort 10.10.100.228:8014, as node-228's uplink sees it
# ---------------------------------------------------------------------------


def _client_ip(ip_id, ttl=CLIENT_TTL, **kw):
    return IP(src=CLIENT_IP, dst=NODE_228.ip, ttl=ttl, id=ip_id, flags="DF",
              **kw)


def _from_gateway():
    return Ether(src=GATEWAY_MAC, dst=NODE_228.uplink_mac)


def client_syn(ttl=CLIENT_TTL, ip_id=0x6A21, **ip_kw):
    return (_from_gateway() / _client_ip(ip_id, ttl=ttl, **ip_kw)
            / TCP(sport=CLIENT_PORT, dport=NODE_PORT, flags="S",
                  seq=CLIENT_ISN, window=64240,
                  options=_linux_syn_options(CLIENT_TSVAL)))


def client_ack(pod_isn=POD_ISN, pod_tsval=POD_TSVAL):
    return (_from_gateway() / _client_ip(0x6A22)
            / TCP(sport=CLIENT_PORT, dport=NODE_PORT, flags="A",
                  seq=CLIENT_ISN + 1, ack=pod_isn + 1, window=502,
                  options=_ts_options(CLIENT_TSVAL + 1, pod_tsval)))


def client_banner(pod_isn=POD_ISN, pod_tsval=POD_TSVAL):
    return (_from_gateway() / _client_ip(0x6A23)
            / TCP(sport=CLIENT_PORT, dport=NODE_PORT, flags="PA",
                  seq=CLIENT_ISN + 1, ack=pod_isn + 1, window=502,
                  options=_ts_options(CLIENT_TSVAL + 2, pod_tsval))
            / Raw(load=CLIENT_BANNER))


def gateway_arp_for_node_228():
    return arp_request(GATEWAY_MAC, GATEWAY_IP, NODE_228.ip, pad=True)


def nodeport_forward_packets():
    """ARP who-has 10.10.100.228, then SYN, ACK, data to :8014."""
    return _stamp([gateway_arp_for_node_228(), client_syn(), client_ack(),
                   client_banner()], T_NODEPORT)

# ---------------------------------------------------------------------------
# VXLAN framing between nodes, and a reference model of the kernel
# ---------------------------------------------------------------------------


def vxlan_sport(inner_ip_pkt):
    """Deterministic stand-in for Linux's flow-hash source port."""
    ip = inner_ip_pkt[IP]
    l4 = ip.payload
    sport = getattr(l4, "sport", 0) or 0
    dport = getattr(l4, "dport", 0) or 0
    key = struct.pack("!4s4sBHH", ipaddress.ip_address(ip.src).packed,
                      ipaddress.ip_address(ip.dst).packed, ip.proto,
                      sport, dport)
    span = VXLAN_SPORT_MAX - VXLAN_SPORT_MIN + 1
    return VXLAN_SPORT_MIN + zlib.crc32(key) % span


def vxlan_frame(src_node, dst_node, inner_ip_pkt, *, outer_ip_id=0x4C21,
                sport=None, vni=VNI, outer_src_ip=None, outer_src_mac=None,
                udp_chksum=0):
    """What flannel.1 on src_node sends to dst_node for an inner IP packet:
    outer Ether/IP(TTL 64, no DF)/UDP(->8472, checksum 0)/VXLAN(I, VNI)/
    inner Ether(VtepMAC -> VtepMAC)/inner_ip_pkt."""
    if sport is None:
        sport = vxlan_sport(inner_ip_pkt)
    return (Ether(src=outer_src_mac or src_node.uplink_mac,
                  dst=dst_node.uplink_mac)
            / IP(src=outer_src_ip or src_node.ip, dst=dst_node.ip, ttl=64,
                 id=outer_ip_id, flags=0)
            / UDP(sport=sport, dport=VXLAN_PORT, chksum=udp_chksum)
            / VXLAN(flags=0x08, vni=vni)
            / Ether(src=src_node.vtep_mac, dst=dst_node.vtep_mac)
            / inner_ip_pkt)


def split_vxlan(pkt):
    """(outer Ether ... VXLAN header only, inner Ether). ValueError if not."""
    pkt = as_ether(pkt)
    if VXLAN not in pkt or UDP not in pkt or pkt[UDP].dport != VXLAN_PORT:
        raise ValueError("not a VXLAN packet to port %d: %s"
                         % (VXLAN_PORT, pkt.summary()))
    inner = Ether(bytes(pkt[VXLAN].payload))
    outer = pkt.copy()
    outer[VXLAN].remove_payload()
    return outer, inner


def as_ether(pkt):
    """A dissected Ether packet (all computed fields filled in) from bytes or
    a scapy packet; keeps the packet's time."""
    if isinstance(pkt, (bytes, bytearray)):
        out = Ether(bytes(pkt))
        out.time = Decimal(0)        # bytes carry no time: stay deterministic
        return out
    if not isinstance(pkt, Ether):
        raise ValueError("expected an Ethernet frame, got %r" % (pkt,))
    out = Ether(bytes(pkt))
    out.time = _decimal_time(pkt.time)
    return out


def _decimal_time(t):
    return t if isinstance(t, Decimal) else Decimal(repr(float(t)))


def linux_forward_nodeport(client_pkt, snat_port, snat_ip=NODE_228.vtep_ip):
    """Reference model: what node-228 running kube-proxy (iptables) and
    flannel sends out of its uplink for a client packet to the NodePort:
    DNAT to the pod, MASQUERADE to flannel.1's address (10.244.26.0, the
    source address of the route to 10.244.25.0/24), TTL - 1, VXLAN to
    node-227. `snat_port` is what --random-fully picked."""
    c = as_ether(client_pkt)
    ip, tcp = c[IP], c[TCP]
    inner = IP(src=snat_ip, dst=POD_SSHD.ip, ttl=ip.ttl - 1, id=ip.id,
               flags=ip.flags, tos=ip.tos) / TCP(bytes(tcp))
    inner[TCP].sport = snat_port
    inner[TCP].dport = SSH_PORT
    inner[TCP].chksum = None
    out = vxlan_frame(NODE_228, NODE_227, inner)
    out.time = c.time + Decimal("0.000020")
    return out

# ---------------------------------------------------------------------------
# b) the pod's answer, as node-227 sends it back
# ---------------------------------------------------------------------------


def _tcp_option(tcp, name):
    for opt in tcp.options:
        if opt[0] == name:
            return opt[1]
    return None


def reply_from_pod(vxlan_out_pkt, payload=None, *, pod_isn=POD_ISN,
                   tsval=POD_TSVAL, ip_id=None, outer_ip_id=0x5E07,
                   sport=None, time=None):
    """Build what node-227 sends back for a packet node-228 sent toward a
    pod on node-227 (normally VXLAN to 10.244.25.149:22).

    The pod answers the inner TCP segment:
      - SYN        -> SYN-ACK: seq `pod_isn`, ack seq+1, MSS 1410 (MTU 1450)
                      and the SYN's SACK/timestamp/window-scale options echoed
      - otherwise  -> seq = the segment's ack, ack = seq + its length; carries
                      `payload` (default: the sshd banner; b"" = a pure ACK)
    from pod ip:port to whatever source address/port node-228 chose, TTL 63
    (64, routed once on node-227: cni0 -> flannel.1).

    Framing follows node-227's routing table for that destination:
      - in another node's flannel subnet (e.g. 10.244.26.0, flannel.1 of
        node-228): VXLAN, outer 02:00:0a:0a:64:e3 -> that node's uplink MAC,
        10.10.100.227 -> its node IP, TTL 64, UDP sport 32768..60999 from the
        flow hash (or `sport`), dport 8472, checksum 0, VNI 1, inner Ether
        0e:..:e3 -> its VtepMAC;
      - a node IP or the gateway on the underlay: a plain routed frame on the
        uplink (no encapsulation, as the kernel would do);
      - anything else: via the gateway.
    Raises ValueError for input it cannot answer.
    """
    pkt = as_ether(vxlan_out_pkt)
    if VXLAN in pkt:
        _, inner = split_vxlan(pkt)
    else:
        inner = pkt
    if IP not in inner or TCP not in inner:
        raise ValueError("no inner TCP/IPv4 segment: %s" % inner.summary())
    ip, tcp = inner[IP], inner[TCP]
    pod_node = node_for_ip(ip.dst)
    if pod_node is None or ipaddress.ip_address(ip.dst) not in pod_node.subnet:
        raise ValueError("inner destination %s is not a pod" % ip.dst)

    in_ts = _tcp_option(tcp, "Timestamp")
    in_len = ip.len - ip.ihl * 4 - tcp.dataofs * 4   # excludes padding
    if tcp.flags.S and not tcp.flags.A:
        opts = [("MSS", FLANNEL_MTU - 40)]
        if _tcp_option(tcp, "SAckOK") is not None:
            opts.append(("SAckOK", b""))
        if in_ts is not None:
            opts.append(("Timestamp", (tsval, in_ts[0])))
        if _tcp_option(tcp, "WScale") is not None:
            opts += [("NOP", None), ("WScale", 7)]
        seg = TCP(sport=tcp.dport, dport=tcp.sport, flags="SA", seq=pod_isn,
                  ack=(tcp.seq + 1) & 0xFFFFFFFF, window=64308, options=opts)
        body = b""
        default_id = 0
    else:
        body = POD_BANNER if payload is None else payload
        consumed = in_len + (1 if tcp.flags.F else 0)
        opts = _ts_options(tsval + 1, in_ts[0]) if in_ts is not None else []
        seg = TCP(sport=tcp.dport, dport=tcp.sport,
                  flags="PA" if body else "A", seq=tcp.ack,
                  ack=(tcp.seq + consumed) & 0xFFFFFFFF, window=502,
                  options=opts)
        default_id = 0x9C42
    reply_ip = IP(src=ip.dst, dst=ip.src, ttl=63, flags="DF",
                  id=default_id if ip_id is None else ip_id) / seg
    if body:
        reply_ip = reply_ip / Raw(load=body)

    peer = node_for_ip(ip.src)
    dst = ipaddress.ip_address(ip.src)
    if peer is not None and dst in peer.subnet:
        if peer is pod_node:
            raise ValueError("%s is local to %s: nothing leaves its uplink"
                             % (ip.src, pod_node.name))
        out = vxlan_frame(pod_node, peer, reply_ip, outer_ip_id=outer_ip_id,
                          sport=sport)
    elif peer is not None:                      # a node IP on the underlay
        out = Ether(src=pod_node.uplink_mac, dst=peer.uplink_mac) / reply_ip
    elif ip.src == GATEWAY_IP or dst not in UNDERLAY:
        out = Ether(src=pod_node.uplink_mac, dst=GATEWAY_MAC) / reply_ip
    else:
        raise ValueError("no neighbor for %s on the underlay" % ip.src)

    if time is None:
        time = pkt.time + Decimal("0.000250")
    out.time = time
    return out

# ---------------------------------------------------------------------------
# c) node-228, pods port: web-1 to web-2 directly and through the ClusterIP
# ---------------------------------------------------------------------------


def _from_pod(pod):
    return Ether(src=pod.mac, dst=NODES[pod.node].pods_mac)


def _pod_syn(pod, dst_ip, dport, sport, ip_id, tsval):
    return (_from_pod(pod)
            / IP(src=pod.ip, dst=dst_ip, ttl=64, id=ip_id, flags="DF")
            / TCP(sport=sport, dport=dport, flags="S", seq=0x1D2E3F40 + sport,
                  window=64860, options=_linux_syn_options(tsval, mss=1410)))


def web1_arp_for_gateway():
    # From a veth: no padding to 60 bytes.
    return arp_request(POD_WEB_1.mac, POD_WEB_1.ip, NODE_228.pods_gateway)


def web1_to_web2_syn():
    return _pod_syn(POD_WEB_1, POD_WEB_2.ip, 8080, 40112, 0x1201, 401000)


def web1_to_web_service_syn():
    return _pod_syn(POD_WEB_1, SVC_WEB[0], SVC_WEB[1], 40114, 0x1202, 401001)


def pod_to_pod_packets():
    return _stamp([web1_arp_for_gateway(), web1_to_web2_syn(),
                   web1_to_web_service_syn()], T_POD_TO_POD)


def vxlan_web2_to_web1_syn(src_ip=None, vni=VNI, outer_src_ip=None,
                           outer_src_mac=None):
    """A pod-to-pod SYN arriving at node-228's uplink from node-227."""
    syn = _pod_syn(POD_WEB_2, POD_WEB_1.ip, 8080, 45200, 0x2301, 502000)
    return vxlan_frame(NODE_227, NODE_228, syn[IP], vni=vni,
                       outer_src_ip=outer_src_ip, outer_src_mac=outer_src_mac)

# ---------------------------------------------------------------------------
# d) node-226, pods port: toolbox to the internet, and a DNS query
# ---------------------------------------------------------------------------


def toolbox_to_internet_syn():
    return _pod_syn(POD_TOOLBOX, "93.184.216.34", 443, 43512, 0x7A01, 903000)


def toolbox_dns_query():
    return (_from_pod(POD_TOOLBOX)
            / IP(src=POD_TOOLBOX.ip, dst=SVC_DNS_UDP[0], ttl=64, id=0x7A02,
                 flags="DF")
            / UDP(sport=41234, dport=53)
            / DNS(id=0x3B7A, rd=1, qd=DNSQR(qname="example.com.", qtype="A")))


def pod_to_internet_packets():
    return _stamp([toolbox_to_internet_syn(), toolbox_dns_query()],
                  T_POD_TO_INTERNET)

# ---------------------------------------------------------------------------
# e) malformed frames for node-228's uplink
# ---------------------------------------------------------------------------


def _csum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _patch_ipv4(frame, *, ihl=None, total_length=None, checksum=None,
                fix_checksum=True):
    """Rewrite fields of the IPv4 header at offset 14, then (unless told
    otherwise) make the header checksum right again over IHL*4 bytes (or
    over what the frame holds, zero-extended)."""
    b = bytearray(frame)
    if ihl is not None:
        b[14] = (b[14] & 0xF0) | ihl
    if total_length is not None:
        struct.pack_into("!H", b, 16, total_length)
    if checksum is not None:
        struct.pack_into("!H", b, 24, checksum)
    elif fix_checksum:
        hlen = max((b[14] & 0x0F) * 4, 20)
        struct.pack_into("!H", b, 24, 0)
        hdr = bytes(b[14:14 + hlen]).ljust(hlen, b"\x00")
        struct.pack_into("!H", b, 24, _csum(hdr))
    return bytes(b)


def _syn_bytes(**kw):
    return bytes(client_syn(**kw))


def _m_eth_truncated():
    return _syn_bytes()[:10]


def _m_ipv4_truncated():
    return _syn_bytes()[:14 + 12]


def _m_ihl_lt_5():
    return _patch_ipv4(_syn_bytes(), ihl=4)


def _m_total_length_past_frame():
    f = _syn_bytes()
    return _patch_ipv4(f, total_length=len(f) - 14 + 100)


def _m_total_length_lt_header():
    return _patch_ipv4(_syn_bytes(), total_length=16)


def _m_bad_ip_checksum():
    f = _syn_bytes()
    good = struct.unpack_from("!H", f, 24)[0]
    return _patch_ipv4(f, checksum=good ^ 0x0100)


def _m_tcp_doff_lt_5():
    p = client_syn()
    p[TCP].options = []
    p[TCP].dataofs = 4
    return bytes(p)          # scapy computes the checksum with dataofs 4


def _m_tcp_header_past_end():
    p = client_syn()
    tcp = bytes(p[TCP])[:12]
    p[IP].remove_payload()
    p[IP].proto = 6
    return bytes(p / Raw(load=tcp))


def _m_tcp_doff_past_end():
    p = client_syn()
    p[TCP].options = []
    p[TCP].dataofs = 15       # 60-byte header claimed, 20 present
    return bytes(p)


def _vxlan_udp_from_227(udp_payload, udp_len=None):
    """IPv4/UDP from node-227 to node-228:8472 with a given payload."""
    udp = struct.pack("!HHHH", 41000, VXLAN_PORT,
                      udp_len if udp_len is not None else 8 + len(udp_payload),
                      0) + udp_payload
    return bytes(Ether(src=NODE_227.uplink_mac, dst=NODE_228.uplink_mac)
                 / IP(src=NODE_227.ip, dst=NODE_228.ip, ttl=64, id=0x4C30,
                      proto=17)
                 / Raw(load=udp))


def _vxlan_payload():
    return bytes(vxlan_web2_to_web1_syn()[VXLAN])


def _m_udp_len_lt_8():
    return _vxlan_udp_from_227(_vxlan_payload(), udp_len=4)


def _m_udp_len_past_payload():
    pl = _vxlan_payload()
    return _vxlan_udp_from_227(pl, udp_len=8 + len(pl) + 16)


def _m_vxlan_inner_truncated():
    return _vxlan_udp_from_227(_vxlan_payload()[:8 + 10])


def _m_vxlan_header_truncated():
    return _vxlan_udp_from_227(_vxlan_payload()[:4])


def _m_vxlan_wrong_vni():
    return bytes(vxlan_web2_to_web1_syn(vni=2))


def _m_vxlan_unknown_peer():
    return bytes(vxlan_web2_to_web1_syn(outer_src_ip="10.10.100.99",
                                        outer_src_mac="02:00:0a:0a:64:63"))


def _fragment(first):
    if first:
        p = client_syn(ip_id=0x6A31)
        p[IP].flags = "MF"
        return p
    # A later piece: offset 1480 (185 * 8), MF clear, TCP payload bytes only.
    return (_from_gateway()
            / IP(src=CLIENT_IP, dst=NODE_228.ip, ttl=CLIENT_TTL, id=0x6A31,
                 flags=0, frag=185, proto=6)
            / Raw(load=bytes(range(40))))


def _m_fragment_first():
    return bytes(_fragment(first=True))


def _m_fragment_later():
    return bytes(_fragment(first=False))


def _m_ttl_1():
    return _syn_bytes(ttl=1)


def _m_ipv6():
    return bytes(Ether(src=GATEWAY_MAC, dst=NODE_228.uplink_mac)
                 / IPv6(src="2001:db8:64::6", dst="2001:db8:64::e4", hlim=62)
                 / TCP(sport=CLIENT_PORT, dport=NODE_PORT, flags="S",
                       seq=CLIENT_ISN, window=64800,
                       options=_linux_syn_options(CLIENT_TSVAL, mss=1440)))


def _m_arp_truncated():
    return bytes(arp_request(GATEWAY_MAC, GATEWAY_IP, NODE_228.ip))[:14 + 20]


def _m_ip_options_past_end():
    # IHL 8 (a 32-byte header: 12 bytes of options) but the frame ends after
    # 4 bytes of options.
    p = (_from_gateway()
         / IP(src=CLIENT_IP, dst=NODE_228.ip, ttl=CLIENT_TTL, id=0x6A41,
              flags="DF", options=b"\x01\x01\x01\x01")
         / TCP(sport=CLIENT_PORT, dport=NODE_PORT, flags="S", seq=CLIENT_ISN))
    f = bytes(p)[:14 + 24]
    return _patch_ipv4(f, ihl=8, total_length=32 + 20)


Malformed = namedtuple("Malformed", "description build reason")

# (what is wrong, builder returning the frame's bytes, expected drop reason)
MALFORMED = (
    Malformed("Ethernet frame truncated to 10 bytes",
              _m_eth_truncated, "eth_truncated"),
    Malformed("IPv4 ethertype, only 12 bytes of IPv4 header",
              _m_ipv4_truncated, "ipv4_truncated"),
    Malformed("IPv4 IHL 4 (< 5)",
              _m_ihl_lt_5, "ipv4_bad_ihl"),
    Malformed("IPv4 total length 100 bytes past the end of the frame",
              _m_total_length_past_frame, "ipv4_bad_total_length"),
    Malformed("IPv4 total length 16 (< IHL*4 = 20)",
              _m_total_length_lt_header, "ipv4_bad_total_length"),
    Malformed("IPv4 header checksum wrong (one bit flipped)",
              _m_bad_ip_checksum, "ipv4_bad_checksum"),
    Malformed("TCP data offset 4 (< 5) to the NodePort",
              _m_tcp_doff_lt_5, "tcp_truncated"),
    Malformed("TCP header cut after 12 bytes (IPv4 lengths consistent)",
              _m_tcp_header_past_end, "tcp_truncated"),
    Malformed("TCP data offset 15 (60 bytes) with only 20 bytes of segment",
              _m_tcp_doff_past_end, "tcp_truncated"),
    Malformed("UDP length 4 (< 8), node-227 -> :8472",
              _m_udp_len_lt_8, "udp_bad_length"),
    Malformed("UDP length 16 bytes past the IPv4 payload, node-227 -> :8472",
              _m_udp_len_past_payload, "udp_bad_length"),
    Malformed("VXLAN from node-227 with the inner frame cut to 10 bytes",
              _m_vxlan_inner_truncated, "vxlan_truncated"),
    Malformed("VXLAN from node-227 with only 4 bytes of VXLAN header",
              _m_vxlan_header_truncated, "vxlan_truncated"),
    Malformed("VXLAN from node-227 with VNI 2 (flannel uses 1)",
              _m_vxlan_wrong_vni, "vxlan_bad_vni"),
    Malformed("VXLAN from 10.10.100.99, not the PublicIP of any lease",
              _m_vxlan_unknown_peer, "vxlan_unknown_peer"),
    Malformed("IPv4 first fragment (MF set, offset 0) to the NodePort",
              _m_fragment_first, "ipv4_fragment"),
    Malformed("IPv4 later fragment (offset 1480, MF clear) to the NodePort",
              _m_fragment_later, "ipv4_fragment"),
    Malformed("TTL 1 SYN to the NodePort (forwarded to a pod on node-227)",
              _m_ttl_1, "ttl_exceeded"),
    Malformed("IPv6 TCP SYN (ethertype 0x86dd)",
              _m_ipv6, "unsupported_ethertype"),
    Malformed("ARP request cut to 20 of 28 bytes",
              _m_arp_truncated, "arp_truncated"),
    Malformed("IPv4 IHL 8 (options) but the frame ends 4 bytes into them",
              _m_ip_options_past_end, "ipv4_truncated"),
)

DROP_REASONS = (
    "eth_truncated", "ipv4_truncated", "ipv4_bad_ihl", "ipv4_bad_total_length",
    "ipv4_bad_checksum", "ipv4_fragment", "tcp_truncated", "udp_bad_length",
    "vxlan_truncated", "vxlan_bad_vni", "vxlan_unknown_peer", "ttl_exceeded",
    "unsupported_ethertype", "arp_truncated",
)


def malformed_packets():
    """The MALFORMED table as timestamped scapy packets, in table order."""
    pkts = []
    for m in MALFORMED:
        pkts.append(frame_packet(m.build()))
    return _stamp(pkts, T_MALFORMED)


def frame_packet(data):
    """A scapy packet whose bytes are exactly `data`: Ether when scapy can
    dissect it and round-trip it unchanged, otherwise Raw (e.g. a 10-byte
    frame). Either is written to an Ethernet pcap verbatim."""
    try:
        p = Ether(data)
        if bytes(p) == data:
            return p
    except Exception:
        pass
    return Raw(load=data)


def malformed_listing():
    lines = ["# malformed.pcap: frames for node-228's uplink, one defect each.",
             "# index<TAB>expected drop reason<TAB>what is wrong"]
    for i, m in enumerate(MALFORMED):
        lines.append("%d\t%s\t%s" % (i, m.reason, m.description))
    return "\n".join(lines) + "\n"

# ---------------------------------------------------------------------------
# Consistency with the generated cluster files
# ---------------------------------------------------------------------------


def check_cluster_file(path):
    """Raise AssertionError if a generated cluster file disagrees with the
    constants above (MACs, IPs, leases)."""
    with open(path) as f:
        doc = json.load(f)
    node = NODES[doc["node"]["name"]]
    n = doc["node"]
    problems = []

    def expect(what, got, want):
        if got != want:
            problems.append("%s: file has %r, journey_packets has %r"
                            % (what, got, want))

    expect("nodeIP", n["nodeIP"], node.ip)
    expect("gateway", n.get("gateway"), GATEWAY_IP)
    expect("ports.uplink.mac", n["ports"]["uplink"]["mac"], node.uplink_mac)
    expect("ports.pods.mac", n["ports"]["pods"]["mac"], node.pods_mac)
    expect("ports.host.mac", n["ports"]["host"]["mac"], node.host_mac)
    expect("ports.host.peerMAC", n["ports"]["host"]["peerMAC"],
           node.host_peer_mac)
    neigh = {(e["port"], e["ip"]): e["mac"] for e in n.get("neighbors", [])}
    expect("gateway neighbor", neigh.get(("uplink", GATEWAY_IP)), GATEWAY_MAC)
    for other in NODES.values():
        if other is not node:
            expect("neighbor %s" % other.ip, neigh.get(("uplink", other.ip)),
                   other.uplink_mac)
    for pod in PODS:
        if pod.node == node.name:
            expect("pod neighbor %s" % pod.ip, neigh.get(("pods", pod.ip)),
                   pod.mac)
    for kv in doc["etcd"]["kvs"]:
        key = base64.b64decode(kv["key"]).decode()
        if "/subnets/" not in key:
            continue
        value = json.loads(base64.b64decode(kv["value"]))
        owner = [x for x in NODES.values() if x.ip == value["PublicIP"]]
        if len(owner) != 1:
            problems.append("lease %s: unknown PublicIP" % key)
            continue
        expect("lease %s subnet" % key, key.rsplit("/", 1)[1],
               "%s-%d" % (owner[0].subnet.network_address,
                          owner[0].subnet.prefixlen))
        expect("lease %s VtepMAC" % key, value["BackendData"]["VtepMAC"],
               owner[0].vtep_mac)
        expect("lease %s VNI" % key, value["BackendData"]["VNI"], VNI)
    if problems:
        raise AssertionError("%s disagrees with journey_packets:\n  %s"
                             % (path, "\n  ".join(problems)))

# ---------------------------------------------------------------------------
# f) the pod's own frames on its veth (before its node routes them)
# ---------------------------------------------------------------------------


def pod_for_ip(ip):
    """The Pod of PODS with address `ip`, or None."""
    for pod in PODS:
        if pod.ip == ip:
            return pod
    return None


def pod_reply_frame(delivered_pkt, payload=None, *, seq=None, pod_isn=POD_ISN,
                    tsval=POD_TSVAL, ip_id=None, time=None):
    """What a pod sends on its veth in answer to a TCP segment its node
    delivered to it (a plain frame on the pods port, to the pod's MAC).

    The TCP answer is reply_from_pod()'s (SYN -> SYN-ACK with ISN `pod_isn`,
    otherwise seq = the segment's ack, ack = its seq + length, carrying
    `payload`, default the sshd banner), but framed as the pod emits it:
    Ether pod MAC -> its node's pods MAC (cni0), TTL 64 (not yet routed).
    `seq` overrides the sequence number (e.g. after the pod already sent
    data the segment has not acknowledged yet)."""
    pkt = as_ether(delivered_pkt)
    if IP not in pkt or TCP not in pkt or VXLAN in pkt:
        raise ValueError("expected a plain TCP/IPv4 frame: %s" % pkt.summary())
    pod = pod_for_ip(pkt[IP].dst)
    if pod is None:
        raise ValueError("%s is not a known pod" % pkt[IP].dst)
    framed = reply_from_pod(pkt, payload, pod_isn=pod_isn, tsval=tsval,
                            ip_id=ip_id, time=time)
    ip = split_vxlan(framed)[1][IP] if VXLAN in framed else framed[IP]
    ip = IP(bytes(ip))
    ip.ttl = 64
    ip.chksum = None
    if seq is not None:
        ip[TCP].seq = seq & 0xFFFFFFFF
    ip[TCP].chksum = None
    out = as_ether(Ether(src=pod.mac, dst=NODES[pod.node].pods_mac) / ip)
    out.time = framed.time
    return out


def _tcp_payload_len(pkt):
    ip, tcp = pkt[IP], pkt[TCP]
    return ip.len - ip.ihl * 4 - tcp.dataofs * 4


def sshd_replies(delivered_pkts, t0=None, step=T_STEP):
    """The sshd pod's side of the conversation, for the segments its node
    delivered to it (plain frames to the pod's MAC, in order):
      SYN                    -> SYN-ACK (ISN POD_ISN, MSS 1410)
      first pure ACK         -> the banner POD_BANNER (seq POD_ISN + 1)
      a segment with data    -> a pure ACK of it (seq after the banner if sent)
    Frames from the pod's MAC to its node's pods MAC, TTL 64. Timestamps:
    `t0` + i * `step` if given, otherwise 250 us after each segment."""
    out = []
    banner_sent = False
    for p in delivered_pkts:
        p = as_ether(p) if not isinstance(p, Ether) else p
        tcp = p[TCP]
        if tcp.flags.S and not tcp.flags.A:
            out.append(pod_reply_frame(p))
        elif _tcp_payload_len(p) == 0 and not banner_sent:
            out.append(pod_reply_frame(p, payload=POD_BANNER))
            banner_sent = True
        elif _tcp_payload_len(p) > 0:
            sent = len(POD_BANNER) if banner_sent else 0
            out.append(pod_reply_frame(p, payload=b"",
                                       seq=tcp.ack + sent,
                                       tsval=POD_TSVAL + 1))
    if t0 is not None:
        _stamp(out, Decimal(t0), step)
    return out
