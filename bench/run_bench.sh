#!/bin/sh
# bench/run_bench.sh: what `make bench` runs: mc_compare at full length (with Caffeine as its
# peer when a JDK is installed), the charts, then the bus latency, token timing and refresh programs;
# writes BUILD/bench-results/ (results.md, results.json, throughput.png, missratio.png).
set -eu

usage() {
    cat <<'USAGE'
usage: bench/run_bench.sh [--docs] [BUILD_DIR] [-- MC_COMPARE_OPTIONS...]

Runs BUILD_DIR/bench/mc_compare (default build/) with every workload and writes
BUILD_DIR/bench-results/: results.md (tables), results.json (one record per system, workload
and thread count), throughput.png and missratio.png (gnuplot), plus the charts' data files.
Options after -- go to mc_compare (e.g. -- --quick for a short run).
With a JDK (javac, java) and Debian's libcaffeine-java, bench/caffeine/ is compiled into
BUILD_DIR/bench/caffeine/ and mc_compare measures Caffeine on its Zipf workloads (--peer);
without them, one line says Caffeine was skipped and why. CAFFEINE_JAR=FILE uses another jar
than /usr/share/java/caffeine.jar.
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

# Caffeine: compiled here against Debian's jar, then started by mc_compare (--peer), which asks it
# for each Zipf run after its own systems' runs of the round. JVM: a fixed heap, so that it never
# resizes during a window, touched at start; the parallel collector, which works only in pauses,
# so that no collector thread competes with the measured threads for the cores.
caffeine_jar=${CAFFEINE_JAR:-/usr/share/java/caffeine.jar}
caffeine_classes=$(cd "$build" && pwd)/bench/caffeine
jvm_flags="-Xms1g -Xmx1g -XX:+UseParallelGC -XX:+AlwaysPreTouch"
skip=
if ! command -v javac >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    skip="no JDK: javac or java not found (apt-get install default-jdk-headless, or make bench-deps)"
elif [ ! -r "$caffeine_jar" ]; then
    skip="$caffeine_jar not found (apt-get install libcaffeine-java, or make bench-deps)"
else
    jar=$(readlink -f "$caffeine_jar")
    mkdir -p "$caffeine_classes"
    # Compiled again only when a source is newer than the classes.
    if [ ! -f "$caffeine_classes/CaffeineBench.class" ] ||
       [ -n "$(find "$here/caffeine" -name '*.java' -newer "$caffeine_classes/CaffeineBench.class")" ]; then
        if ! javac -d "$caffeine_classes" -cp "$jar" "$here"/caffeine/*.java 2>"$caffeine_classes/javac.log"; then
            rm -f "$caffeine_classes/CaffeineBench.class"
            skip="javac failed (see $caffeine_classes/javac.log)"
        fi
    fi
fi
if [ -n "$skip" ]; then
    echo "==> Caffeine skipped: $skip"
else
    echo "==> Caffeine ($jar): measured on the Zipf workloads as mc_compare's peer (java $jvm_flags)"
    set -- --peer "exec java $jvm_flags -cp '$caffeine_classes:$jar' CaffeineBench --serve" "$@"
fi

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

# The invalidation bus, the admin token check and refresh-ahead: their own programs, appended
# to results.md.
echo "==> [3/3] invalidation bus latency and rate, admin token timing, refresh-ahead latency"
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
    echo
    echo "## Refresh-ahead against expiry (bench_refresh: a 1 ms database, entries renewed each second)"
    echo
    echo '```'
    "$build/bench/bench_refresh" $quick || echo "bench_refresh failed"
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
