#!/usr/bin/env bash
# Make sure the host tools of the real node (devcluster/realnode.py) and of the operator image
# build (scripts/build-image.sh) are installed: Debian's containerd, runc, CNI plugins, iptables,
# dnsmasq, buildah and debootstrap.
#
# Why: tests/e2e/test_incluster.py runs the Helm chart's Deployment on a real kubelet; the
# kubelet and kube-proxy are built from Go modules (devcluster/build.py), the rest comes from
# Debian. No package starts a service here (apt.sh's policy-rc.d; dnsmasq-base has none): the
# real node starts its own containerd and dnsmasq with private sockets and directories.
# Idempotent: does nothing when every tool is present. Needs root (or sudo).
set -euo pipefail
source "$(dirname "$0")/apt.sh"

export PATH="$PATH:/usr/sbin:/sbin"
# command:package pairs; the CNI plugins are files, checked apart.
TOOLS=(containerd:containerd ctr:containerd containerd-shim-runc-v2:containerd runc:runc
       iptables:iptables ip:iproute2 dnsmasq:dnsmasq-base buildah:buildah
       debootstrap:debootstrap)

missing_packages() {
  local pair
  for pair in "${TOOLS[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || echo "${pair#*:}"
  done
  [ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || echo containernetworking-plugins
}

mapfile -t packages < <(missing_packages | sort -u)
if [ "${#packages[@]}" -eq 0 ]; then
  echo "real node tools present: $(containerd --version | cut -d' ' -f1,3), $(runc --version | head -n1)"
  exit 0
fi
apt_install ensure-realnode "${packages[@]}"
mapfile -t still < <(missing_packages | sort -u)
if [ "${#still[@]}" -ne 0 ]; then
  echo "ensure-realnode: installed ${packages[*]} but still missing: ${still[*]}" >&2
  exit 1
fi
echo "real node tools installed: ${packages[*]}"
