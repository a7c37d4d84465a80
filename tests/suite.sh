#!/usr/bin/env bash
# `make test`'s run, once setup is done: the library notebooks' own tests (nbdev_test) and the suite (pytest on both cores,
# its files in a random order) at the same time. The suite's tests spend much of their time waiting on servers, browsers and
# clocks; the notebooks compute in those gaps. Each one's outcome is printed, the notebooks' after the suite's; the exit status
# fails if either failed. Extra arguments go to pytest (`make test PYTEST_ARGS="--file-order random:SEED"`).
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE   # two workers and the notebooks share two cores: OpenMP threads sleep while they wait
notebooks=$(mktemp); trap 'rm -f "$notebooks"' EXIT
started=$SECONDS
( .venv/bin/nbdev_test --n_workers 1 --timing > "$notebooks" 2>&1 ) & nbdev=$!
.venv/bin/python -m pytest tests -n 2 --durations=30 --file-order random "$@"; suite=$?
wait $nbdev; library=$?
echo "--- library notebooks (nbdev_test, beside the suite): $( [ $library = 0 ] && echo passed || echo FAILED ), the 15 slowest:"
awk 'NR <= 16 || !/: [0-9]+ secs$/' "$notebooks"
echo "--- make test: $((SECONDS - started)) s (suite exit $suite, notebooks exit $library)"
[ $suite = 0 ] && [ $library = 0 ]
