"""Validators for packets Sluice emits (scapy based).

Library use (put this directory on sys.path):

    import check_output as co
    pkts = co.read_pcap("out.pcap")
    co.assert_all_checksums_valid(pkts)
    outer, inner = co.decode_vxlan(pkts[0])
    co.assert_vxlan(pkts[0], src_ip="10.10.100.228", dst_ip="10.10.100.227")
    co.assert_tcp(inner, dst="10.244.25.149", dport=22, flags="S")

Every assertion helper raises AssertionError naming the packet (index and
summary when given) and each field that differs: expected vs got.

Manual use:

    /usr/bin/python3 tests/pcap/check_output.py FILE.pcap [...]

prints a summary per packet, decodes VXLAN and checks all checksums.
"""

import struct
import sys

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
import scapy.layers.dns  # noqa: F401 - dissects DNS in summaries
from scapy.packet import NoPayload, Packet, Raw, bind_layers
from scapy.utils import rdpcap

VXLAN_PORT = 8472
bind_layers(UDP, VXLAN, dport=VXLAN_PORT)
VXLAN_PORTS = (VXLAN_PORT, 4789)


def _label(pkt, index=None):
    where = "packet %d" % index if index is not None else "packet"
    try:
        return "%s (%s)" % (where, pkt.summary())
    except Exception:  # pragma: no cover - summary of odd packets
        return where


def read_pcap(path):
    """Packets of a pcap file as scapy Ether packets (with .time)."""
    return list(rdpcap(path))


def _as_ether(pkt):
    """Re-dissects bytes or a scapy packet, so that fields scapy computes at
    build time (lengths, checksums) hold their real values. Keeps .time."""
    data = bytes(pkt)
    try:
        out = Ether(data)
    except Exception:        # too short for scapy's Ether: keep the bytes
        out = Raw(load=data)
    if isinstance(pkt, Packet):
        out.time = pkt.time
    return out

# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def internet_checksum(data):
    """RFC 1071 ones' complement sum, folded and complemented."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip_layers(pkt):
    """Every IP layer (outer, then inner ones behind VXLAN), skipping the
    IP headers quoted inside ICMP errors (scapy decodes those as IPerror)."""
    out = []
    layer = pkt
    while not isinstance(layer, NoPayload):
        if type(layer) is IP:
            out.append(layer)
        layer = layer.payload
    return out


def _raw_l4_checksum_ok(ip, l4_bytes, proto):
    """Checks a TCP/UDP checksum over the pseudo-header from raw bytes."""
    pseudo = (struct.pack("!4s4sBBH", _ip_bytes(ip.src), _ip_bytes(ip.dst), 0,
                          proto, len(l4_bytes)))
    return internet_checksum(pseudo + l4_bytes) == 0


def _ip_bytes(dotted):
    return bytes(int(x) for x in dotted.split("."))


def checksum_problems(pkt, allow_zero_udp=False):
    """List of strings, one per wrong checksum in `pkt` (empty: all good).

    Each IPv4 header, TCP, UDP and ICMP checksum is checked twice,
    independently of whoever built the packet: from the raw bytes (the
    RFC 1071 sum over header, or pseudo-header and segment, must fold to
    zero), and by deleting the field and letting scapy rebuild it. UDP
    checksum 0 ("none") is accepted on VXLAN's outer UDP (ports 8472/4789),
    and on every UDP when `allow_zero_udp`. Fragments (MF set or offset > 0)
    get their IPv4 header checked only. Headers too short or lengths that do
    not fit the frame are reported as problems too (nothing to check).
    """
    pkt = _as_ether(pkt)
    problems = []
    for ip in _ip_layers(pkt):
        raw_ip = bytes(ip)              # header, payload and any padding
        hlen = (raw_ip[0] & 0x0F) * 4 if raw_ip else 0
        where = "IPv4"
        if len(raw_ip) >= 20:
            where = "IPv4 %s -> %s" % (ip.src, ip.dst)
        if len(raw_ip) < 20 or hlen < 20 or hlen > len(raw_ip):
            problems.append("%s: header malformed or truncated (%d bytes, "
                            "IHL*4 = %d)" % (where, len(raw_ip), hlen))
            continue
        if internet_checksum(raw_ip[:hlen]) != 0:
            problems.append("%s: header checksum 0x%04x is wrong"
                            % (where, ip.chksum))
        else:
            rebuilt = ip.copy()
            rebuilt.chksum = None
            want = IP(bytes(rebuilt)).chksum
            if want != ip.chksum:
                problems.append("%s: header checksum 0x%04x, scapy computes "
                                "0x%04x" % (where, ip.chksum, want))
        total = struct.unpack("!H", raw_ip[2:4])[0]
        if total < hlen or total > len(raw_ip):
            problems.append("%s: total length %d does not fit (IHL*4 %d, %d "
                            "bytes present)" % (where, total, hlen,
                                                len(raw_ip)))
            continue
        if ip.flags.MF or ip.frag:
            continue
        seg = raw_ip[hlen:total]
        l4 = ip.payload
        if ip.proto == 6 and isinstance(l4, TCP):
            name = "TCP"
            if len(seg) < 20 or (seg[12] >> 4) * 4 < 20 or \
                    (seg[12] >> 4) * 4 > len(seg):
                problems.append("%s: TCP header malformed or truncated"
                                % where)
                continue
            field = struct.unpack("!H", seg[16:18])[0]
            raw_ok = _raw_l4_checksum_ok(ip, seg, 6)
        elif ip.proto == 17 and isinstance(l4, UDP):
            name = "UDP"
            ulen = struct.unpack("!H", seg[4:6])[0] if len(seg) >= 8 else 0
            if len(seg) < 8 or ulen < 8 or ulen > len(seg):
                problems.append("%s: UDP header malformed or truncated"
                                % where)
                continue
            field = struct.unpack("!H", seg[6:8])[0]
            if field == 0:
                dport = struct.unpack("!H", seg[2:4])[0]
                if dport in VXLAN_PORTS or allow_zero_udp:
                    continue
                problems.append("%s: UDP checksum 0 (none) where one is "
                                "required" % where)
                continue
            raw_ok = _raw_l4_checksum_ok(ip, seg[:ulen], 17)
        elif ip.proto == 1 and isinstance(l4, ICMP):
            name = "ICMP"
            if len(seg) < 8:
                problems.append("%s: ICMP header truncated" % where)
                continue
            field = struct.unpack("!H", seg[2:4])[0]
            raw_ok = internet_checksum(seg) == 0
        else:
            continue
        # scapy's own opinion: rebuild the segment with the field deleted.
        try:
            rebuilt_ip = IP(raw_ip[:total])
            rebuilt_ip[type(l4)].chksum = None
            want = IP(bytes(rebuilt_ip))[type(l4)].chksum
        except Exception as e:  # pragma: no cover - odd packets
            want = None
            problems.append("%s: scapy could not rebuild %s: %s"
                            % (where, name, e))
        if not raw_ok or want != field:
            detail = where
            if name != "ICMP":
                detail = "%s:%d -> %s:%d" % (ip.src, l4.sport, ip.dst,
                                             l4.dport)
            problems.append("%s %s checksum 0x%04x is wrong (expected %s)"
                            % (name, detail, field,
                               "0x%04x" % want if want is not None else "?"))
    return problems


def assert_checksums_valid(pkt, index=None, allow_zero_udp=False):
    problems = checksum_problems(pkt, allow_zero_udp=allow_zero_udp)
    if problems:
        raise AssertionError("%s: %s" % (_label(_as_ether(pkt), index),
                                         "; ".join(problems)))


def assert_all_checksums_valid(pkts, allow_zero_udp=False):
    """AssertionError listing every packet with a wrong IPv4/TCP/UDP/ICMP
    checksum (outer and inner). Outer VXLAN UDP may carry 0 or the right
    value."""
    failures = []
    for i, p in enumerate(pkts):
        problems = checksum_problems(p, allow_zero_udp=allow_zero_udp)
        if problems:
            failures.append("%s: %s" % (_label(_as_ether(p), i),
                                        "; ".join(problems)))
    if failures:
        raise AssertionError("%d of %d packets have bad checksums:\n  %s"
                             % (len(failures), len(pkts),
                                "\n  ".join(failures)))

# ---------------------------------------------------------------------------
# VXLAN
# ---------------------------------------------------------------------------


def is_vxlan(pkt):
    pkt = _as_ether(pkt)
    return (UDP in pkt and pkt[UDP].dport in VXLAN_PORTS
            and VXLAN in pkt)


def decode_vxlan(pkt, index=None):
    """(outer, inner): outer is a copy of the frame up to and including the
    VXLAN header; inner is the encapsulated Ethernet frame, re-dissected.
    AssertionError if `pkt` is not a well-formed VXLAN frame."""
    pkt = _as_ether(pkt)
    if IP not in pkt or UDP not in pkt:
        raise AssertionError("%s: not UDP/IPv4, so not VXLAN"
                             % _label(pkt, index))
    if pkt[UDP].dport not in VXLAN_PORTS:
        raise AssertionError("%s: UDP dport %d is not a VXLAN port %s"
                             % (_label(pkt, index), pkt[UDP].dport,
                                VXLAN_PORTS))
    udp_payload = bytes(pkt[UDP].payload)
    udp_payload = udp_payload[:max(pkt[UDP].len - 8, 0)]
    if len(udp_payload) < 8 + 14:
        raise AssertionError("%s: VXLAN payload of %d bytes is too short "
                             "(header 8 + Ethernet 14)"
                             % (_label(pkt, index), len(udp_payload)))
    if not udp_payload[0] & 0x08:
        raise AssertionError("%s: VXLAN flags 0x%02x lack the I bit (0x08)"
                             % (_label(pkt, index), udp_payload[0]))
    inner = Ether(udp_payload[8:])
    inner.time = pkt.time
    outer = pkt.copy()
    outer[VXLAN].remove_payload()
    return outer, inner


def assert_vxlan(pkt, *, src_mac=None, dst_mac=None, src_ip=None,
                 dst_ip=None, ttl=None, vni=1, dport=VXLAN_PORT,
                 sport_range=(1, 65535), df=None, inner_src_mac=None,
                 inner_dst_mac=None, udp_checksum_zero=None, index=None):
    """Checks the outer headers of a VXLAN frame; returns the inner frame."""
    pkt = _as_ether(pkt)
    outer, inner = decode_vxlan(pkt, index)
    bad = []
    _cmp(bad, "outer Ether src", outer[Ether].src, src_mac)
    _cmp(bad, "outer Ether dst", outer[Ether].dst, dst_mac)
    _cmp(bad, "outer IP src", outer[IP].src, src_ip)
    _cmp(bad, "outer IP dst", outer[IP].dst, dst_ip)
    _cmp(bad, "outer IP ttl", outer[IP].ttl, ttl)
    _cmp(bad, "outer UDP dport", outer[UDP].dport, dport)
    if df is not None:
        _cmp(bad, "outer IP DF", bool(outer[IP].flags.DF), df)
    lo, hi = sport_range
    if not lo <= outer[UDP].sport <= hi:
        bad.append("outer UDP sport: expected %d..%d, got %d"
                   % (lo, hi, outer[UDP].sport))
    if udp_checksum_zero is not None:
        _cmp(bad, "outer UDP checksum is 0", outer[UDP].chksum == 0,
             udp_checksum_zero)
    _cmp(bad, "VXLAN VNI", outer[VXLAN].vni, vni)
    _cmp(bad, "inner Ether src", inner[Ether].src, inner_src_mac)
    _cmp(bad, "inner Ether dst", inner[Ether].dst, inner_dst_mac)
    _fail_if(bad, pkt, index)
    return inner

# ---------------------------------------------------------------------------
# Field assertions
# ---------------------------------------------------------------------------


def _norm(value):
    if isinstance(value, str):
        return value.lower()
    return value


def _cmp(bad, what, got, want):
    if want is None:
        return
    if _norm(got) != _norm(want):
        bad.append("%s: expected %r, got %r" % (what, want, got))


def _fail_if(bad, pkt, index):
    if bad:
        raise AssertionError("%s:\n  %s" % (_label(pkt, index),
                                            "\n  ".join(bad)))


def _need(pkt, layer, index):
    if layer not in pkt:
        raise AssertionError("%s: no %s layer" % (_label(pkt, index),
                                                  layer.__name__))
    return pkt[layer]


def assert_ether(pkt, *, src=None, dst=None, type=None, index=None):
    pkt = _as_ether(pkt)
    e = _need(pkt, Ether, index)
    bad = []
    _cmp(bad, "Ether src", e.src, src)
    _cmp(bad, "Ether dst", e.dst, dst)
    _cmp(bad, "Ether type", e.type, type)
    _fail_if(bad, pkt, index)
    return e


def assert_ipv4(pkt, *, src=None, dst=None, ttl=None, proto=None, id=None,
                df=None, index=None):
    """Checks the first (outermost) IPv4 header of `pkt`."""
    pkt = _as_ether(pkt)
    ip = _need(pkt, IP, index)
    bad = []
    _cmp(bad, "IP src", ip.src, src)
    _cmp(bad, "IP dst", ip.dst, dst)
    _cmp(bad, "IP ttl", ip.ttl, ttl)
    _cmp(bad, "IP proto", ip.proto, proto)
    _cmp(bad, "IP id", ip.id, id)
    if df is not None:
        _cmp(bad, "IP DF", bool(ip.flags.DF), df)
    _fail_if(bad, pkt, index)
    return ip


def _flags_str(flags):
    return "".join(sorted(str(flags)))


def assert_tcp(pkt, *, src=None, dst=None, sport=None, dport=None,
               flags=None, seq=None, ack=None, payload=None, ttl=None,
               index=None):
    """Checks the first TCP/IPv4 segment of `pkt` (of the inner frame if
    given one). `flags` is a string such as "S", "SA", "PA" (order free)."""
    pkt = _as_ether(pkt)
    ip = _need(pkt, IP, index)
    tcp = _need(pkt, TCP, index)
    bad = []
    _cmp(bad, "IP src", ip.src, src)
    _cmp(bad, "IP dst", ip.dst, dst)
    _cmp(bad, "IP ttl", ip.ttl, ttl)
    _cmp(bad, "TCP sport", tcp.sport, sport)
    _cmp(bad, "TCP dport", tcp.dport, dport)
    if flags is not None and _flags_str(tcp.flags) != _flags_str(flags):
        bad.append("TCP flags: expected %s, got %s" % (flags, tcp.flags))
    _cmp(bad, "TCP seq", tcp.seq, seq)
    _cmp(bad, "TCP ack", tcp.ack, ack)
    if payload is not None:
        body = bytes(tcp.payload)[:ip.len - ip.ihl * 4 - tcp.dataofs * 4]
        _cmp(bad, "TCP payload", body, payload)
    _fail_if(bad, pkt, index)
    return tcp


def assert_udp(pkt, *, src=None, dst=None, sport=None, dport=None,
               ttl=None, index=None):
    pkt = _as_ether(pkt)
    ip = _need(pkt, IP, index)
    udp = _need(pkt, UDP, index)
    bad = []
    _cmp(bad, "IP src", ip.src, src)
    _cmp(bad, "IP dst", ip.dst, dst)
    _cmp(bad, "IP ttl", ip.ttl, ttl)
    _cmp(bad, "UDP sport", udp.sport, sport)
    _cmp(bad, "UDP dport", udp.dport, dport)
    _fail_if(bad, pkt, index)
    return udp


def assert_icmp(pkt, *, src=None, dst=None, type=None, code=None,
                index=None):
    pkt = _as_ether(pkt)
    ip = _need(pkt, IP, index)
    icmp = _need(pkt, ICMP, index)
    bad = []
    _cmp(bad, "IP src", ip.src, src)
    _cmp(bad, "IP dst", ip.dst, dst)
    _cmp(bad, "ICMP type", icmp.type, type)
    _cmp(bad, "ICMP code", icmp.code, code)
    _fail_if(bad, pkt, index)
    return icmp


def assert_arp(pkt, *, op=None, hwsrc=None, psrc=None, hwdst=None,
               pdst=None, index=None):
    """op: 1 (who-has) or 2 (is-at)."""
    pkt = _as_ether(pkt)
    arp = _need(pkt, ARP, index)
    bad = []
    _cmp(bad, "ARP op", arp.op, op)
    _cmp(bad, "ARP hwsrc", arp.hwsrc, hwsrc)
    _cmp(bad, "ARP psrc", arp.psrc, psrc)
    _cmp(bad, "ARP hwdst", arp.hwdst, hwdst)
    _cmp(bad, "ARP pdst", arp.pdst, pdst)
    _fail_if(bad, pkt, index)
    return arp


def assert_count(pkts, n, what="packets"):
    if len(pkts) != n:
        lines = "".join("\n  %d: %s" % (i, p.summary())
                        for i, p in enumerate(pkts))
        raise AssertionError("expected %d %s, got %d:%s"
                             % (n, what, len(pkts), lines))

# ---------------------------------------------------------------------------
# Manual use
# ---------------------------------------------------------------------------


def describe(pkt):
    pkt = _as_ether(pkt)
    if is_vxlan(pkt):
        try:
            outer, inner = decode_vxlan(pkt)
            return "%s VNI %d | %s" % (outer.summary(), outer[VXLAN].vni,
                                       inner.summary())
        except AssertionError as e:
            return "%s [bad VXLAN: %s]" % (pkt.summary(), e)
    return pkt.summary()


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    status = 0
    for path in argv:
        pkts = read_pcap(path)
        print("%s: %d packets" % (path, len(pkts)))
        for i, p in enumerate(pkts):
            problems = checksum_problems(p)
            mark = "ok " if not problems else "BAD"
            print("  %3d %s %s %s" % (i, mark, p.time, describe(p)))
            for pr in problems:
                print("        %s" % pr)
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
