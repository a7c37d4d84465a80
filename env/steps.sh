# Sourced by env/setup*.sh: `step WHAT COMMAND...` runs a setup step as one line, "mlfin setup: WHAT ... done in S s", on a
# terminal and in a log alike; the command's own output is kept aside and shown (on stderr) only when it fails.
noise='^WARNING: Location .* is ignored: it is neither a file nor a directory'   # pip, about a configured location that lacks a package
tenths() { local t=${EPOCHREALTIME:-}; if [ -n "$t" ]; then t=${t/[.,]/}; echo $((10#$t / 100000)); else echo $((SECONDS * 10)); fi; }
seconds() { local t=$(( $(tenths) - $1 )); echo "$((t / 10)).$((t % 10)) s"; }   # since a tenths() reading
step() {
  local what=$1 t log; shift; t=$(tenths); log=$(mktemp)
  printf 'mlfin setup: %s ...' "$what"
  if "$@" >"$log" 2>&1; then echo " done in $(seconds "$t")"; rm -f "$log"
  else local rc=$?; echo " failed (exit status $rc)"; grep -v -E "$noise" "$log" >&2 || true; rm -f "$log"; exit "$rc"; fi
}
