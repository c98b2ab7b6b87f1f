// afp_blast: a small AF_PACKET traffic generator for the kernel side of the benchmark.
//
// It writes pre-built Ethernet/IPv4/TCP (or UDP) frames with valid checksums straight to one
// interface: an AF_PACKET socket with PACKET_QDISC_BYPASS (no qdisc, the driver's xmit is called
// directly) and sendmmsg() batches. On a veth that means the whole receive path on the peer side
// (and everything it forwards to further veths) runs in this process's context, on this CPU:
// veth_xmit() queues to the CPU's backlog and the softirq runs when the send re-enables bottom
// halves. Pin this process with taskset and you have pinned the kernel's packet path too.
//
// Flow selection, one of:
//   --flows K       cycle over K distinct flows (default 1). Flow k has
//                   sport = SPORT + k % (65536 - SPORT) and saddr = SADDR + k / (65536 - SPORT).
//   --new-flows     every packet is a new 5-tuple: a running counter selects the flow as above
//                   (2^32 flows before it wraps).
//   --tuples FILE   explicit flows, one "saddr daddr sport dport" per line (used to answer the
//                   reply tuples conntrack expects, e.g. SYN-ACKs from the endpoint side).
// Stops after --seconds D or --packets P, whichever comes first, or on SIGINT/SIGTERM, and
// prints {"sent": n, "seconds": t, "errors": e} on stdout (sent counts frames the kernel
// accepted; errors counts failed sendmmsg calls).
//
// Build: cc -O2 -o afp_blast afp_blast.c      Run as root (CAP_NET_RAW).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kEthLen = 14, kIpLen = 20, kTcpLen = 20, kUdpLen = 8, kMaxBatch = 1024, kMaxFrame = 1514 };

struct flow {
  uint32_t saddr, daddr;  // host order
  uint16_t sport, dport;  // host order
};

struct options {
  const char *ifname;
  uint8_t src_mac[6], dst_mac[6];
  struct flow base;
  int proto;  // IPPROTO_TCP or IPPROTO_UDP
  uint8_t tcp_flags;
  uint32_t seq, ack;
  uint64_t flows;
  int new_flows;
  const char *tuples_path;
  double seconds;
  uint64_t packets;
  int batch;
  int frame_len;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void die(const char *what) {
  fprintf(stderr, "afp_blast: %s\n", what);
  exit(2);
}

static void die_errno(const char *what) {
  fprintf(stderr, "afp_blast: %s: %s\n", what, strerror(errno));
  exit(2);
}

static uint32_t sum16(const void *data, size_t len, uint32_t sum) {
  const uint8_t *p = data;
  for (; len > 1; len -= 2, p += 2) sum += (uint32_t)p[0] << 8 | p[1];
  if (len) sum += (uint32_t)p[0] << 8;
  return sum;
}

static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = v & 0xff;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16 & 0xff;
  p[2] = v >> 8 & 0xff;
  p[3] = v & 0xff;
}

// Writes a complete frame for flow f into buf (opt->frame_len bytes, zero padded).
static void build_frame(const struct options *opt, const struct flow *f, uint8_t *buf) {
  int l4_len = opt->proto == IPPROTO_TCP ? kTcpLen : kUdpLen;
  memset(buf, 0, opt->frame_len);
  memcpy(buf, opt->dst_mac, 6);
  memcpy(buf + 6, opt->src_mac, 6);
  put16(buf + 12, ETHERTYPE_IP);

  uint8_t *ip = buf + kEthLen;
  ip[0] = 0x45;
  put16(ip + 2, kIpLen + l4_len);
  put16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = opt->proto;
  put32(ip + 12, f->saddr);
  put32(ip + 16, f->daddr);
  put16(ip + 10, fold(sum16(ip, kIpLen, 0)));

  uint8_t *l4 = ip + kIpLen;
  put16(l4, f->sport);
  put16(l4 + 2, f->dport);
  if (opt->proto == IPPROTO_TCP) {
    put32(l4 + 4, opt->seq);
    put32(l4 + 8, opt->ack);
    l4[12] = (kTcpLen / 4) << 4;
    l4[13] = opt->tcp_flags;
    put16(l4 + 14, 64240);  // window
  } else {
    put16(l4 + 4, kUdpLen);
  }
  // Pseudo-header: saddr, daddr, zero+proto, l4 length.
  uint32_t sum = sum16(ip + 12, 8, 0) + opt->proto + l4_len;
  sum = sum16(l4, l4_len, sum);
  uint16_t csum = fold(sum);
  if (opt->proto == IPPROTO_UDP && csum == 0) csum = 0xffff;
  put16(l4 + (opt->proto == IPPROTO_TCP ? 16 : 6), csum);
}

