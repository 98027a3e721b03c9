#!/usr/bin/env bash
# examples/dept/demo.sh: runs example_dept under mchost with and without memoization on one
# SQLite database, under a Zipf load from dept_load, then shows a write, an invalidation and metrics.
#
# usage: examples/dept/demo.sh BUILD_DIR [--short]
#   BUILD_DIR  a configured and built tree (mchost, mcctl, dept_load and the two modules)
#   --short    10,000 users and ~2 s runs instead of 100,000 users and 10 s runs
# The hosts run examples/dept/dept.yaml (seed_users, listen, cache and simulated_latency
# changed per run) in a scratch directory that is removed at exit, with every process it started.
set -euo pipefail
export LC_ALL=C # byte lengths for Content-Length, and a '.' decimal point for awk

usage() {
    echo "usage: $0 BUILD_DIR [--short]" >&2
    exit 2
}
BUILD= SHORT=0
for arg in "$@"; do
    case $arg in
    --short) SHORT=1 ;;
    -*) usage ;;
    *) [ -z "$BUILD" ] || usage; BUILD=$arg ;;
    esac
done
[ -n "$BUILD" ] || usage
BUILD=$(cd "$BUILD" && pwd) || usage
SRC=$(cd "$(dirname "$0")/../.." && pwd)

if [ "$SHORT" = 1 ]; then USERS=10000 DURATION=2; else USERS=100000 DURATION=10; fi
THREADS=4
LATENCY=1ms
FN=example_dept.get_department_for_user
USERS_PATH=/_modcache/client/dept/v1/users

MCHOST=$BUILD/tools/mchost
MCCTL=$BUILD/tools/mcctl
LOAD=$BUILD/examples/dept/dept_load
for f in "$MCHOST" "$MCCTL" "$LOAD" "$BUILD/examples/dept/libexample_dept.so" \
    "$BUILD/examples/guard/libexample_guard.so"; do
    [ -e "$f" ] || { echo "demo: $f is missing; build first: cmake --build $BUILD" >&2; exit 2; }
done

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/modcache-demo.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "demo: $*" >&2
    exit 1
}

# The scratch directory looks like a build directory to dept.yaml's relative paths.
cd "$SCRATCH"
mkdir -p examples/dept examples/guard
ln -s "$BUILD/examples/dept/libexample_dept.so" examples/dept/
ln -s "$BUILD/examples/guard/libexample_guard.so" examples/guard/
(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >admin.token)

# derive NAME CACHE LATENCY: NAME.yaml from dept.yaml, checked to have taken every change.
derive() {
    local name=$1 cache=$2 latency=$3
    sed -e "s/^\(  listen:\) .*/\1 127.0.0.1:0/" \
        -e "s/^\(      seed_users:\) .*/\1 $USERS/" \
        -e "s/^\(      cache:\) .*/\1 $cache/" \
        -e "s/^      # \(simulated_latency:\) .*/      \1 $latency/" \
        "$SRC/examples/dept/dept.yaml" >"$name.yaml"
    grep -q "^  listen: 127.0.0.1:0$" "$name.yaml" &&
        grep -q "^      seed_users: $USERS$" "$name.yaml" &&
        grep -q "^      cache: $cache$" "$name.yaml" &&
        grep -q "^      simulated_latency: $latency$" "$name.yaml" ||
        die "examples/dept/dept.yaml no longer has the keys this script changes"
}
derive cached true 0ms
derive uncached false 0ms
derive cached_slow true "$LATENCY"
derive uncached_slow false "$LATENCY"

