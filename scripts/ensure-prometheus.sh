#!/usr/bin/env bash
# Make sure Debian's Prometheus server and promtool are on PATH (for tests/integration/signals).
#
# Why: the energy and cost accounting is proven against a real Prometheus holding history loaded
# with `promtool tsdb create-blocks-from openmetrics`; a fake would not test our PromQL.
# Idempotent: does nothing when both binaries already run. Needs root (or sudo) to install.
# The Debian package also enables a system service; we do not use it (the tests start their own
# server on a free 127.0.0.1 port), so apt.sh keeps it from starting one.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

have_both() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    && prometheus --version >/dev/null 2>&1 && promtool --version >/dev/null 2>&1
}

if have_both; then
  echo "prometheus present: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi

apt_install ensure-prometheus prometheus

if ! have_both; then
  echo "ensure-prometheus: installed the prometheus package but 'prometheus' or 'promtool'" \
    "does not run (PATH=$PATH)" >&2
  exit 1
fi
echo "prometheus installed: $(prometheus --version 2>&1 | head -n1)"
