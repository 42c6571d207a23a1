#!/usr/bin/env bash
# The cost of the `build` profile on a real build: `python3 -m compileall` over a copy of the standard
# library, on the host and inside `rootsand run --profile build`, as the unprivileged test user.
# Run as root after tests/run.sh (which makes the user and the venv): sudo bash bench/build_overhead.sh [RUNS]
set -euo pipefail
runs=${1:-5}
user=${ROOTSAND_TEST_USER:-rootsand-test}
rootsand=${ROOTSAND:-/var/tmp/rootsand-tests/venv/bin/rootsand}
work=$(mktemp -d /var/tmp/rootsand-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')" "$work/src"
chown -R "$user:" "$work"
runuser -u "$user" -- bash -s "$work/src" "$runs" "$rootsand" <<'INNER'
cd "$1"; runs=$2; rootsand=$3
clean() { find . -name __pycache__ -type d -prune -exec rm -rf {} +; }
time_it() { local s e; clean; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
host=(); box=()
for _ in $(seq "$runs"); do
    host+=("$(time_it /usr/bin/python3 -m compileall -q -j1 .)")
    box+=("$(time_it "$rootsand" run --profile build -- /usr/bin/python3 -m compileall -q -j1 .)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median "${host[@]}"); b=$(median "${box[@]}")
printf 'compileall of the stdlib, median of %s runs:\n  host          %6d ms\n  --profile build %4d ms  (x%s)\n' \
    "$runs" "$h" "$b" "$(awk -v b="$b" -v h="$h" 'BEGIN {printf "%.3f", b / h}')"
INNER