# start NAME: run mchost on NAME.yaml; sets PID and PORT once it serves.
start() {
    local name=$1 i
    : >"$name.log" # exists before the background job opens it, for the polling below
    "$MCHOST" -c "$name.yaml" 2>>"$name.log" &
    PID=$!
    PIDS+=("$PID")
    for ((i = 0; i < 1200; i++)); do
        PORT=$(sed -n 's/.*serving HTTP on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$name.log")
        [ -n "$PORT" ] && return 0
        kill -0 "$PID" 2>/dev/null || { cat "$name.log" >&2; die "mchost ($name) exited"; }
        sleep 0.05
    done
    cat "$name.log" >&2
    die "mchost ($name) did not start serving within 60 s"
}

# stop PID: SIGTERM, wait, and forget it (so that cleanup never signals a reused pid).
stop() {
    local pid keep=()
    kill -TERM "$1"
    wait "$1" || die "mchost exited with status $? on SIGTERM"
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

# http METHOD PATH [BODY]: one request over bash's /dev/tcp; sets STATUS and BODY.
http() {
    local resp body=${3:-}
    exec 3<>"/dev/tcp/127.0.0.1/$PORT"
    printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' \
        "$1" "$2" "${#body}" "$body" >&3
    resp=$(cat <&3)
    exec 3<&-
    STATUS=$(printf '%s\n' "$resp" | sed -n '1s/^HTTP\/1\.[01] \([0-9]*\).*/\1/p')
    BODY=${resp#*$'\r\n\r\n'}
}

# The function's /metrics lines, and one value from them.
fn_metrics() {
    http GET /metrics ""
    [ "$STATUS" = 200 ] || die "GET /metrics answered $STATUS"
    printf '%s\n' "$BODY" | grep -F "cache=\"$FN\"" || true
}
metric() { # metric NAME < lines
    sed -n "s/^$1{cache=\"$FN\"} \([0-9][0-9]*\)$/\1/p"
}

# load NAME: the same Zipf load on the current host; the summary in NAME.out.
load() {
    "$LOAD" --url "http://127.0.0.1:$PORT" --users "$USERS" --threads "$THREADS" \
        --duration "$DURATION" --seed 7 >"$1.out" || die "dept_load failed"
}
val() { sed -n "s/^$2=//p" "$1.out"; }

hit_ratio() { # from the current host's /metrics
    fn_metrics >"$1.metrics"
    local h m
    h=$(metric modcache_cache_hits_total <"$1.metrics")
    m=$(metric modcache_cache_misses_total <"$1.metrics")
    [ -n "$h" ] && [ -n "$m" ] || die "no hit/miss counters for $FN in /metrics"
    awk -v h="$h" -v m="$m" 'BEGIN { printf "%.1f", (h + m) ? 100 * h / (h + m) : 0 }'
}

echo "modcache demo: $FN over SQLite, $USERS users, Zipf s=1.0, $THREADS client threads, $DURATION s per run"
echo "(scratch directory $SCRATCH, removed at exit)"

echo "-- memoized (the database is seeded by the first host)" >&2
start cached
CACHED_PID=$PID CACHED_PORT=$PORT
load cached
HIT=$(hit_ratio cached)

echo "-- not memoized, same database" >&2
start uncached
load uncached
stop "$PID"

echo "-- memoized, $LATENCY added to every query" >&2
start cached_slow
load cached_slow
HIT_SLOW=$(hit_ratio cached_slow)
stop "$PID"

echo "-- not memoized, $LATENCY added to every query" >&2
start uncached_slow
load uncached_slow
stop "$PID"

row() { # row LABEL NAME
    printf '  %-36s %10s %9s %8s %8s %7s\n' "$1" "$(val "$2" requests)" "$(val "$2" rps)" \
        "$(val "$2" p50_ms)" "$(val "$2" p99_ms)" "$(val "$2" errors)"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf("%.2fx", (b > 0) ? a / b : 0) }'; }

echo
echo "== throughput and latency"
printf '  %-36s %10s %9s %8s %8s %7s\n' "" requests "req/s" "p50 ms" "p99 ms" errors
row "SQLite, memoized" cached
row "SQLite, not memoized" uncached
row "SQLite + $LATENCY per query, memoized" cached_slow
row "SQLite + $LATENCY per query, not memoized" uncached_slow
echo "  hit ratio: $HIT % (SQLite), $HIT_SLOW % (+ $LATENCY per query)"
echo "  speed-up from memoization, req/s: $(ratio "$(val cached rps)" "$(val uncached rps)") (SQLite)," \
    "$(ratio "$(val cached_slow rps)" "$(val uncached_slow rps)") (+ $LATENCY per query)"
echo "  speed-up from memoization, p50: $(ratio "$(val uncached p50_ms)" "$(val cached p50_ms)") (SQLite)," \
    "$(ratio "$(val uncached_slow p50_ms)" "$(val cached_slow p50_ms)") (+ $LATENCY per query)"
echo "  (SQLite answers in-process in microseconds, so HTTP dominates; a database across a network"
echo "   costs about a millisecond per query, which is what memoization saves)"

echo
echo "== a write, an invalidation, the guard (memoized host, 127.0.0.1:$CACHED_PORT)"
PORT=$CACHED_PORT
USER_ID=user42
http GET "$USERS_PATH/$USER_ID" ""
echo "  GET $USERS_PATH/$USER_ID -> $STATUS $BODY"
NEW=Platform # not in the seeded list, so always a change
http PUT "$USERS_PATH/$USER_ID" "{\"department\": \"$NEW\"}"
echo "  PUT $USERS_PATH/$USER_ID {\"department\": \"$NEW\"} -> $STATUS $BODY"
[ "$STATUS" = 200 ] || die "PUT answered $STATUS"
http GET "$USERS_PATH/$USER_ID" ""
echo "  GET $USERS_PATH/$USER_ID -> $STATUS $BODY"
case $BODY in *"\"department\": \"$NEW\""*) echo "  new department after PUT: $NEW" ;;
*) die "GET after PUT did not show $NEW" ;; esac
http GET "$USERS_PATH/blocked-user" ""
echo "  GET $USERS_PATH/blocked-user -> $STATUS $BODY (example_guard's deny list)"

LOADS_BEFORE=$(fn_metrics | metric modcache_cache_loads_total)
set +e
OUT=$("$MCCTL" --url "http://127.0.0.1:$PORT" --token-file admin.token invalidate "$FN" "[\"$USER_ID\"]" 2>&1)
RC=$?
set -e
echo "  mcctl invalidate $FN '[\"$USER_ID\"]' -> exit $RC: $OUT"
[ "$RC" = 0 ] || die "mcctl failed"
echo "  mcctl: ok"
http GET "$USERS_PATH/$USER_ID" ""
LOADS_AFTER=$(fn_metrics | metric modcache_cache_loads_total)
echo "  GET $USERS_PATH/$USER_ID -> $STATUS $BODY (loads: $LOADS_BEFORE before, $LOADS_AFTER after: reloaded)"

echo
echo "== /metrics lines for $FN"
fn_metrics | sed 's/^/  /'

stop "$CACHED_PID"
