#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium (for tests/e2e).
#
# Why: the simulator's HTML report is checked by opening it in a real browser. Test tools that
# download their own browser cannot reach their download sites here, so we use Debian's package.
# Idempotent: does nothing when /usr/bin/chromium already runs. Needs root (or sudo) to install.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "chromium present: $("$CHROMIUM" --version)"
  exit 0
fi

apt_install ensure-chromium chromium fonts-dejavu-core

if ! "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "ensure-chromium: installed the chromium package but $CHROMIUM does not run" >&2
  exit 1
fi
echo "chromium installed: $("$CHROMIUM" --version)"
