#!/usr/bin/env bash
# apt_install WHO PACKAGE...: install Debian packages as root (or with sudo), quietly.
#
# Why: the test dependencies (Prometheus, Chromium) come from Debian's packages, installed by the
# project's own scripts so a fresh machine needs nothing by hand. Sourced by scripts/ensure-*.sh.
# Package maintainer scripts are kept from starting system services (policy-rc.d), since the
# tests start their own servers on free 127.0.0.1 ports.
apt_install() {
  local who=$1
  shift
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      echo "$who: not root and no sudo: run as root 'apt-get update && apt-get install -y $*'" >&2
      return 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created=1
  fi
  local status=0
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } || status=$?
  if [ "$created" = 1 ]; then $sudo rm -f "$policy"; fi
  return $status
}