static struct flow flow_at(const struct options *opt, uint64_t index) {
  uint32_t span = 65536u - opt->base.sport;
  struct flow f = opt->base;
  f.sport = (uint16_t)(opt->base.sport + index % span);
  f.saddr = opt->base.saddr + (uint32_t)(index / span);
  return f;
}

static uint32_t parse_ip(const char *s) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) die("bad IPv4 address");
  return ntohl(a.s_addr);
}

static void parse_mac(const char *s, uint8_t mac[6]) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    die("bad MAC address");
  for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
}

static uint8_t parse_flags(const char *s) {
  uint8_t flags = 0;
  for (; *s; s++) {
    switch (*s) {
      case 'F': flags |= 0x01; break;
      case 'S': flags |= 0x02; break;
      case 'R': flags |= 0x04; break;
      case 'P': flags |= 0x08; break;
      case 'A': flags |= 0x10; break;
      default: die("--tcp-flags takes letters from FSRPA");
    }
  }
  return flags;
}

static struct flow *read_tuples(const char *path, uint64_t *count) {
  FILE *fp = fopen(path, "r");
  if (!fp) die_errno(path);
  size_t cap = 1024, n = 0;
  struct flow *flows = malloc(cap * sizeof(*flows));
  char saddr[64], daddr[64];
  unsigned sport, dport;
  while (fscanf(fp, "%63s %63s %u %u", saddr, daddr, &sport, &dport) == 4) {
    if (n == cap) flows = realloc(flows, (cap *= 2) * sizeof(*flows));
    if (!flows) die("out of memory");
    flows[n++] = (struct flow){parse_ip(saddr), parse_ip(daddr), (uint16_t)sport, (uint16_t)dport};
  }
  fclose(fp);
  if (n == 0) die("--tuples file holds no flows");
  *count = n;
  return flows;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: afp_blast --ifname IF --src-mac MAC --dst-mac MAC --saddr IP --daddr IP\n"
          "         [--sport N] [--dport N] [--proto tcp|udp] [--tcp-flags S|SA|A..]\n"
          "         [--seq N] [--ack N] [--flows K | --new-flows | --tuples FILE]\n"
          "         [--seconds D] [--packets P] [--batch B] [--size BYTES]\n");
  exit(2);
}

static void parse_options(int argc, char **argv, struct options *opt) {
  static const struct option longopts[] = {
      {"ifname", required_argument, 0, 'i'},  {"src-mac", required_argument, 0, 'm'},
      {"dst-mac", required_argument, 0, 'M'}, {"saddr", required_argument, 0, 's'},
      {"daddr", required_argument, 0, 'd'},   {"sport", required_argument, 0, 'p'},
      {"dport", required_argument, 0, 'P'},   {"proto", required_argument, 0, 'x'},
      {"tcp-flags", required_argument, 0, 'f'}, {"seq", required_argument, 0, 'q'},
      {"ack", required_argument, 0, 'a'},     {"flows", required_argument, 0, 'k'},
      {"new-flows", no_argument, 0, 'n'},     {"tuples", required_argument, 0, 't'},
      {"seconds", required_argument, 0, 'D'}, {"packets", required_argument, 0, 'c'},
      {"batch", required_argument, 0, 'b'},   {"size", required_argument, 0, 'z'},
      {0, 0, 0, 0}};
  int have_src = 0, have_dst = 0, have_saddr = 0, have_daddr = 0, c;
  *opt = (struct options){.base = {.sport = 10000, .dport = 80}, .proto = IPPROTO_TCP,
                          .tcp_flags = 0x02, .seq = 1000, .flows = 1, .batch = 64,
                          .frame_len = 60};
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case 'i': opt->ifname = optarg; break;
      case 'm': parse_mac(optarg, opt->src_mac); have_src = 1; break;
      case 'M': parse_mac(optarg, opt->dst_mac); have_dst = 1; break;
      case 's': opt->base.saddr = parse_ip(optarg); have_saddr = 1; break;
      case 'd': opt->base.daddr = parse_ip(optarg); have_daddr = 1; break;
      case 'p': opt->base.sport = (uint16_t)atoi(optarg); break;
      case 'P': opt->base.dport = (uint16_t)atoi(optarg); break;
      case 'x':
        if (!strcmp(optarg, "tcp")) opt->proto = IPPROTO_TCP;
        else if (!strcmp(optarg, "udp")) opt->proto = IPPROTO_UDP;
        else die("--proto is tcp or udp");
        break;
      case 'f': opt->tcp_flags = parse_flags(optarg); break;
      case 'q': opt->seq = (uint32_t)strtoul(optarg, NULL, 0); break;
      case 'a': opt->ack = (uint32_t)strtoul(optarg, NULL, 0); break;
      case 'k': opt->flows = strtoull(optarg, NULL, 0); break;
      case 'n': opt->new_flows = 1; break;
      case 't': opt->tuples_path = optarg; break;
      case 'D': opt->seconds = atof(optarg); break;
      case 'c': opt->packets = strtoull(optarg, NULL, 0); break;
      case 'b': opt->batch = atoi(optarg); break;
      case 'z': opt->frame_len = atoi(optarg); break;
      default: usage();
    }
  }
  if (!opt->ifname || !have_src || !have_dst) usage();
  if (!opt->tuples_path && (!have_saddr || !have_daddr)) usage();
  if (opt->seconds <= 0 && opt->packets == 0) die("give --seconds and/or --packets");
  if (opt->flows == 0 || opt->base.sport == 0) die("--flows and --sport must be positive");
  if (opt->batch < 1 || opt->batch > kMaxBatch) die("--batch is 1..1024");
  if (opt->frame_len < 60) opt->frame_len = 60;
  if (opt->frame_len > kMaxFrame) die("--size is at most 1514");
}

