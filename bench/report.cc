// bench/report.cc: mc_compare's outputs for other programs and for people: the JSON record
// list, and the report directory (results.md, results.json, the charts' data files).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <filesystem>

#include "compare.h"
#include "zipf.h"

namespace mcbench {
namespace {

void json_number(FILE *f, double v, const char *format) {
    if (std::isnan(v))
        std::fputs("null", f);
    else
        std::fprintf(f, format, v);
}

// A figure for a table cell, "-" when it was not measured.
std::string cell(double v, const char *format) { return std::isnan(v) ? "-" : fmt(format, v); }

// For gnuplot: "?" is declared as the missing-data marker in bench/charts.gp.
std::string datum(double v, const char *format) { return std::isnan(v) ? "?" : fmt(format, v); }

double ops(const Row *r) { return r ? r->ops_per_sec : kNull; }
double ns(const Row *r) { return r ? r->ns_per_op : kNull; }
double bytes(const Row *r) { return r ? r->bytes_per_entry : kNull; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// The targets: ratios between systems measured in this run, stated, never enforced.

const char *target_status(const Target &t) { return t.met < 0 ? "n/a" : t.met ? "PASS" : "MISS"; }

namespace {

constexpr const char *kNotMeasured = "not measured in this run";

std::string times(double x) { return fmt(x >= 10 ? "%.0fx" : "%.2fx", x); }

// a / b, NaN unless both were measured and b is positive.
double quotient(double a, double b) { return !std::isnan(a) && !std::isnan(b) && b > 0 ? a / b : kNull; }

// A target on figure x (NaN: not measured, then `why` says why); `figure` prints it.
void add_target(std::vector<Target> &out, const std::string &what, double x, bool met, const std::string &figure,
                const std::string &why = kNotMeasured) {
    Target t;
    t.what = what;
    if (std::isnan(x)) {
        t.measured = why;
    } else {
        t.measured = figure;
        t.met = met;
    }
    out.push_back(t);
}

// Why a ratio of num's figure to den's is missing: den's own reason when only den is absent.
std::string why_missing(const Row *num, const Row *den, const char *den_absent) {
    return num && !den && den_absent ? den_absent : kNotMeasured;
}

const Row *zipf_row(const std::vector<Row> &rows, const char *system, const char *policy, const char *workload,
                    int threads) {
    return find_row(rows, system, policy, workload, threads, kZipfCacheEntries);
}

}  // namespace

std::vector<Target> targets(const std::vector<Row> &rows, bool have_trace) {
    std::vector<Target> out;
    static const char *const kPolicies[] = {"lru", "s3fifo"};

    // Zipf get+put: throughput ratios against the baselines at the same thread count.
    const struct {
        int threads;
        const char *system;
        double goal;
        const char *absent;  // why the baseline may be missing from a run that has modcache's rows
    } getput[] = {
        {1, "mutex-lru", 1.0, nullptr},
        {2, "mutex-lru", 4.0, nullptr},
        {2, "libcuckoo", 1.0, "libcuckoo not built or not run"},
        {2, "caffeine", 3.0, "caffeine not run (it needs --peer, as make bench passes)"},
    };
    for (const auto &g : getput) {
        const Row *base = zipf_row(rows, g.system, "", "zipf-getput", g.threads);
        for (const char *pol : kPolicies) {
            const Row *mc = zipf_row(rows, "modcache", pol, "zipf-getput", g.threads);
            const double x = quotient(ops(mc), ops(base));
            add_target(out,
                       fmt("modcache/%s get+put %d thread%s >= %gx %s %d thread%s", pol, g.threads,
                           g.threads == 1 ? "" : "s", g.goal, g.system, g.threads, g.threads == 1 ? "" : "s"),
                       x, x >= g.goal, times(x), why_missing(mc, base, g.absent));
        }
    }

    // Read-only: scaling from 1 to 2 threads, and the 1-thread hot path against the ceiling.
    for (const char *pol : kPolicies) {
        const Row *ro1 = zipf_row(rows, "modcache", pol, "zipf-readonly", 1);
        const Row *ro2 = zipf_row(rows, "modcache", pol, "zipf-readonly", 2);
        const double x = quotient(ops(ro2), ops(ro1));
        add_target(out, fmt("modcache/%s read-only 2 threads >= 1.8x 1 thread", pol), x, x >= 1.8, times(x));
    }
    for (const char *pol : kPolicies) {
        const Row *ro1 = zipf_row(rows, "modcache", pol, "zipf-readonly", 1);
        const Row *nl1 = zipf_row(rows, "nolimit-hash", "", "zipf-readonly", 1);
        const double x = quotient(ops(ro1), ops(nl1));
        add_target(out, fmt("modcache/%s read-only 1 thread >= 60%% of nolimit-hash 1 thread", pol), x, x >= 0.6,
                   fmt("%.0f%%", 100 * x));
    }

    // Memory beyond key and value: small (inline) items, then out-of-line ones.
    const struct {
        const char *workload;
        double limit;
    } memory[] = {{"memory", 32.0}, {"memory-ool", 56.0}};
    for (const auto &m : memory)
        for (const char *pol : kPolicies)
            for (size_t n : kMemorySizes) {
                const double b = bytes(find_row(rows, "modcache", pol, m.workload, 0, n));
                add_target(out,
                           fmt("modcache/%s %s %zu entries <= %.0f B/entry beyond key and value", pol, m.workload, n,
                               m.limit),
                           b, b <= m.limit, fmt("%.1f B", b));
            }

    // Memoized hits (memo-hit, 2-field key) and the memoized lookup against its database.
    {
        const double t = ns(find_row(rows, "modcache-memo-copy", "", "memo-hit", 1, kMemoCacheSize));
        add_target(out, "modcache-memo-copy hit 1 thread <= 30 ns", t, t <= 30.0, fmt("%.1f ns", t));
    }
    for (int t : {1, 2}) {
        const double x = quotient(ns(find_row(rows, "modcache-memo", "", "memo-hit", t, kMemoCacheSize)),
                                  ns(find_row(rows, "modcache-raw-get", "", "memo-hit", t, kMemoCacheSize)));
        add_target(out, fmt("modcache-memo hit %d thread%s <= 1.5x modcache-raw-get time", t, t == 1 ? "" : "s"), x,
                   x <= 1.5, times(x));
    }
    {
        const Row *memo = find_row(rows, "modcache-memo", "", "db-lookup", 1, kDbMemoCacheSize);
        const Row *sql = find_row(rows, "sqlite-query", "", "db-lookup", 1, kDbUsers);
        const double x = quotient(ops(memo), ops(sql));
        add_target(out, "modcache-memo db-lookup 1 thread >= 100x sqlite-query ops/s", x, x >= 100.0, times(x),
                   why_missing(memo, sql, "sqlite-query not run"));
    }

    // Miss ratio on cloudphysics.txt: the worst difference from the reference over the sizes.
    const struct {
        const char *policy;
        const RefRow *ref;
        bool one_sided;  // "or better": only a higher miss ratio counts against it
        const char *what;
    } trace[] = {
        {"lru", &kRefLru, false, "modcache/lru cloudphysics within 0.01 of exact LRU at every size"},
        {"s3fifo", &kRefS3fifo, true, "modcache/s3fifo cloudphysics <= S3-FIFO + 0.01 at every size"},
    };
    for (const auto &t : trace) {
        double worst = 0.0;
        bool all = have_trace;
        for (size_t i = 0; i < kNumTraceSizes && all; i++) {
            const Row *r = find_row(rows, "modcache", t.policy, "cloudphysics", 1, kTraceSizes[i]);
            if (!r) {
                all = false;
                break;
            }
            // Every seed counts: the highest miss ratio (and, two-sided, the lowest) of the seeds.
            const double hi = 1.0 - (std::isnan(r->hit_min) ? r->hit_ratio : r->hit_min);
            const double lo = 1.0 - (std::isnan(r->hit_max) ? r->hit_ratio : r->hit_max);
            for (double m : {hi, lo}) {
                const double d = m - t.ref->miss[i];
                if (t.one_sided ? d > worst : std::fabs(d) > std::fabs(worst)) worst = d;
            }
        }
        // The references have 4 decimals: judge the difference at that precision too.
        worst = std::round(worst * 1e4) / 1e4 + 0.0;
        const bool pass = t.one_sided ? worst <= 0.01 + 1e-9 : std::fabs(worst) <= 0.01 + 1e-9;
        add_target(out, t.what, all ? worst : kNull, pass, fmt("worst %+.4f", worst),
                   have_trace ? kNotMeasured : "no cloudphysics trace file");
    }
    return out;
}

std::vector<Target> informational(const std::vector<Row> &rows) {
    std::vector<Target> out;
    const Row *memo = find_row(rows, "modcache-memo", "", "db-lookup", 1, kDbMemoCacheSize);
    const Row *red = find_row(rows, "redis-get", "", "db-lookup", 1, kDbUsers);
    const double x = quotient(ops(memo), ops(red));
    add_target(out, "modcache-memo db-lookup 1 thread vs redis-get ops/s", x, false, times(x),
               why_missing(memo, red, "redis-get not run"));
    out.back().met = -1;
    return out;
}

namespace {

// ---------------------------------------------------------------------------------------------
// results.md

void md_header(FILE *f, const RunInfo &info) {
    std::fprintf(f, "# modcache benchmark results\n\n");
    std::fprintf(f, "modcache %s, `mc_compare` %s, %s.\n\n", info.version.c_str(),
                 info.quick ? "--quick run (short windows, 2^20-request Zipf trace: indicative only)" : "full run",
                 info.date.c_str());
    std::fprintf(f, "| machine | |\n|---|---|\n");
    std::fprintf(f, "| CPU | %s |\n", info.cpu.c_str());
    std::fprintf(f, "| hardware threads | %u |\n", info.hw_threads);
    std::fprintf(f, "| kernel | %s |\n", info.kernel.c_str());
    std::fprintf(f, "| compiler | %s (%s) |\n", info.compiler.c_str(), info.build_type.c_str());
    std::fprintf(f, "| allocator | jemalloc, linked into mc_compare |\n");
    std::fprintf(f, "| load average (1 min) at start, at end | %s, %s |\n\n", cell(info.load_start, "%.2f").c_str(),
                 cell(info.load_end, "%.2f").c_str());
    std::fprintf(f,
                 "Every figure comes from this one run: the systems ran one after another on the same request\n"
                 "traces, in one process (a --peer system in its own, see the notes). Runs on a shared machine\n"
                 "vary by about 10-30%%, so read systems against each other (the ratios), not against figures\n"
                 "from another run. A load average well above 0 means other programs competed for the cores:\n"
                 "2-thread figures suffer first.\n");
    if (!info.notes.empty()) {
        std::fprintf(f, "\n");
        for (const std::string &n : info.notes) std::fprintf(f, "- %s\n", n.c_str());
    }
}

void md_targets(FILE *f, const std::vector<Row> &rows, const RunInfo &info) {
    std::fprintf(f, "\n## Targets\n\n"
                    "Ratios and bounds computed from this run's figures, the list mc_compare prints. They are\n"
                    "reported, not enforced; n/a: not measured in this run (the reason is given).\n\n");
    std::fprintf(f, "| target | measured | result |\n|---|---|---|\n");
    for (const Target &t : targets(rows, info.have_trace))
        std::fprintf(f, "| %s | %s | %s |\n", t.what.c_str(), t.measured.c_str(), target_status(t));
    std::fprintf(f, "\nAlso measured, without a target:\n\n");
    for (const Target &t : informational(rows)) std::fprintf(f, "- %s: %s\n", t.what.c_str(), t.measured.c_str());
}

// How far apart a measurement's runs were: half the range, relative to the median.
std::string spread(const Row &r) {
    if (std::isnan(r.ops_min) || std::isnan(r.ops_max) || !(r.ops_per_sec > 0) || r.ops_max <= r.ops_min) return "";
    return fmt(" ±%.0f%%", 50.0 * (r.ops_max - r.ops_min) / r.ops_per_sec);
}

std::string runs_phrase(const RunInfo &info) {
    return info.repeat > 1 ? fmt("the median of %d runs, interleaved with the other systems' runs", info.repeat)
                           : std::string("one run each");
}

bool has_workload(const std::vector<Row> &rows, const char *workload) {
    for (const Row &r : rows)
        if (r.workload == workload) return true;
    return false;
}

void md_zipf(FILE *f, const std::vector<Row> &rows, const RunInfo &info) {
    if (!has_workload(rows, "zipf-getput") && !has_workload(rows, "zipf-readonly")) return;
    std::fprintf(f,
                 "\n## Zipf throughput\n\n"
                 "Zipf(%.2f) over %u keys, %zu requests (splitmix64 seed %llu); a %zu-entry cache preloaded with\n"
                 "keys %zu..0; each thread walks the trace from its own offset for %.2f s after %.2f s of\n"
                 "warm-up; %s. get+put: a get, and a put on a miss; read-only: gets. Millions of\n"
                 "operations per second%s.\n\n",
                 kZipfExponent, kZipfKeys, info.zipf_requests, static_cast<unsigned long long>(kZipfSeed),
                 kZipfCacheEntries, kZipfCacheEntries - 1, info.window, info.warm, runs_phrase(info).c_str(),
                 info.repeat > 1 ? "; ± is half the range of the runs, relative to the median" : "");
    std::vector<std::string> names;
    for (const Row &r : rows) {
        if (r.workload != "zipf-getput" && r.workload != "zipf-readonly") continue;
        if (std::find(names.begin(), names.end(), label(r)) == names.end()) names.push_back(label(r));
    }
    auto lookup = [&](const std::string &name, const char *w, int t) -> const Row * {
        for (const Row &r : rows)
            if (label(r) == name && r.workload == w && r.threads == t && r.cache_size == kZipfCacheEntries) return &r;
        return nullptr;
    };
    std::fprintf(f, "| system | get+put 1 thread | get+put 2 threads | 2T / 1T | read-only 1 thread | "
                    "read-only 2 threads | 2T / 1T |\n|---|---|---|---|---|---|---|\n");
    for (const std::string &name : names) {
        std::fprintf(f, "| %s", name.c_str());
        for (const char *w : {"zipf-getput", "zipf-readonly"}) {
            const Row *a = lookup(name, w, 1), *b = lookup(name, w, 2);
            for (const Row *x : {a, b})
                std::fprintf(f, " | %s", x ? fmt("%.2f%s", x->ops_per_sec / 1e6, spread(*x).c_str()).c_str() : "-");
            std::fprintf(f, " | %s", a && b ? fmt("%.2fx", b->ops_per_sec / a->ops_per_sec).c_str() : "-");
        }
        std::fprintf(f, " |\n");
    }
    std::fprintf(f, "\nHit ratios of the same runs. nolimit-hash and libcuckoo never evict: on get+put they miss\n"
                    "only a key's first request.\n\n");
    std::fprintf(f, "| system | get+put 1 thread | get+put 2 threads | read-only 1 thread | read-only 2 threads |\n"
                    "|---|---|---|---|---|\n");
    for (const std::string &name : names) {
        std::fprintf(f, "| %s", name.c_str());
        for (const char *w : {"zipf-getput", "zipf-readonly"})
            for (int t : {1, 2}) {
                const Row *x = lookup(name, w, t);
                std::fprintf(f, " | %s", x ? fmt("%.4f%s", x->hit_ratio, x->overlap ? "*" : "").c_str() : "-");
            }
        std::fprintf(f, " |\n");
    }
    bool overlap = false;
    for (const Row &r : rows) overlap |= r.overlap;
    if (overlap)
        std::fprintf(f, "\n\\* one thread ran ahead until it replayed requests another had just made: that hit ratio\n"
                        "may be inflated (ops/s is not affected).\n");
}

void md_db(FILE *f, const std::vector<Row> &rows, const RunInfo &info) {
    if (!has_workload(rows, "db-lookup")) return;
    std::fprintf(f,
                 "\n## db-lookup: user id to department\n\n"
                 "%zu users (`users(user_id TEXT PRIMARY KEY, department TEXT NOT NULL)`, user0..user%zu) looked\n"
                 "up in Zipf(%.2f) order. modcache-memo: an `mc_cached` function whose loader runs the SQLite\n"
                 "query, warmed with every user first (every measured call is a hit); sqlite-query: the same\n"
                 "prepared, indexed SELECT on a connection per thread, with the whole database in its page\n"
                 "cache; redis-get: one GET per round trip over 127.0.0.1 to a redis-server started by the\n"
                 "benchmark, a connection per thread. Every answer is checked. ops/s come from a %.2f s window;\n"
                 "p50 and p99 from a second pass that times each call on its own (each sample includes one\n"
                 "clock read, about %s ns here); each figure is %s.\n\n",
                 kDbUsers, kDbUsers - 1, kZipfExponent, info.window, cell(info.timer_ns, "%.0f").c_str(),
                 runs_phrase(info).c_str());
    std::fprintf(f, "| system | threads | ops/s | mean ns per call | p50 ns | p99 ns | p50 vs memo | memo ops/s vs this |\n"
                    "|---|---|---|---|---|---|---|---|\n");
    for (int t : {1, 2}) {
        const Row *memo = find_row(rows, "modcache-memo", "", "db-lookup", t, kDbMemoCacheSize);
        for (const Row &r : rows) {
            if (r.workload != "db-lookup" || r.threads != t) continue;
            const bool self = &r == memo;
            const std::string px = !self && memo && memo->p50_ns > 0 ? fmt("%.0fx", r.p50_ns / memo->p50_ns) : "-";
            const std::string ox = !self && memo ? fmt("%.0fx", memo->ops_per_sec / r.ops_per_sec) : "-";
            std::fprintf(f, "| %s | %d | %.0f%s | %.1f | %s | %s | %s | %s |\n", label(r).c_str(), t, r.ops_per_sec,
                         spread(r).c_str(), r.ns_per_op, cell(r.p50_ns, "%.0f").c_str(), cell(r.p99_ns, "%.0f").c_str(), px.c_str(),
                         ox.c_str());
        }
    }
}

void md_trace(FILE *f, const std::vector<Row> &rows, const RunInfo &info) {
    // A trace that was asked for but missing is explained among the notes.
    if (!info.have_trace || !has_workload(rows, "cloudphysics")) return;
    std::fprintf(f, "\n## Miss ratio on cloudphysics.txt\n\n");
    std::fprintf(f, "One thread, one pass from an empty cache; size in objects. The `ref` rows are libCacheSim's\n"
                    "figures for the same file (shared/data/README.md); `- ref` rows are measured minus reference.\n"
                    "modcache runs each size with %d fixed hash seeds (how keys split between shards moves the\n"
                    "miss ratio where a working set only just fits): its rows give the median, and the worst\n"
                    "seed's difference follows; the targets judge every seed.\n\n", kTraceSeeds);
    std::fprintf(f, "| system |");
    for (size_t s : kTraceSizes) std::fprintf(f, " %zu |", s);
    std::fprintf(f, "\n|---|");
    for (size_t i = 0; i < kNumTraceSizes; i++) std::fprintf(f, "---|");
    std::fprintf(f, "\n");
    for (const MissRatioSystem &m : kMissRatioSystems) {
        const std::string name = *m.policy ? std::string(m.system) + "/" + m.policy : m.system;
        std::string line = "| **" + name + "** |", diff = "| " + name + " - ref " + m.ref->name + " |";
        for (size_t i = 0; i < kNumTraceSizes; i++) {
            const Row *r = find_row(rows, m.system, m.policy, "cloudphysics", 1, kTraceSizes[i]);
            line += r ? fmt(" %.4f |", 1.0 - r->hit_ratio) : " - |";
            // Rounded first so that a difference of zero does not print as -0.0000.
            diff += r ? fmt(" %+.4f |", std::round(((1.0 - r->hit_ratio) - m.ref->miss[i]) * 1e4) / 1e4 + 0.0) : " - |";
        }
        std::fprintf(f, "%s\n%s\n", line.c_str(), diff.c_str());
        // Over the hash seeds: the worst seed against the reference.
        std::string worst = "| " + name + " worst of " + std::to_string(kTraceSeeds) + " seeds - ref |";
        bool seeds = false;
        for (size_t i = 0; i < kNumTraceSizes; i++) {
            const Row *r = find_row(rows, m.system, m.policy, "cloudphysics", 1, kTraceSizes[i]);
            if (!r || std::isnan(r->hit_min)) {
                worst += " - |";
                continue;
            }
            seeds = true;
            worst += fmt(" %+.4f |", std::round(((1.0 - r->hit_min) - m.ref->miss[i]) * 1e4) / 1e4 + 0.0);
        }
        if (seeds)
            std::fprintf(f, "%s\n", worst.c_str());
    }
    for (const RefRow &ref : kRefRows) {
        std::fprintf(f, "| ref %s |", ref.name);
        for (double v : ref.miss) std::fprintf(f, " %.4f |", v);
        std::fprintf(f, "\n");
    }
}

void md_memory(FILE *f, const std::vector<Row> &rows) {
    if (!has_workload(rows, "memory") && !has_workload(rows, "memory-ool")) return;
    std::fprintf(f, "\n## Memory per entry\n\n"
                    "jemalloc `stats.allocated` after inserting N keys minus before creating the cache, divided by\n"
                    "the entries held, minus the key and value bytes: what the structure costs beyond the data.\n"
                    "memory: small items, modcache keys one-field tuples (`mc_arg_uint`, 1-4 bytes) with 8-byte\n"
                    "values, which modcache keeps inline in its index; mutex-lru's are raw 8-byte integers.\n"
                    "memory-ool: %zu-byte keys with %zu-byte values, too large to be inline: each entry is an\n"
                    "allocation of its own.\n\n",
                 kOolKeyBytes, kOolValueBytes);
    std::fprintf(f, "| workload | system | N | entries held | key bytes | value bytes | bytes per entry beyond key and value |\n"
                    "|---|---|---|---|---|---|---|\n");
    for (const char *w : {"memory", "memory-ool"})
        for (const Row &r : rows)
            if (r.workload == w)
                std::fprintf(f, "| %s | %s | %zu | %zu | %.2f | %.0f | %.1f |\n", w, label(r).c_str(), r.cache_size,
                             r.entries_held, r.key_bytes, r.value_bytes, r.bytes_per_entry);
}

}  // namespace

const char *memo_note(const std::string &system) {
    if (system == "modcache-memo") return "pinned: mc_cached_call";
    if (system == "modcache-memo-copy") return "copied out: mc_cached_call_copy";
    if (system == "modcache-memo-borrow") return "borrowed: mc_cached_call_borrow, one read section per 64 calls";
    if (system == "modcache-raw-get") return "mc_cache_get of the encoded key";
    return "";
}

namespace {

void md_memo(FILE *f, const std::vector<Row> &rows, const RunInfo &info) {
    if (has_workload(rows, "memo-hit")) {
        std::fprintf(f, "\n## Memoized hit against the raw get beneath it\n\n"
                        "A memoized function's hit with its 2-field key `(\"@user12345:example.com\", n)` built per\n"
                        "call: pinned (`mc_cached_call` + `mc_value_release`, modcache-memo), copied out\n"
                        "(`mc_cached_call_copy`, modcache-memo-copy) and borrowed (`mc_cached_call_borrow`,\n"
                        "modcache-memo-borrow: one read section, `mc_read_begin` .. `mc_read_end`, held around each\n"
                        "batch of 64 calls a thread makes); against `mc_cache_get` + `mc_value_release` of the\n"
                        "pre-encoded key on the function's own cache (modcache-raw-get). %zu keys in Zipf order;\n"
                        "every value is checked. ns per call is one call's time on one thread; %s.\n\n",
                     kMemoKeys, runs_phrase(info).c_str());
        std::fprintf(f, "| system | threads | M ops/s | ns per call | vs raw get | call |\n|---|---|---|---|---|---|\n");
        for (int t : {1, 2}) {
            const Row *raw = find_row(rows, "modcache-raw-get", "", "memo-hit", t, kMemoCacheSize);
            for (const Row &r : rows) {
                if (r.workload != "memo-hit" || r.threads != t) continue;
                const std::string x = &r != raw && raw && raw->ns_per_op > 0 ? fmt("%.2fx", r.ns_per_op / raw->ns_per_op) : "-";
                std::fprintf(f, "| %s | %d | %.2f%s | %.1f | %s | %s |\n", label(r).c_str(), t, r.ops_per_sec / 1e6,
                             spread(r).c_str(), r.ns_per_op, x.c_str(), memo_note(r.system));
            }
        }
    }
    const Row *sf = find_row(rows, "modcache-memo", "", "single-flight", kSingleFlightThreads, kSingleFlightCacheSize);
    if (sf)
        std::fprintf(f, "\nSingle-flight: %d threads calling the same %zu missing keys together caused %lld loader calls\n"
                        "(%zu expected); %llu calls joined a load another thread had started.\n",
                     kSingleFlightThreads, kSingleFlightKeys, sf->loader_calls, kSingleFlightKeys,
                     static_cast<unsigned long long>(sf->joined));
}

// ---------------------------------------------------------------------------------------------
// Chart data: one file per chart panel, read by bench/charts.gp.

bool write_file(const std::string &path, const std::string &text, std::string *err) {
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) {
        *err = path + ": " + std::strerror(errno);
        return false;
    }
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) {
        *err = path + ": write failed";
        return false;
    }
    return true;
}

// Rows: system, M ops/s at 1 and at 2 threads.
std::string throughput_data(const std::vector<Row> &rows, const char *workload) {
    std::string out = fmt("# %s: system, M ops/s at 1 thread, at 2 threads\n", workload);
    std::vector<std::string> seen;
    for (const Row &r : rows) {
        if (r.workload != workload) continue;
        const std::string name = label(r);
        bool dup = false;
        for (const std::string &s : seen) dup |= s == name;
        if (dup) continue;
        seen.push_back(name);
        const Row *a = nullptr, *b = nullptr;
        for (const Row &x : rows) {
            if (x.workload != workload || label(x) != name) continue;
            if (x.threads == 1) a = &x;
            if (x.threads == 2) b = &x;
        }
        out += fmt("\"%s\" %s %s\n", name.c_str(), datum(a ? a->ops_per_sec / 1e6 : kNull, "%.4f").c_str(),
                   datum(b ? b->ops_per_sec / 1e6 : kNull, "%.4f").c_str());
    }
    return out;
}

std::string missratio_data(const std::vector<Row> &rows) {
    std::string out = "# cache size, miss ratio of modcache/lru, modcache/s3fifo, mutex-lru, then the reference rows:";
    for (const RefRow &ref : kRefRows) out += fmt(" %s;", ref.name);
    out += "\n";
    for (size_t i = 0; i < kNumTraceSizes; i++) {
        out += fmt("%zu", kTraceSizes[i]);
        static const struct {
            const char *system, *policy;
        } kMeasured[] = {{"modcache", "lru"}, {"modcache", "s3fifo"}, {"mutex-lru", ""}};
        for (const auto &m : kMeasured) {
            const Row *r = find_row(rows, m.system, m.policy, "cloudphysics", 1, kTraceSizes[i]);
            out += " " + datum(r ? 1.0 - r->hit_ratio : kNull, "%.4f");
        }
        for (const RefRow &ref : kRefRows) out += fmt(" %.4f", ref.miss[i]);
        out += "\n";
    }
    return out;
}

// Variables for bench/charts.gp: a line naming the run, under each chart's title.
std::string plot_meta(const RunInfo &info) {
    std::string note = fmt("modcache %s, %s, %s; %u hardware threads, load average %s -> %s", info.version.c_str(),
                           info.quick ? "--quick run" : "full run", info.date.c_str(), info.hw_threads,
                           cell(info.load_start, "%.1f").c_str(), cell(info.load_end, "%.1f").c_str());
    // A gnuplot double-quoted string: only the quote and the backslash need escaping.
    std::string quoted;
    for (char c : note) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
    }
    return "run_note = \"" + quoted + "\"\n";
}

}  // namespace

