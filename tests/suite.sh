#!/usr/bin/env bash
# `make test`'s run, once setup is done: the library notebooks' own tests (nbdev_test, one at a time) and the suite (the pytest
# command given as the arguments) at the same time. The suite's tests spend much of their time waiting on servers, browsers and
# clocks; the notebooks compute in those gaps. Each one's outcome is printed, the notebooks' after the suite's (their 15
# slowest); the exit status fails if either failed.
set -uo pipefail
cd "$(dirname "$0")/.."
notebooks=$(mktemp); trap 'rm -f "$notebooks" "$notebooks.end"' EXIT
started=$SECONDS
( .venv/bin/nbdev_test --n_workers 1 --timing > "$notebooks" 2>&1; rc=$?; echo "$SECONDS" > "$notebooks.end"; exit $rc ) & nbdev=$!
"$@"; suite=$?
wait $nbdev; library=$?
echo "--- library notebooks (nbdev_test, beside the suite): $( [ $library = 0 ] && echo passed || echo FAILED ) in $(( $(cat "$notebooks.end") - started )) s; the 15 slowest:"
awk 'NR <= 16 || !/: [0-9]+ secs$/' "$notebooks"
echo "--- make test: the notebooks and the suite in $((SECONDS - started)) s (suite exit $suite, notebooks exit $library)"
[ $suite = 0 ] && [ $library = 0 ]
