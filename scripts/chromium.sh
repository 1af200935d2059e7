#!/usr/bin/env bash
# Headless Chromium from Debian's packages, for the Playground's browser tests (tests/playground/).
# Playwright (a test extra) drives it through `executable_path`: its own browser download needs
# the internet. Idempotent and quiet: nothing happens where a chromium is already installed
# (or CONSTRAIN_CHROMIUM names one). Needs root (or sudo) the first time; about 1.5 min.
set -euo pipefail
if [ -n "${CONSTRAIN_CHROMIUM:-}" ] || command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "chromium is missing and this is not root: apt-get install chromium (the browser tests skip without it)" >&2
    exit 0
  fi
  SUDO="sudo -n"
fi
echo "installing chromium for the browser tests (apt-get, once)" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