void print_json(FILE *f, const std::vector<Row> &rows) {
    std::fputs("[\n", f);
    for (size_t i = 0; i < rows.size(); i++) {
        const Row &r = rows[i];
        // Every name printed here is a fixed ASCII identifier: no escaping is needed.
        std::fprintf(f, "  {\"system\": \"%s\", \"policy\": ", r.system.c_str());
        if (r.policy.empty())
            std::fputs("null", f);
        else
            std::fprintf(f, "\"%s\"", r.policy.c_str());
        std::fprintf(f, ", \"workload\": \"%s\", \"threads\": ", r.workload.c_str());
        if (r.threads)
            std::fprintf(f, "%d", r.threads);
        else
            std::fputs("null", f);
        std::fprintf(f, ", \"cache_size\": %zu, \"ops_per_sec\": ", r.cache_size);
        json_number(f, r.ops_per_sec, "%.0f");
        std::fputs(", \"hit_ratio\": ", f);
        json_number(f, r.hit_ratio, "%.6f");
        std::fputs(", \"bytes_per_entry\": ", f);
        json_number(f, r.bytes_per_entry, "%.2f");
        // Fields only some workloads have are left out of the others' records.
        if (!std::isnan(r.ns_per_op)) {
            std::fputs(", \"ns_per_op\": ", f);
            json_number(f, r.ns_per_op, "%.2f");
        }
        if (!std::isnan(r.p50_ns)) {
            std::fputs(", \"p50_ns\": ", f);
            json_number(f, r.p50_ns, "%.0f");
        }
        if (!std::isnan(r.p99_ns)) {
            std::fputs(", \"p99_ns\": ", f);
            json_number(f, r.p99_ns, "%.0f");
        }
        if (r.loader_calls >= 0) std::fprintf(f, ", \"loader_calls\": %lld", r.loader_calls);
        std::fprintf(f, "}%s\n", i + 1 < rows.size() ? "," : "");
    }
    std::fputs("]\n", f);
}

