#!/usr/bin/env bash
# Installs Sluice's build and test dependencies from Debian 12, idempotently.
# Quiet when everything is already present; needs root (or sudo) only when
# something is missing.
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config
      libdpdk-dev dpdk libabsl-dev nlohmann-json3-dev libpcap-dev
      libgtest-dev libgmock-dev googletest libbenchmark-dev libmicrohttpd-dev
      python3-scapy python3-matplotlib iproute2 iptables ethtool
      libcurl4-openssl-dev etcd-server libyaml-dev openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
