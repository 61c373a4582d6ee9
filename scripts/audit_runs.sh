#!/usr/bin/env bash
# Audit every grokit run of the hostile, fault and robustness suites (issue #18, "Done when"):
# no exit code other than 0/1/2 (tests/util.rs `run` already fails a test on one), no run longer
# than a few seconds, and peak memory within a bound. Each run of the binary goes through
# /usr/bin/time (GROKIT_AUDIT_LOG, see tests/util.rs); this script runs the suites, then
# prints the exit-code histogram, the slowest runs and the largest peak RSS, and fails when a
# run breaks a limit.
#
# Usage: scripts/audit_runs.sh [FILTER...]
#   FILTER: libtest filters (default: hostile robustness faults; "hostile" covers reference_hostile).
#   AUDIT_MAX_SECS (default 10): slowest run allowed, in seconds (the machine's load counts:
#     run it on a quiet machine).
#   AUDIT_MAX_RSS_MIB (default 1024): largest peak RSS allowed for one run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/time ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq time >/dev/null 2>&1 || true
fi
[ -x /usr/bin/time ] || { echo "SKIP audit_runs: GNU time (/usr/bin/time) is not installed and could not be"; exit 0; }
MAX_SECS=${AUDIT_MAX_SECS:-10}
MAX_RSS_MIB=${AUDIT_MAX_RSS_MIB:-1024}
FILTERS=("$@")
[ ${#FILTERS[@]} -gt 0 ] || FILTERS=(hostile robustness faults)
LOG=$(mktemp /tmp/grokit-audit.XXXXXX)
trap 'rm -f "$LOG"' EXIT
cargo build --quiet --tests
start=$(date +%s)
rc=0
for f in "${FILTERS[@]}"; do
  GROKIT_AUDIT_LOG=$LOG cargo test --quiet --test integration -- "$f" >/dev/null 2>&1 || {
    echo "audit_runs: tests matching '$f' failed (run them with cargo test to see why)"; rc=1; }
done
runs=$(wc -l < "$LOG")
echo "audited $runs grokit runs of: ${FILTERS[*]} ($(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "exit codes:"
cut -f1 "$LOG" | sort | uniq -c | sed 's/^/  /'
echo "slowest runs (seconds, peak RSS KiB, arguments):"
sort -t$'\t' -k2,2 -g -r "$LOG" | head -5 | awk -F'\t' '{printf "  %7.2f s %9s KiB  %s\n", $2, $3, substr($4, 1, 110)}'
echo "largest peak RSS (KiB, seconds, arguments):"
sort -t$'\t' -k3,3 -g -r "$LOG" | head -5 | awk -F'\t' '{printf "  %9s KiB %7.2f s  %s\n", $3, $2, substr($4, 1, 110)}'
bad_exit=$(awk -F'\t' '$1 != "0" && $1 != "1" && $1 != "2"' "$LOG" | wc -l)
slow=$(awk -F'\t' -v m="$MAX_SECS" '$2 > m' "$LOG" | wc -l)
big=$(awk -F'\t' -v m="$MAX_RSS_MIB" '$3 > m * 1024' "$LOG" | wc -l)
echo "limits: exit 0/1/2 ($bad_exit outside), <= $MAX_SECS s ($slow slower), <= $MAX_RSS_MIB MiB ($big larger)"
[ "$runs" -gt 0 ] || { echo "audit_runs: no run was logged"; rc=1; }
[ "$bad_exit" -eq 0 ] && [ "$slow" -eq 0 ] && [ "$big" -eq 0 ] || rc=1
exit $rc
