// bench/compare.h: what the parts of mc_compare share: the result record, the workloads' fixed
// parameters and reference figures, error helpers, and the entry points of its other files.
#ifndef MODCACHE_BENCH_COMPARE_H
#define MODCACHE_BENCH_COMPARE_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace mcbench {

using Clock = std::chrono::steady_clock;

constexpr double kNull = std::numeric_limits<double>::quiet_NaN();

// Zipf throughput: the cache bound, preloaded with keys kZipfCacheEntries-1..0.
constexpr size_t kZipfCacheEntries = 100000;
constexpr size_t kQuickRequests = size_t{1} << 20;

// Trace miss ratio: cache sizes in objects, and libCacheSim's miss ratios on cloudphysics.txt
// at those sizes (shared/data/README.md).
inline constexpr size_t kTraceSizes[] = {500, 2000, 5000, 10000, 20000};
constexpr size_t kNumTraceSizes = sizeof kTraceSizes / sizeof kTraceSizes[0];
struct RefRow {
    const char *name;
    double miss[kNumTraceSizes];
};
inline constexpr RefRow kRefRows[] = {
    {"exact LRU", {0.8378, 0.8271, 0.8038, 0.6976, 0.6328}},
    {"CLOCK (1 bit)", {0.8368, 0.8262, 0.8032, 0.7443, 0.6336}},
    {"S3-FIFO", {0.8303, 0.8119, 0.7498, 0.6693, 0.6184}},
    {"SIEVE", {0.8288, 0.8203, 0.7886, 0.7118, 0.5658}},
    {"W-TinyLFU", {0.8466, 0.8253, 0.7745, 0.6804, 0.5253}},
};
constexpr size_t kNumRefRows = sizeof kRefRows / sizeof kRefRows[0];
inline constexpr const RefRow &kRefLru = kRefRows[0];
inline constexpr const RefRow &kRefS3fifo = kRefRows[2];

// The systems whose cloudphysics miss ratios are measured, each beside its reference row.
struct MissRatioSystem {
    const char *system, *policy;
    const RefRow *ref;
};
inline constexpr MissRatioSystem kMissRatioSystems[] = {
    {"modcache", "lru", &kRefLru},
    {"modcache", "s3fifo", &kRefS3fifo},
    {"mutex-lru", "", &kRefLru},
};

// Memory per entry: entries inserted. The memory workload stores small items (a one-field
// tuple key of 1-4 bytes and an 8-byte value, kept inline in the index: at most 14 bytes of
// key and value); memory-ool stores kOolKeyBytes-byte keys with kOolValueBytes-byte values,
// too large for that, each entry an allocation of its own.
inline constexpr size_t kMemorySizes[] = {100000, 1000000};
constexpr size_t kOolKeyBytes = 16;
constexpr size_t kOolValueBytes = 32;

// Memoized functions: keys of the memo-hit key set, requests in its Zipf access order, and the
// missing keys the single-flight check loads from two threads at once.
constexpr size_t kMemoKeys = 100000;
constexpr size_t kMemoRequests = size_t{1} << 20;
constexpr size_t kSingleFlightKeys = 1000;
constexpr int kSingleFlightThreads = 2;
constexpr int kSingleFlightSleepUs = 50;
// Twice the keys: shards split a bound evenly, and a shard given more than its share of the
// keys would evict some, turning hits into loads.
constexpr size_t kMemoCacheSize = 2 * kMemoKeys;
constexpr size_t kSingleFlightCacheSize = 2 * kSingleFlightKeys;

// db-lookup: users user0..user99999 looked up in Zipf order (key = rank - 1). The memoized
// function's bound is twice the users for the reason given above; redis-get and sqlite-query
// records carry the number of users they hold as their cache_size.
constexpr size_t kDbUsers = 100000;
constexpr size_t kDbRequests = size_t{1} << 20;
constexpr size_t kDbMemoCacheSize = 2 * kDbUsers;

// Stop the run: a broken cache or harness must not print a plausible but wrong figure.
// The hook set with set_die_hook runs first (it stops child processes, removes temp files).
[[noreturn]] void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void set_die_hook(void (*hook)());
// die() unless rc is 0, naming the call and the MC_E* code.
void check_rc(int rc, const char *what);
std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
// One line of progress on stderr, prefixed with the seconds since the run started.
void progress(const char *f, ...) __attribute__((format(printf, 1, 2)));
// Finish a progress line started with progress_begin (no prefix, newline added).
void progress_begin(const char *f, ...) __attribute__((format(printf, 1, 2)));
void progress_end(const char *f, ...) __attribute__((format(printf, 1, 2)));

