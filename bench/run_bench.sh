#!/bin/sh
# bench/run_bench.sh: what `make bench` runs: mc_compare at full length, the charts, then the
# bus latency and token timing programs;
# writes BUILD/bench-results/ (results.md, results.json, throughput.png, missratio.png).
set -eu

usage() {
    cat <<'USAGE'
usage: bench/run_bench.sh [--docs] [BUILD_DIR] [-- MC_COMPARE_OPTIONS...]

Runs BUILD_DIR/bench/mc_compare (default build/) with every workload and writes
BUILD_DIR/bench-results/: results.md (tables), results.json (one record per system, workload
and thread count), throughput.png and missratio.png (gnuplot), plus the charts' data files.
Options after -- go to mc_compare (e.g. -- --quick for a short run).
  --docs   also copy the charts to docs/benchmarks-throughput.png and
           docs/benchmarks-missratio.png
USAGE
}

here=$(cd "$(dirname "$0")" && pwd)
build=build
docs=0
while [ $# -gt 0 ]; do
    case $1 in
        --docs) docs=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) echo "run_bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) build=$1 ;;
    esac
    shift
done

mc=$build/bench/mc_compare
out=$build/bench-results
if [ ! -x "$mc" ]; then
    echo "run_bench.sh: $mc not found: build first (make build, or cmake --build $build)" >&2
    exit 2
fi
mkdir -p "$out"
# A chart left from an earlier run must not pass for this run's.
rm -f "$out/throughput.png" "$out/missratio.png"

start=$(date +%s)
echo "==> [1/3] $mc: every workload (a few minutes; one line per measurement, elapsed time in brackets)"
"$mc" --report "$out" "$@"

echo "==> [2/3] charts (gnuplot)"
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot -e "dir='$out'" "$here/charts.gp"
    if [ "$docs" -eq 1 ]; then
        cp "$out/throughput.png" "$here/../docs/benchmarks-throughput.png"
        cp "$out/missratio.png" "$here/../docs/benchmarks-missratio.png"
        echo "    copied the charts to docs/benchmarks-throughput.png and docs/benchmarks-missratio.png"
    fi
else
    echo "    gnuplot not found: charts skipped (apt-get install gnuplot-nox, or make bench-deps)"
fi

# The invalidation bus and the admin token check: their own programs, appended to results.md.
echo "==> [3/3] invalidation bus latency and rate, admin token timing"
quick=
for a in "$@"; do [ "$a" = "--quick" ] && quick=--quick; done
{
    echo
    echo "## Invalidation bus (bench_bus: two hosts in one process, redis-server on loopback)"
    echo
    echo '```'
    "$build/bench/bench_bus" $quick 2>/dev/null || echo "bench_bus failed (is redis-server installed?)"
    echo '```'
    echo
    echo "## Admin token check (bench_admin_auth)"
    echo
    echo '```'
    "$build/bench/bench_admin_auth" $quick || echo "bench_admin_auth failed"
    echo '```'
} >> "$out/results.md"

# The HTTP server under 5,000 idle and 1,000 trickling connections: appended to results.md.
{
    echo
    echo "## HTTP under hostile connections (bench_http_load: an mchost process on loopback)"
    echo
    echo '```'
    "$build/bench/bench_http_load" $quick || echo "bench_http_load failed"
    echo '```'
} >> "$out/results.md"

echo "==> done in $(( $(date +%s) - start )) s: $out/results.md, results.json, throughput.png, missratio.png"
