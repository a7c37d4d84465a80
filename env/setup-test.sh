#!/usr/bin/env bash
# What the tests and benchmarks need beyond .venv, from Debian packages: headless Chromium (env/setup-chromium.sh: the
# browser tests drive it with Playwright), the PostgreSQL server (the store's team
# backend is tested against a real server, which the tests start privately on loopback), Redis (the
# rate limits several service workers share; a private server too), hey (make bench-service), and Prometheus
# with Alertmanager (the shipped alert rules are unit-tested by promtool and fired end to end by private servers),
# restic (mlfin backup), an sshd for its remote repository test and for the home the hosts of tests/test_hosts.py share over sshfs,
# iproute2 (those hosts' network namespaces and cables), and systemd's analyzer (the schedule's units are verified offline).
# Idempotent and silent when already there.
set -euo pipefail
bash "$(dirname "$0")/setup-chromium.sh"
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/redis-server ] || need+=(redis-server)   # the shared rate-limit store of several service workers
command -v hey >/dev/null 2>&1 || need+=(hey)   # the HTTP load tool of make bench-service
[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || need+=(prometheus)   # 2.42: the rules' tests and make monitoring
[ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
command -v restic >/dev/null 2>&1 || need+=(restic)   # 0.14: mlfin backup's encrypted, deduplicated repository
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)   # 2.45: WAL archiving of a PostgreSQL store (mlfin backup wal)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)   # a private sshd on loopback: the backup test's remote (sftp) repository
command -v sshfs >/dev/null 2>&1 || need+=(sshfs)   # 3.7: FUSE; the shared home of the test's hosts (kernel NFS needs modules this machine lacks)
command -v ip >/dev/null 2>&1 || need+=(iproute2)   # ip netns, veth, bridge: the test's hosts and the switch between them
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # systemd-analyze verify/calendar check the generated units offline
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
source "$(dirname "$0")/steps.sh"
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
step "updating Debian's package lists" $sudo apt-get update -qq
# policy-rc.d: the package must not start its own cluster service; the tests run a private server
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null; $sudo chmod +x /usr/sbin/policy-rc.d
  trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT   # taken away again, the install failed or not
fi
step "installing Debian packages for the tests: ${need[*]}" $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
ls /usr/lib/postgresql/*/bin/postgres >/dev/null