struct Options {
    bool quick = false;
    bool json = false;
    bool verbose = false;
    std::string trace;
    std::string report_dir;    // empty: no report files
    std::string redis_server;  // empty: "redis-server" from PATH
    std::string peer;          // a program measured on the Zipf workloads in its own process (peer.h)
    double seconds = 0.0;      // 0: 2 s, or 0.3 s with --quick
    // Runs of each throughput and latency measurement, interleaved across systems so that a
    // change in the machine's load falls on all of them; the median is reported.
    int repeat = 0;            // 0: 3, or 1 with --quick
    std::vector<int> threads{1, 2};
    // Workload groups to run (all by default): zipf, cloudphysics, memory, memo, db-lookup.
    std::vector<std::string> workloads;
    bool runs(const char *group) const;
};

// One measured figure set: a system (with its policy) on a workload at a thread count. NaN
// fields print as null, or are left out of the JSON record for fields only some workloads have.
// cloudphysics: modcache runs each size with this many fixed hash seeds (1..N); its rows hold
// the median hit ratio, hit_min / hit_max the range, and the targets judge the worst seed.
constexpr int kTraceSeeds = 24;

struct Row {
    std::string system;
    std::string policy;  // empty: null
    std::string workload;
    int threads = 0;     // 0: null
    size_t cache_size = 0;
    double ops_per_sec = kNull;
    double hit_ratio = kNull;
    double bytes_per_entry = kNull;
    double ns_per_op = kNull;  // one call's average time on one thread (memo-hit, db-lookup)
    double p50_ns = kNull;     // latency percentiles of single calls (db-lookup)
    double p99_ns = kNull;
    long long loader_calls = -1;  // single-flight
    // Table-only details.
    double ops_min = kNull, ops_max = kNull;  // over the runs median_rows combined
    double hit_min = kNull, hit_max = kNull;  // cloudphysics: over the hash seeds (modcache)
    bool overlap = false;
    size_t entries_held = 0;
    double key_bytes = kNull;    // memory: per entry, subtracted with value_bytes
    double value_bytes = kNull;
    uint64_t joined = 0;  // single-flight: calls that waited for another thread's load
};

std::string label(const Row &r);
// One row per system, policy, workload, thread count and cache size, in order of first
// appearance: the median of each of its runs' ops_per_sec, p50_ns and p99_ns (taken apart),
// with the other fields of the run whose throughput is the median.
std::vector<Row> median_rows(const std::vector<Row> &runs);
const Row *find_row(const std::vector<Row> &rows, const std::string &system, const std::string &policy,
                    const std::string &workload, int threads, size_t cache_size);

// What the report says about the run besides the rows.
struct RunInfo {
    std::string version;       // mc_version()
    std::string date;          // UTC, ISO 8601
    std::string cpu;           // /proc/cpuinfo model name
    unsigned hw_threads = 0;
    std::string kernel;        // uname -sr
    std::string compiler;      // the compiler that built mc_compare
    std::string build_type;
    // /proc/loadavg's 1-minute figure when the run started and ended: on a shared machine,
    // anything well above 0 means other work competed for the cores while measuring.
    double load_start = kNull, load_end = kNull;
    size_t zipf_requests = 0;
    double window = 0.0, warm = 0.0;
    int repeat = 1;
    bool quick = false;
    bool have_trace = false;
    double timer_ns = kNull;   // what one clock read adds to a latency sample
    std::vector<std::string> notes;  // systems or workloads left out, and why; versions
};

// db_lookup.cc: the db-lookup workload (modcache-memo, redis-get, sqlite-query). Appends its
// rows; explains in info->notes anything it could not run.
void run_db_lookup(std::vector<Row> &rows, const Options &o, double warm, RunInfo *info);
void print_db_table(FILE *f, const std::vector<Row> &rows, const Options &o);

// report.cc: the targets, the machine-readable record list and the report directory.

// One target: a ratio or bound between figures of this run, stated and never enforced. `what`
// names the comparison and its goal in the words both the console and results.md print.
struct Target {
    std::string what;
    std::string measured;  // the figure; when not measured, why
    int met = -1;          // 1 PASS, 0 MISS, -1 n/a (not measured in this run)
};
const char *target_status(const Target &t);  // "PASS", "MISS" or "n/a"
// The targets, in order; have_trace says whether the cloudphysics workload ran.
std::vector<Target> targets(const std::vector<Row> &rows, bool have_trace);
// Comparisons reported beside the targets without a goal (met is always -1).
std::vector<Target> informational(const std::vector<Row> &rows);
// How a memo-hit system makes its call, for the tables ("" for other systems).
const char *memo_note(const std::string &system);
void print_json(FILE *f, const std::vector<Row> &rows);
// Write results.md, results.json and the charts' data (plot-*.dat) into dir (created if
// missing). Returns false with *err set on an I/O failure.
bool write_report(const std::string &dir, const std::vector<Row> &rows, const RunInfo &info, std::string *err);

}  // namespace mcbench

#endif
