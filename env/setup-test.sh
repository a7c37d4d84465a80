#!/usr/bin/env bash
# What the tests need beyond .venv: Debian's headless Chromium (the browser tests drive it with
# Playwright, never a downloaded browser build). Idempotent and silent when already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
echo "mlfin: installing Debian's chromium for the browser tests ..."
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
