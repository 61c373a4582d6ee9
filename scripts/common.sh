# Shared helpers for the benchmark scripts (sourced, not run).
# run_timed NAME CMD... : runs CMD, records wall seconds in SECS[NAME] and peak RSS (MiB) in
# RSS[NAME] (via /usr/bin/time -v when present), prints one row.
declare -A SECS RSS
TIMEV=""
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then TIMEV=/usr/bin/time; fi
run_timed() {
  local name=$1; shift
  local log; log=$(mktemp)
  local t0 t1
  t0=$(date +%s.%N)
  if [[ -n "$TIMEV" ]]; then
    $TIMEV -v -o "$log" "$@" > /dev/null
    RSS[$name]=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log")
  else
    "$@" > /dev/null
    RSS[$name]="n/a"
  fi
  t1=$(date +%s.%N)
  rm -f "$log"
  SECS[$name]=$(echo "$t1 - $t0" | bc -l)
  printf "%-34s %9.2f s   peak RSS %6s MiB\n" "$name" "${SECS[$name]}" "${RSS[$name]}"
}
ratio() { echo "${SECS[$1]} / ${SECS[$2]}" | bc -l; }