int main(int argc, char **argv) {
  struct options opt;
  parse_options(argc, argv, &opt);

  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: transmit only, nothing is received
  if (fd < 0) die_errno("socket(AF_PACKET)");
  int one = 1;
  if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one)) < 0)
    die_errno("PACKET_QDISC_BYPASS");
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = if_nametoindex(opt.ifname)};
  if (sll.sll_ifindex == 0) die_errno(opt.ifname);
  if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) die_errno("bind");

  // Pre-built frames: one per flow (cycling modes), or one per batch slot (new-flow mode,
  // rebuilt for every batch).
  struct flow *tuples = NULL;
  uint64_t nframes;
  if (opt.tuples_path) {
    tuples = read_tuples(opt.tuples_path, &nframes);
  } else {
    nframes = opt.new_flows ? (uint64_t)opt.batch : opt.flows;
  }
  uint8_t *frames = malloc(nframes * opt.frame_len);
  if (!frames) die("out of memory");
  for (uint64_t i = 0; !opt.new_flows && i < nframes; i++) {
    struct flow f = tuples ? tuples[i] : flow_at(&opt, i);
    build_frame(&opt, &f, frames + i * opt.frame_len);
  }

  struct mmsghdr msgs[kMaxBatch];
  struct iovec iov[kMaxBatch];
  memset(msgs, 0, sizeof(msgs));
  for (int j = 0; j < opt.batch; j++) {
    iov[j].iov_len = opt.frame_len;
    msgs[j].msg_hdr.msg_iov = &iov[j];
    msgs[j].msg_hdr.msg_iovlen = 1;
  }

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  uint64_t sent = 0, errors = 0, next = 0;  // next: the flow index of the next frame
  double start = now_seconds(), deadline = opt.seconds > 0 ? start + opt.seconds : 0, end = start;
  while (!g_stop) {
    uint64_t want = opt.batch;
    if (opt.packets && opt.packets - sent < want) want = opt.packets - sent;
    if (want == 0) break;
    for (uint64_t j = 0; j < want; j++) {
      if (opt.new_flows) {
        struct flow f = flow_at(&opt, next + j);
        build_frame(&opt, &f, frames + j * opt.frame_len);
        iov[j].iov_base = frames + j * opt.frame_len;
      } else {
        iov[j].iov_base = frames + ((next + j) % nframes) * opt.frame_len;
      }
    }
    int n = sendmmsg(fd, msgs, (unsigned)want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      errors++;
      if (errors > 1000000) die_errno("sendmmsg keeps failing");
      continue;
    }
    sent += n;
    next += n;
    end = now_seconds();
    if (deadline && end >= deadline) break;
  }
  printf("{\"sent\": %llu, \"seconds\": %.6f, \"errors\": %llu}\n", (unsigned long long)sent,
         end - start, (unsigned long long)errors);
  close(fd);
  return 0;
}
