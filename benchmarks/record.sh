# Sourced by benchmarks/run-cpu and benchmarks/run-gpu, after they set $run (the raw-results
# folder), $log (its run.log) and $prog (their name for messages), under set -o pipefail:
# record() sees a failure through the pipe into tee only with it.

failures=0

# Runs a command, records it (as typed, variables expanded) and its output; a failure is recorded
# and the run goes on, so the report shows "no result" for it instead of stopping everything.
record() {
    local line
    printf -v line '%q ' "$@"
    echo "${line% }" >>"$run/commands.txt"
    echo "+ ${line% }" | tee -a "$log"
    if ! "$@" 2>&1 | tee -a "$log"; then
        echo "$prog: that command failed (see $log)" | tee -a "$log" >&2
        echo "${line% }" >>"$run/failed.txt"
        failures=$((failures + 1))
    fi
}

# One KEY<TAB>VALUE line of meta.txt, which make_table.py prints under "Machine and software".
meta() { printf '%s\t%s\n' "$1" "$2" >>"$run/meta.txt"; }
