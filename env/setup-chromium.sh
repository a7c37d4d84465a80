#!/usr/bin/env bash
# Headless Chromium from Debian (never a downloaded browser build), and a font for its text: the browser tests drive it
# with Playwright, and `mlfin dashboards` draws each chart's picture in it once (kaleido, mlfin.pictures), so a page shows
# its charts before plotly.js has loaded. `make dashboards` and env/setup-test.sh run this. Idempotent and silent when there.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
source "$(dirname "$0")/steps.sh"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
step "updating Debian's package lists" $sudo apt-get update -qq
step "installing Debian's chromium and fonts-dejavu-core" $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
echo "mlfin setup: $(/usr/bin/chromium --version 2>/dev/null) ready"   # (its launcher script can complain on stderr)
