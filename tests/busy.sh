#!/usr/bin/env bash
# `make test` with N busy CPU hogs beside it for the whole run, as on a laptop compiling something (issue 36): the suite must
# pass all the same. Prints the suite's time and exits with its status; the hogs end with it, however it ends.
set -u
hogs=${1:-2}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
for _ in $(seq 1 "$hogs"); do python3 -c 'while 1: pass' & pids+=($!); done
start=$(date +%s)
make test; rc=$?
echo "make test beside $hogs CPU hog(s): exit $rc after $(( $(date +%s) - start )) s"
exit $rc