bool write_report(const std::string &dir, const std::vector<Row> &rows, const RunInfo &info, std::string *err) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
        *err = dir + ": " + ec.message();
        return false;
    }
    // Each file is written whole through a memory stream, then to disk in one go.
    auto render = [](auto body) {
        char *buf = nullptr;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) return std::string();
        body(m);
        std::fclose(m);
        std::string s(buf, len);
        std::free(buf);
        return s;
    };
    const std::string json = render([&](FILE *m) { print_json(m, rows); });
    const std::string md = render([&](FILE *m) {
        md_header(m, info);
        md_targets(m, rows, info);
        md_zipf(m, rows, info);
        md_db(m, rows, info);
        md_trace(m, rows, info);
        md_memory(m, rows);
        md_memo(m, rows, info);
        std::fprintf(m, "\nCharts: throughput.png (Zipf and db-lookup throughput by system and threads) and\n"
                        "missratio.png (cloudphysics miss ratio by cache size, with the reference rows).\n");
    });
    if (json.empty() || md.empty()) {
        *err = "out of memory";
        return false;
    }
    return write_file(dir + "/results.json", json, err) && write_file(dir + "/results.md", md, err) &&
           write_file(dir + "/plot-zipf-getput.dat", throughput_data(rows, "zipf-getput"), err) &&
           write_file(dir + "/plot-zipf-readonly.dat", throughput_data(rows, "zipf-readonly"), err) &&
           write_file(dir + "/plot-db-lookup.dat", throughput_data(rows, "db-lookup"), err) &&
           write_file(dir + "/plot-missratio.dat", missratio_data(rows), err) &&
           write_file(dir + "/plot-meta.gp", plot_meta(info), err);
}

}  // namespace mcbench
