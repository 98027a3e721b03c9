#!/bin/sh
# Runs one libFuzzer target for a fixed time on a scratch copy of its committed seed corpus and
# fails (keeping the crashing input in <workdir>/artifacts/) when the target finds a fault.
#
#   run.sh [--fresh] <fuzzer> <workdir> <seconds>
#
# The seeds are tests/fuzz/corpus/<fuzzer name>/. --fresh empties <workdir> first (short,
# reproducible runs); without it the inputs earlier runs found in <workdir>/corpus are kept and
# the search goes on from them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
fresh=0
if [ "${1:-}" = "--fresh" ]; then
    fresh=1
    shift
fi
if [ $# -ne 3 ]; then
    echo "usage: $0 [--fresh] <fuzzer> <workdir> <seconds>" >&2
    exit 2
fi
fuzzer=$1 work=$2 seconds=$3
name=$(basename "$fuzzer")
seeds=$here/corpus/$name

# Per-target options: the largest input worth trying and a dictionary of the format's tokens.
case $name in
    fuzz_config) flags="-max_len=8192 -dict=$here/dict/config.dict" ;;
    fuzz_json_key) flags="-max_len=4096 -dict=$here/dict/json_key.dict" ;;
    fuzz_key_codec) flags="-max_len=4096" ;;
    fuzz_admin_http) flags="-max_len=4096 -dict=$here/dict/admin_http.dict" ;;
    fuzz_snapshot) flags="-max_len=8192 -dict=$here/dict/snapshot.dict" ;;
    *) echo "$0: unknown fuzz target $name" >&2; exit 2 ;;
esac

if [ "$fresh" = 1 ]; then
    rm -rf "$work"
fi
mkdir -p "$work/corpus" "$work/artifacts"
# Seeds are copied, never fuzzed in place: libFuzzer writes new inputs into its first corpus
# directory. -n keeps a file already there under the same name.
cp -n "$seeds"/* "$work/corpus/"

echo "$name: ${seconds}s on $(ls "$work/corpus" | wc -l) inputs in $work"
status=0
# shellcheck disable=SC2086 # $flags is a list of options
# use_unaligned: the cache keeps out-of-line entry pointers in 14-byte index cells, two of three
# of them not 8-byte aligned; without it LeakSanitizer would not see those pointers.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} LSAN_OPTIONS=${LSAN_OPTIONS:-use_unaligned=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$fuzzer" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" $flags "$work/corpus" >"$work/log" 2>&1 || status=$?
# The last progress lines (executions, cov:, ft:, corpus size, exec/s) and the final figures.
grep -E '^#[0-9]+' "$work/log" | tail -n 2 || true
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log" || true
if [ "$status" -ne 0 ]; then
    echo "$name failed (exit $status); the end of its output:" >&2
    tail -n 80 "$work/log" >&2
    ls -l "$work/artifacts" >&2 || true
    exit 1
fi
