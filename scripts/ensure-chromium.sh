#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium (for tests/e2e).
#
# Why: the simulator's HTML report is checked by opening it in a real browser. Test tools that
# download their own browser cannot reach their download sites here, so we use Debian's package.
# Idempotent: does nothing when /usr/bin/chromium already runs. Needs root (or sudo) to install.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "chromium present: $("$CHROMIUM" --version)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure-chromium: $CHROMIUM missing and not root (no sudo): run as root" \
      "'apt-get update && apt-get install -y chromium'" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

if ! "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "ensure-chromium: installed the chromium package but $CHROMIUM does not run" >&2
  exit 1
fi
echo "chromium installed: $("$CHROMIUM" --version)"
