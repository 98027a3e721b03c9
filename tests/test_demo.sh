#!/usr/bin/env bash
# Runs examples/dept/demo.sh --short on a build tree and checks that its report has every figure
# it promises: requests, rates, p50/p99, hit ratios, speed-ups, the write, mcctl, metric lines.
# usage: tests/test_demo.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
BUILD=$1
SRC=$2
OUT=$(mktemp "${TMPDIR:-/tmp}/test-demo.XXXXXX")
trap 'rm -f "$OUT"' EXIT

bash "$SRC/examples/dept/demo.sh" "$BUILD" --short >"$OUT" 2>&1
RC=$?
tr '\r' '\n' <"$OUT" | grep -v '^dept_load:' # the report, without the progress lines
FAILED=0
fail() {
    echo "FAIL: $*"
    FAILED=1
}
[ "$RC" = 0 ] || fail "demo.sh exited with status $RC"

# expect REGEX WHAT: a line of the report matches (extended regex).
expect() {
    grep -Eq -- "$1" "$OUT" || fail "no $2 in the report (expected a line matching: $1)"
}
NUM='[0-9]+'
DEC='[0-9]+\.[0-9]+'
expect "requests +req/s +p50 ms +p99 ms +errors" "table header"
for row in "SQLite, memoized" "SQLite, not memoized" "SQLite \+ 1ms per query, memoized" \
    "SQLite \+ 1ms per query, not memoized"; do
    # requests, req/s, p50, p99, and no errors
    expect "^  $row +$NUM +$NUM +$DEC +$DEC +0$" "row '$row' with requests, req/s, p50, p99 and 0 errors"
done
expect "hit ratio: $DEC % \(SQLite\), $DEC % \(\+ 1ms per query\)" "hit ratios"
expect "speed-up from memoization, req/s: $DEC""x \(SQLite\), $DEC""x" "throughput speed-ups"
expect "speed-up from memoization, p50: $DEC""x \(SQLite\), $DEC""x" "latency speed-ups"
expect "PUT /_modcache/client/dept/v1/users/user42 \{\"department\": \"Platform\"\} -> 200" "the PUT"
expect "GET /_modcache/client/dept/v1/users/user42 -> 200 \{\"user_id\": \"user42\", \"department\": \"Platform\"\}$" \
    "the GET after the PUT"
expect "new department after PUT: Platform" "the new department"
expect "users/blocked-user -> 403" "the guard's refusal"
expect "mcctl invalidate example_dept.get_department_for_user '\[\"user42\"\]' -> exit 0" "mcctl's exit status"
expect "^  mcctl: ok$" "mcctl's success"
expect "loads: $NUM before, $NUM after: reloaded" "the reload after invalidation"
for m in modcache_cache_hits_total modcache_cache_misses_total modcache_cache_loads_total modcache_cache_entries; do
    expect "^  $m\{cache=\"example_dept.get_department_for_user\"\} [1-9][0-9]*$" "metric line $m (non-zero)"
done
expect "modcache_cache_evictions_total\{cache=\"example_dept.get_department_for_user\",reason=\"invalidation\"\} [1-9]" \
    "invalidation evictions"

# A Zipf load over a few thousand users must hit the cache: the ratio is a real figure, not 0.
HIT=$(sed -n 's/.*hit ratio: \([0-9.]*\) % (SQLite).*/\1/p' "$OUT")
awk -v h="${HIT:-0}" 'BEGIN { exit !(h > 0 && h <= 100) }' || fail "hit ratio '$HIT' is not in (0, 100]"
# The loads before and after the invalidation differ by the one reload.
read -r BEFORE AFTER < <(sed -n 's/.*loads: \([0-9]*\) before, \([0-9]*\) after.*/\1 \2/p' "$OUT")
[ "${AFTER:-0}" = $((${BEFORE:-0} + 1)) ] || fail "loads went from '$BEFORE' to '$AFTER', expected one more"

# Everything it made is gone.
SCRATCH=$(sed -n 's/^(scratch directory \(.*\), removed at exit)$/\1/p' "$OUT")
[ -n "$SCRATCH" ] || fail "no scratch directory named"
[ -n "$SCRATCH" ] && [ -e "$SCRATCH" ] && fail "scratch directory $SCRATCH was not removed"
if [ -n "$SCRATCH" ] && pgrep -f "mchost -c .*" >/dev/null 2>&1; then
    # Only processes whose working directory was the scratch directory are the demo's.
    for pid in $(pgrep -f "mchost -c"); do
        case $(readlink "/proc/$pid/cwd" 2>/dev/null) in
        "$SCRATCH"*) fail "mchost $pid still runs" ;;
        esac
    done
fi
exit $FAILED
