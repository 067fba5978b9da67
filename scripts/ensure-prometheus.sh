#!/usr/bin/env bash
# Make sure Debian's Prometheus server and promtool are on PATH (for tests/integration/signals).
#
# Why: the energy and cost accounting is proven against a real Prometheus holding history loaded
# with `promtool tsdb create-blocks-from openmetrics`; a fake would not test our PromQL.
# Idempotent: does nothing when both binaries already run. Needs root (or sudo) to install.
# The Debian package also enables a system service; we do not use it (the tests start their own
# server on a free 127.0.0.1 port), so we stop it if the package started one.
set -euo pipefail

have_both() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    && prometheus --version >/dev/null 2>&1 && promtool --version >/dev/null 2>&1
}

if have_both; then
  echo "prometheus present: $(prometheus --version 2>&1 | head -n1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure-prometheus: prometheus/promtool missing and not root (no sudo): run as root" \
      "'apt-get update && apt-get install -y prometheus'" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Do not let the package's maintainer scripts start a system-wide server (no init here anyway).
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  CREATED_POLICY=1
fi
cleanup() { if [ "$CREATED_POLICY" = 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

if ! have_both; then
  echo "ensure-prometheus: installed the prometheus package but 'prometheus' or 'promtool'" \
    "does not run (PATH=$PATH)" >&2
  exit 1
fi
echo "prometheus installed: $(prometheus --version 2>&1 | head -n1)"
