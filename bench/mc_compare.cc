// bench/mc_compare.cc: mc_compare, the comparison runner: modcache (LRU, S3-FIFO) against an
// exact mutex LRU, no-eviction maps (a lock-free one, libcuckoo), a system in another process
// (--peer: Caffeine on the JVM) and, for memoized lookups, SQLite and Redis, on Zipf throughput,
// trace miss ratio, memory and lookup latency; then the targets (report.cc) from those figures.
//
// Throughput figures are noisy (about +-30% between runs on a small machine), so every system
// runs in the same process on the same trace (a peer in its own, on a trace checked to be the
// same) and the tables report ratios between them.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/utsname.h>

#include <jemalloc/jemalloc.h>
#include <modcache/cache.h>
#include <modcache/cached.h>
#include <modcache/key.h>

#include "compare.h"
#include "harness.h"
#include "mutex_lru.h"
#include "nolimit_hash.h"
#include "peer.h"
#include "trace.h"
#include "zipf.h"
#if MODCACHE_HAVE_LIBCUCKOO
#include "libcuckoo_sys.h"
#endif

namespace mcbench {

namespace {
void (*g_die_hook)() = nullptr;
const Clock::time_point g_start = Clock::now();
}  // namespace

void set_die_hook(void (*hook)()) { g_die_hook = hook; }

void die(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    std::fputs("\nmc_compare: FATAL: ", stderr);
    std::vfprintf(stderr, f, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    if (g_die_hook) g_die_hook();
    std::abort();
}

// Any code other than the expected ones means the cache or the harness is broken: a benchmark
// that counted it as a miss would print a plausible but wrong figure.
void check_rc(int rc, const char *what) {
    if (rc != 0) die("%s returned %s (%d): %s", what, mc_err_name(rc), rc, mc_strerror(rc));
}

std::string fmt(const char *f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

namespace {
void vprogress(bool prefix, bool newline, const char *f, va_list ap) {
    if (prefix)
        std::fprintf(stderr, "[%6.1fs] ", std::chrono::duration<double>(Clock::now() - g_start).count());
    std::vfprintf(stderr, f, ap);
    if (newline) std::fputc('\n', stderr);
    std::fflush(stderr);
}
}  // namespace

void progress(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vprogress(true, true, f, ap);
    va_end(ap);
}

void progress_begin(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vprogress(true, false, f, ap);
    va_end(ap);
}

void progress_end(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vprogress(false, true, f, ap);
    va_end(ap);
}

bool Options::runs(const char *group) const {
    return workloads.empty() || std::find(workloads.begin(), workloads.end(), group) != workloads.end();
}

std::string label(const Row &r) { return r.policy.empty() ? r.system : r.system + "/" + r.policy; }

namespace {
double median_of(std::vector<double> v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
    if (v.empty()) return kNull;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
}  // namespace

std::vector<Row> median_rows(const std::vector<Row> &runs) {
    std::vector<Row> out;
    std::vector<bool> done(runs.size(), false);
    for (size_t i = 0; i < runs.size(); i++) {
        if (done[i]) continue;
        std::vector<const Row *> group;
        for (size_t j = i; j < runs.size(); j++) {
            const Row &a = runs[i], &b = runs[j];
            if (!done[j] && a.system == b.system && a.policy == b.policy && a.workload == b.workload &&
                a.threads == b.threads && a.cache_size == b.cache_size) {
                group.push_back(&b);
                done[j] = true;
            }
        }
        std::vector<double> ops, p50, p99;
        bool overlap = false;
        for (const Row *r : group) {
            ops.push_back(r->ops_per_sec);
            p50.push_back(r->p50_ns);
            p99.push_back(r->p99_ns);
            overlap |= r->overlap;
        }
        // The run nearest the median throughput lends its other fields (hit ratio and so on).
        const double mops = median_of(ops);
        const Row *mid = group[0];
        for (const Row *r : group)
            if (std::fabs(r->ops_per_sec - mops) < std::fabs(mid->ops_per_sec - mops)) mid = r;
        Row m = *mid;
        m.ops_per_sec = mops;
        m.ops_min = *std::min_element(ops.begin(), ops.end());
        m.ops_max = *std::max_element(ops.begin(), ops.end());
        if (!std::isnan(mops) && mops > 0 && m.threads > 0 && !std::isnan(m.ns_per_op))
            m.ns_per_op = static_cast<double>(m.threads) * 1e9 / mops;
        m.p50_ns = median_of(p50);
        m.p99_ns = median_of(p99);
        m.overlap = overlap;
        out.push_back(m);
    }
    return out;
}

const Row *find_row(const std::vector<Row> &rows, const std::string &system, const std::string &policy,
                    const std::string &workload, int threads, size_t cache_size) {
    for (const Row &r : rows)
        if (r.system == system && r.policy == policy && r.workload == workload && r.threads == threads &&
            r.cache_size == cache_size)
            return &r;
    return nullptr;
}

}  // namespace mcbench

namespace {

using namespace mcbench;

// ---------------------------------------------------------------------------------------------
// The systems under test. Each offers request(key, fill): a get, and on a miss a put of the
// key as value when `fill`; it returns whether the get hit. The worker loop is a template over
// them so the baselines are inlined: they must not be slowed by the harness.

class ModcacheSys {
public:
    ModcacheSys(size_t max_entries, mc_policy policy, uint64_t seed = 0) {
        mc_cache_options opts;
        mc_cache_options_init(&opts);
        opts.max_entries = max_entries;
        opts.policy = policy;
        opts.seed = seed;  // 0: random
        check_rc(mc_cache_create(&opts, &cache_), "mc_cache_create");
    }
    ~ModcacheSys() { mc_cache_destroy(cache_); }
    ModcacheSys(const ModcacheSys &) = delete;
    ModcacheSys &operator=(const ModcacheSys &) = delete;

    // Encoding is part of every request on purpose: real callers key the cache by tuples.
    static size_t encode(uint64_t key, uint8_t *buf, size_t cap) {
        const mc_arg arg = mc_arg_uint(key);
        size_t klen = 0;
        check_rc(mc_key_encode(&arg, 1, buf, cap, &klen), "mc_key_encode");
        return klen;
    }

    bool request(uint64_t key, bool fill) {
        uint8_t kb[32];
        const size_t klen = encode(key, kb, sizeof kb);
        uint64_t value = 0;
        size_t vlen = 0;
        const int rc = mc_cache_get_copy(cache_, kb, klen, &value, sizeof value, &vlen);
        if (rc == 0) {
            if (vlen != sizeof value || value != key)
                die("mc_cache_get_copy: key %" PRIu64 " returned a wrong value (%zu bytes)", key, vlen);
            return true;
        }
        if (rc != MC_ENOENT) check_rc(rc, "mc_cache_get_copy");
        if (fill) check_rc(mc_cache_put(cache_, kb, klen, &key, sizeof key), "mc_cache_put");
        return false;
    }

    void put(uint64_t key) {
        uint8_t kb[32];
        const size_t klen = encode(key, kb, sizeof kb);
        check_rc(mc_cache_put(cache_, kb, klen, &key, sizeof key), "mc_cache_put");
    }

    // Any byte string as key (memory-ool).
    void put_bytes(const void *key, size_t klen, const void *value, size_t vlen) {
        check_rc(mc_cache_put(cache_, key, klen, value, vlen), "mc_cache_put");
    }

    size_t size() { return mc_cache_size(cache_); }

private:
    mc_cache *cache_ = nullptr;
};

class MutexLruSys {
public:
    explicit MutexLruSys(size_t capacity) : lru_(capacity) {}
    bool request(uint64_t key, bool fill) {
        uint64_t value;
        if (lru_.get(key, &value)) {
            if (value != key) die("mutex-lru: key %" PRIu64 " returned a wrong value", key);
            return true;
        }
        if (fill) lru_.put(key, key);
        return false;
    }
    void put(uint64_t key) { lru_.put(key, key); }
    size_t size() { return lru_.size(); }

private:
    MutexLru lru_;
};

class NolimitSys {
public:
    bool request(uint64_t key, bool fill) {
        uint64_t value;
        if (map_.get(key, &value)) {
            if (value != key) die("nolimit-hash: key %" PRIu64 " returned a wrong value", key);
            return true;
        }
        if (fill && !map_.put(key, key)) die("nolimit-hash: table full");
        return false;
    }
    void put(uint64_t key) {
        if (!map_.put(key, key)) die("nolimit-hash: table full");
    }

private:
    NolimitHash map_;  // 2^21 slots: at most half full with the 1,000,000 Zipf keys
};


struct ZipfResult {
    double ops_per_sec;
    double hit_ratio;
    bool overlap = false;  // see trace_positions_met
};

template <class Sys>
ZipfResult run_zipf(Sys &sys, const std::vector<uint32_t> &trace, int nthreads, bool fill, double warm,
                    double window) {
    // Hottest key last, so it is the most recent: a policy that drops entries before it is
    // full (a shard over its share of the bound) then drops the coldest ones, not the hot set
    // the read-only run depends on.
    for (uint64_t k = kZipfCacheEntries; k-- > 0;) sys.put(k);
    const WindowRun w = run_window(sys, trace, nthreads, fill, warm, window);
    ZipfResult r{static_cast<double>(w.ops) / w.secs,
                 w.ops ? static_cast<double>(w.hits) / static_cast<double>(w.ops) : kNull};
    // An exact LRU of 100,000 entries holds the keys of about the last 330,000 requests of this
    // trace (that many requests carry 100,000 distinct keys): a replay from further back gains
    // little.
    r.overlap = fill && trace_positions_met(w.counts, w.starts, trace.size(), 3 * kZipfCacheEntries);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Trace miss ratio: one thread, one pass, from an empty cache.

template <class Sys>
ZipfResult run_trace(Sys &sys, const std::vector<uint64_t> &ids) {
    uint64_t hits = 0;
    const auto t0 = Clock::now();
    for (uint64_t id : ids) hits += sys.request(id, true);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    return {static_cast<double>(ids.size()) / secs, static_cast<double>(hits) / static_cast<double>(ids.size())};
}

// ---------------------------------------------------------------------------------------------
// Memory: jemalloc's count of bytes handed to the application, which covers every allocation in
// this process since jemalloc replaces malloc here.

bool jemalloc_allocated(size_t *out) {
    // Objects parked in this thread's cache still count as allocated; flushing keeps a delta
    // from depending on what happened to sit there.
    mallctl("thread.tcache.flush", nullptr, nullptr, nullptr, 0);
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0) return false;  // refresh the stats
    sz = sizeof *out;
    return mallctl("stats.allocated", out, &sz, nullptr, 0) == 0;
}

// Under a sanitizer (or a preloaded allocator) malloc is not jemalloc's and its statistics
// would miss everything: check that a plain malloc shows up before trusting the figures.
bool jemalloc_is_malloc() {
    size_t before, after;
    if (!jemalloc_allocated(&before)) return false;
    const size_t n = size_t{4} << 20;
    void *volatile p = std::malloc(n);
    if (!p) return false;
    std::memset(p, 1, 64);
    const bool ok = jemalloc_allocated(&after) && after >= before + n;
    std::free(p);
    return ok;
}

// memory: small items, one-field tuple keys of 1-4 bytes and 8-byte values (inline in the
// index). memory-ool (out_of_line): kOolKeyBytes-byte keys (the integer, then its mix) and
// kOolValueBytes-byte values, above the 14 bytes of key and value an inline cell holds.
Row memory_modcache(mc_policy policy, const char *policy_name, size_t n, bool out_of_line) {
    static_assert(kOolKeyBytes == 16 && kOolValueBytes % 8 == 0, "memory-ool keys are two 64-bit words");
    size_t before, after;
    if (!jemalloc_allocated(&before)) die("jemalloc stats.allocated unavailable");
    size_t key_bytes = 0;
    size_t held;
    {
        ModcacheSys sys(n, policy);
        uint8_t kb[32];
        for (uint64_t k = 0; k < n; k++) {
            if (out_of_line) {
                const uint64_t key[2] = {k, SplitMix64(k).next()};
                uint64_t value[kOolValueBytes / 8];
                for (size_t i = 0; i < kOolValueBytes / 8; i++) value[i] = k + i;
                sys.put_bytes(key, sizeof key, value, sizeof value);
                key_bytes += sizeof key;
            } else {
                const size_t klen = ModcacheSys::encode(k, kb, sizeof kb);
                key_bytes += klen;
                sys.put(k);
            }
        }
        held = sys.size();
        if (!jemalloc_allocated(&after)) die("jemalloc stats.allocated unavailable");
    }
    Row r;
    r.system = "modcache";
    r.policy = policy_name;
    r.workload = out_of_line ? "memory-ool" : "memory";
    r.cache_size = n;
    r.entries_held = held;
    r.key_bytes = static_cast<double>(key_bytes) / static_cast<double>(n);
    r.value_bytes = out_of_line ? static_cast<double>(kOolValueBytes) : 8.0;
    // Per entry actually held: a sharded cache may evict a few entries before it is full, and
    // dividing by n would then flatter it.
    if (held > 0)
        r.bytes_per_entry = (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(held) -
                            (r.key_bytes + r.value_bytes);
    return r;
}

Row memory_mutex_lru(size_t n) {
    size_t before, after;
    if (!jemalloc_allocated(&before)) die("jemalloc stats.allocated unavailable");
    size_t held;
    {
        MutexLruSys sys(n);
        for (uint64_t k = 0; k < n; k++) sys.put(k);
        held = sys.size();
        if (!jemalloc_allocated(&after)) die("jemalloc stats.allocated unavailable");
    }
    Row r;
    r.system = "mutex-lru";
    r.workload = "memory";
    r.cache_size = n;
    r.entries_held = held;
    r.key_bytes = 8.0;
    r.value_bytes = 8.0;
    r.bytes_per_entry =
        (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(held) - (8.0 + 8.0);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Memoized functions. memo-hit: what a memoized call adds on a hit (arguments to key bytes,
// hashing, the layer's bookkeeping) over the mc_cache_get + mc_value_release it ends in, for its
// three ways of returning the result (pinned: mc_cached_call; copied out: mc_cached_call_copy;
// borrowed: mc_cached_call_borrow in a read section held across 64 calls), all on the
// function's own cache with the same keys in the same order. single-flight: threads missing
// the same keys at the same moment must run each key's loader once.

// The key set: ("@user<5 digits>:example.com", n) tuples, the shape of a typical memo key.
class MemoKeys {
public:
    static constexpr size_t kUserLen = 22;  // "@user12345:example.com"

    explicit MemoKeys(size_t n) : n_(n), users_(n * kUserLen), nums_(n), offsets_(n + 1, 0) {
        if (n > 100000) die("MemoKeys: at most 100,000 keys keep user names 5 digits long");
        for (size_t i = 0; i < n; i++) {
            char buf[32];
            const int len = std::snprintf(buf, sizeof buf, "@user%05zu:example.com", i);
            if (len != static_cast<int>(kUserLen)) die("MemoKeys: user name of %d bytes", len);
            std::memcpy(&users_[i * kUserLen], buf, kUserLen);
            nums_[i] = static_cast<int64_t>(i) * 7 + 3;
        }
        // The raw get's keys, encoded once before any timing: exactly the bytes the memoized
        // function stores its entries under.
        uint8_t kb[MC_KEY_MAX];
        for (size_t i = 0; i < n; i++) {
            const mc_arg args[2] = {user_arg(i), mc_arg_int(nums_[i])};
            size_t klen = 0;
            check_rc(mc_key_encode(args, 2, kb, sizeof kb, &klen), "mc_key_encode");
            encoded_.insert(encoded_.end(), kb, kb + klen);
            offsets_[i + 1] = encoded_.size();
        }
    }

    size_t size() const { return n_; }
    mc_arg user_arg(size_t i) const { return mc_arg_strn(&users_[i * kUserLen], kUserLen); }
    int64_t num(size_t i) const { return nums_[i]; }
    const uint8_t *key(size_t i, size_t *klen) const {
        *klen = offsets_[i + 1] - offsets_[i];
        return &encoded_[offsets_[i]];
    }

private:
    size_t n_;
    std::vector<char> users_;
    std::vector<int64_t> nums_;
    std::vector<uint8_t> encoded_;
    std::vector<size_t> offsets_;
};

// The memoized value: the key's integer field as 8 bytes, small like most memo results.
int memo_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load) {
    (void)self;
    if (nargs != 2 || args[1].type != MC_ARG_INT) return MC_EINVAL;
    const uint64_t v = static_cast<uint64_t>(args[1].v.i);
    return mc_load_set_copy(load, &v, sizeof v);
}

// For single-flight: slow enough that the second thread arrives while the first loads.
int sleepy_loader(void *self, const mc_arg *args, size_t nargs, mc_load *load) {
    static_cast<std::atomic<uint64_t> *>(self)->fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::microseconds(kSingleFlightSleepUs));
    return memo_loader(nullptr, args, nargs, load);
}

void check_memo_value(const mc_value *v, int64_t num, const char *what) {
    uint64_t got = 0;
    if (mc_value_size(v) != sizeof got) die("%s: a value of %zu bytes, want 8", what, mc_value_size(v));
    std::memcpy(&got, mc_value_data(v), sizeof got);
    if (got != static_cast<uint64_t>(num)) die("%s: key %" PRId64 " returned a wrong value", what, num);
}

class MemoFn {
public:
    MemoFn(size_t max_entries, mc_loader_fn loader, void *self) {
        mc_cached_options opts;
        mc_cached_options_init(&opts);
        opts.name = "bench.memo";
        opts.max_entries = max_entries;
        check_rc(mc_cached_create(&opts, loader, self, &fn_), "mc_cached_create");
    }
    ~MemoFn() { mc_cached_destroy(fn_); }
    MemoFn(const MemoFn &) = delete;
    MemoFn &operator=(const MemoFn &) = delete;
    mc_cached *get() const { return fn_; }

private:
    mc_cached *fn_ = nullptr;
};

// A call as module code makes it: the argument array is built from the tuple's fields each time.
class MemoCallSys {
public:
    MemoCallSys(mc_cached *fn, const MemoKeys &keys) : fn_(fn), keys_(keys) {}
    bool request(uint64_t i, bool) {
        const mc_arg args[2] = {keys_.user_arg(i), mc_arg_int(keys_.num(i))};
        mc_value *v = nullptr;
        check_rc(mc_cached_call(fn_, args, 2, &v), "mc_cached_call");
        check_memo_value(v, keys_.num(i), "mc_cached_call");
        mc_value_release(v);
        return true;
    }

private:
    mc_cached *fn_;
    const MemoKeys &keys_;
};

// The copy-out call: the result copied into the caller's buffer, nothing pinned.
class MemoCopySys {
public:
    MemoCopySys(mc_cached *fn, const MemoKeys &keys) : fn_(fn), keys_(keys) {}
    bool request(uint64_t i, bool) {
        const mc_arg args[2] = {keys_.user_arg(i), mc_arg_int(keys_.num(i))};
        uint64_t got = 0;
        size_t vlen = 0;
        check_rc(mc_cached_call_copy(fn_, args, 2, &got, sizeof got, &vlen), "mc_cached_call_copy");
        if (vlen != sizeof got || got != static_cast<uint64_t>(keys_.num(i)))
            die("mc_cached_call_copy: key %" PRIu64 " returned a wrong value", i);
        return true;
    }

private:
    mc_cached *fn_;
    const MemoKeys &keys_;
};

// The borrowing call: the result read in place, valid until the read section ends. Each
// thread holds one read section (mc_read_begin .. mc_read_end) around every batch of 64 calls
// it makes (the harness's batch_begin and batch_end), as a caller looking up many keys at once.
class MemoBorrowSys {
public:
    MemoBorrowSys(mc_cached *fn, const MemoKeys &keys) : fn_(fn), keys_(keys) {}
    void batch_begin() { mc_read_begin(); }
    void batch_end() { mc_read_end(); }
    bool request(uint64_t i, bool) {
        const mc_arg args[2] = {keys_.user_arg(i), mc_arg_int(keys_.num(i))};
        const void *data = nullptr;
        size_t vlen = 0;
        check_rc(mc_cached_call_borrow(fn_, args, 2, &data, &vlen), "mc_cached_call_borrow");
        uint64_t got = 0;
        if (vlen == sizeof got) std::memcpy(&got, data, sizeof got);
        if (vlen != sizeof got || got != static_cast<uint64_t>(keys_.num(i)))
            die("mc_cached_call_borrow: key %" PRIu64 " returned a wrong value (%zu bytes)", i, vlen);
        return true;
    }

private:
    mc_cached *fn_;
    const MemoKeys &keys_;
};

// The floor under it: a pinned get of the already encoded key on the function's own cache.
class MemoRawGetSys {
public:
    MemoRawGetSys(mc_cache *cache, const MemoKeys &keys) : cache_(cache), keys_(keys) {}
    bool request(uint64_t i, bool) {
        size_t klen = 0;
        const uint8_t *key = keys_.key(i, &klen);
        mc_value *v = nullptr;
        const int rc = mc_cache_get(cache_, key, klen, &v);
        if (rc == MC_ENOENT) die("memo-hit: key %" PRIu64 " is missing from the warmed cache", i);
        check_rc(rc, "mc_cache_get");
        check_memo_value(v, keys_.num(i), "mc_cache_get");
        mc_value_release(v);
        return true;
    }

private:
    mc_cache *cache_;
    const MemoKeys &keys_;
};

void run_memo_hit(std::vector<Row> &rows, const MemoKeys &keys, const std::vector<int> &thread_counts,
                  double warm, double window, int repeat) {
    // Zipf order, as for the cache runs: hot keys stay in the CPU caches, which leaves the
    // layer's own work, not memory latency, as the difference between the two systems.
    const std::vector<uint32_t> order = zipf_trace(kMemoRequests, static_cast<uint32_t>(keys.size()));
    MemoFn fn(kMemoCacheSize, memo_loader, nullptr);
    MemoCallSys memo(fn.get(), keys);
    MemoRawGetSys raw(mc_cached_cache(fn.get()), keys);
    MemoCopySys copy(fn.get(), keys);
    MemoBorrowSys borrow(fn.get(), keys);
    for (size_t i = 0; i < keys.size(); i++) memo.request(i, false);
    mc_cached_stats st;
    mc_cached_stats_get(fn.get(), &st);
    if (st.cache.entries != keys.size() || st.loads != keys.size())
        die("memo-hit: warming left %" PRIu64 " entries after %" PRIu64 " loads, want %zu of each",
            st.cache.entries, st.loads, keys.size());
    const uint64_t warm_loads = st.loads;
    std::vector<Row> runs;
    for (int t : thread_counts) {
        int rep = 0;
        auto record = [&](const char *system, auto &sys) {
            progress_begin("memo-hit %s %d thread%s%s ... ", system, t, t == 1 ? "" : "s",
                           repeat > 1 ? fmt(" (run %d/%d)", rep, repeat).c_str() : "");
            mc_cache_stats before, after;
            mc_cache_stats_get(mc_cached_cache(fn.get()), &before);
            const WindowRun w = run_window(sys, order, t, false, warm, window);
            mc_cache_stats_get(mc_cached_cache(fn.get()), &after);
            mc_cached_stats now;
            mc_cached_stats_get(fn.get(), &now);
            // A load during the run means some call missed: the figure would not be a hit's.
            if (now.loads != warm_loads)
                die("memo-hit: %" PRIu64 " loads during the %s run: not every call hit", now.loads - warm_loads,
                    system);
            const double hits = static_cast<double>(after.hits - before.hits);
            const double misses = static_cast<double>(after.misses - before.misses);
            Row r;
            r.system = system;
            r.workload = "memo-hit";
            r.threads = t;
            r.cache_size = kMemoCacheSize;
            r.ops_per_sec = static_cast<double>(w.ops) / w.secs;
            r.hit_ratio = hits + misses > 0 ? hits / (hits + misses) : kNull;
            r.ns_per_op = static_cast<double>(t) * 1e9 / r.ops_per_sec;
            progress_end("%.2f M ops/s, %.1f ns/op%s", r.ops_per_sec / 1e6, r.ns_per_op,
                         std::strcmp(system, "modcache-memo-borrow") == 0 ? " (one read section per 64 calls)" : "");
            runs.push_back(r);
        };
        for (rep = 1; rep <= repeat; rep++) {
            record("modcache-memo", memo);
            record("modcache-memo-copy", copy);
            record("modcache-memo-borrow", borrow);
            record("modcache-raw-get", raw);
        }
    }
    const std::vector<Row> med = median_rows(runs);
    rows.insert(rows.end(), med.begin(), med.end());
}

// Threads call the same missing keys in the same order, released together: for each key one
// of them starts the load and the others join it (or hit once it is stored).
void run_single_flight(std::vector<Row> &rows, const MemoKeys &keys) {
    progress_begin("single-flight: %d threads x %zu missing keys, loader sleeping %d us ... ", kSingleFlightThreads,
                   kSingleFlightKeys, kSingleFlightSleepUs);
    std::atomic<uint64_t> loader_calls{0};
    MemoFn fn(kSingleFlightCacheSize, sleepy_loader, &loader_calls);
    MemoCallSys sys(fn.get(), keys);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kSingleFlightThreads; t++) {
        threads.emplace_back([&] {
            ready.fetch_add(1, std::memory_order_acq_rel);
            while (!go.load(std::memory_order_acquire)) {
            }
            for (size_t i = 0; i < kSingleFlightKeys; i++) sys.request(i, false);
        });
    }
    while (ready.load(std::memory_order_acquire) < kSingleFlightThreads) std::this_thread::yield();
    const auto t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (std::thread &th : threads) th.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    mc_cached_stats st;
    mc_cached_stats_get(fn.get(), &st);
    Row r;
    r.system = "modcache-memo";
    r.workload = "single-flight";
    r.threads = kSingleFlightThreads;
    r.cache_size = kSingleFlightCacheSize;
    r.ops_per_sec = static_cast<double>(kSingleFlightThreads * kSingleFlightKeys) / secs;
    r.loader_calls = static_cast<long long>(loader_calls.load());
    r.joined = st.joined;
    progress_end("%lld loader calls (want %zu), %" PRIu64 " calls joined a running load, %.3f s", r.loader_calls,
                 kSingleFlightKeys, r.joined, secs);
    rows.push_back(r);
}

void usage(FILE *f) {
    std::fputs(
        "usage: mc_compare [--quick] [--json] [--report DIR] [--verbose] [--trace FILE] [--seconds S]\n"
        "                  [--threads LIST] [--repeat N] [--workloads LIST] [--redis-server PATH]\n"
        "                  [--peer CMD]\n"
        "\n"
        "Compares modcache (lru, s3fifo) with an exact LRU under one mutex (mutex-lru), maps that\n"
        "never evict (nolimit-hash, lock-free; libcuckoo, when built with it) and, for memoized\n"
        "lookups, the SQLite query and a Redis GET they stand in front of:\n"
        "  zipf-getput, zipf-readonly  throughput on the Zipf(0.99, 1M keys) trace, 100k-entry cache\n"
        "  cloudphysics                miss ratio on the trace file, against libCacheSim's figures\n"
        "  memory                      bytes per entry beyond key and value (jemalloc stats) at 100k\n"
        "                              and 1M entries, small items: 1-4 byte tuple keys, 8-byte values\n"
        "                              (inline in the index)\n"
        "  memory-ool                  the same with 16-byte keys and 32-byte values, stored out of\n"
        "                              line (an allocation per entry); run with memory\n"
        "  memo-hit                    a memoized function's hit, its 2-field key built per call:\n"
        "                              pinned (mc_cached_call, record modcache-memo), copied out\n"
        "                              (mc_cached_call_copy, modcache-memo-copy), borrowed\n"
        "                              (mc_cached_call_borrow, modcache-memo-borrow: one read section,\n"
        "                              mc_read_begin .. mc_read_end, held around each batch of 64 calls\n"
        "                              a thread makes); against the raw pinned mc_cache_get beneath\n"
        "                              them (modcache-raw-get), same keys, same cache\n"
        "  single-flight               2 threads calling the same 1,000 missing keys: 1,000 loads\n"
        "  db-lookup                   user id -> department for 100k users in Zipf order: a warm\n"
        "                              memoized function over SQLite (modcache-memo), the indexed\n"
        "                              SQLite query (sqlite-query), a GET to a redis-server this\n"
        "                              program starts on a free 127.0.0.1 port (redis-get);\n"
        "                              ops/s, and p50/p99 of single calls\n"
        "\n"
        "  --quick            2^20-request trace and 0.3 s windows (the whole run in seconds)\n"
        "  --json             print a JSON array of results on stdout; the tables go to stderr\n"
        "  --report DIR       also write DIR/results.md, DIR/results.json and chart data (plot-*.dat)\n"
        "  --verbose          also print the Zipf trace's first keys and checksum, and its exact-LRU\n"
        "                     cold-start miss ratio\n"
        "  --trace FILE       cloudphysics trace (default ../shared/data/cloudphysics.txt)\n"
        "  --seconds S        measuring window per throughput run (default 2)\n"
        "  --threads LIST     comma-separated thread counts for the throughput runs (default 1,2)\n"
        "  --repeat N         runs of each Zipf, memo-hit and db-lookup measurement, interleaved across\n"
        "                     systems; the median is reported (default 3, 1 with --quick)\n"
        "  --workloads LIST   comma-separated groups to run: zipf, cloudphysics, memory (memory and\n"
        "                     memory-ool), memo (memo-hit, single-flight), db-lookup (default: all)\n"
        "  --redis-server P   the redis-server program for db-lookup (default: redis-server in PATH;\n"
        "                     without one, redis-get is left out and the output says so)\n"
        "  --peer CMD         also measure the system of a program in its own process on the Zipf\n"
        "                     workloads: /bin/sh -c CMD, started once, its trace checked against this\n"
        "                     one's, asked for each run between the other systems' runs (bench/peer.h;\n"
        "                     bench/run_bench.sh passes Caffeine's, bench/caffeine/). Without a working\n"
        "                     peer the run goes on without it and says why\n"
        "  --help             this text\n"
        "\n"
        "Last comes the targets list (also in results.md): ratios and bounds between figures of the\n"
        "run, each PASS, MISS or n/a (not measured in this run, with the reason).\n"
        "\n"
        "Exit status: 0 when every run completed (whatever the target checks say), 1 when the\n"
        "report could not be written, 2 on bad usage.\n",
        f);
}

[[noreturn]] void bad_usage(const char *fmt, const char *arg) {
    std::fputs("mc_compare: ", stderr);
    std::fprintf(stderr, fmt, arg);
    std::fputs("\n\n", stderr);
    usage(stderr);
    std::exit(2);
}

bool parse_threads(const char *s, std::vector<int> *out) {
    out->clear();
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        const long v = std::strtol(p, &end, 10);
        if (end == p || errno || v < 1 || v > 1024) return false;
        if (std::find(out->begin(), out->end(), static_cast<int>(v)) == out->end()) out->push_back(static_cast<int>(v));
        if (*end == '\0') break;
        if (*end != ',') return false;
        p = end + 1;
    }
    return !out->empty();
}

bool parse_workloads(const std::string &s, std::vector<std::string> *out) {
    static const char *const kGroups[] = {"zipf", "cloudphysics", "memory", "memo", "db-lookup"};
    out->clear();
    size_t pos = 0;
    for (;;) {
        const size_t end = std::min(s.find(',', pos), s.size());
        const std::string g = s.substr(pos, end - pos);
        if (std::find_if(std::begin(kGroups), std::end(kGroups), [&](const char *k) { return g == k; }) ==
            std::end(kGroups))
            return false;
        if (std::find(out->begin(), out->end(), g) == out->end()) out->push_back(g);
        if (end == s.size()) break;
        pos = end + 1;
    }
    return !out->empty();
}

Options parse_options(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        std::string val;
        bool has_val = false;
        const size_t eq = a.find('=');
        if (a.compare(0, 2, "--") == 0 && eq != std::string::npos) {
            val = a.substr(eq + 1);
            a = a.substr(0, eq);
            has_val = true;
        }
        auto need_value = [&]() -> std::string {
            if (has_val) return val;
            if (i + 1 >= argc) bad_usage("%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            usage(stdout);
            std::exit(0);
        } else if (a == "--quick" && !has_val) {
            o.quick = true;
        } else if (a == "--json" && !has_val) {
            o.json = true;
        } else if (a == "--verbose" && !has_val) {
            o.verbose = true;
        } else if (a == "--trace") {
            o.trace = need_value();
            if (o.trace.empty()) bad_usage("%s needs a file name", "--trace");
        } else if (a == "--seconds") {
            const std::string v = need_value();
            char *end;
            const double s = std::strtod(v.c_str(), &end);
            if (v.empty() || *end || !(s > 0.0 && s <= 3600.0)) bad_usage("bad --seconds value '%s'", v.c_str());
            o.seconds = s;
        } else if (a == "--threads") {
            const std::string v = need_value();
            if (!parse_threads(v.c_str(), &o.threads)) bad_usage("bad --threads list '%s'", v.c_str());
        } else if (a == "--repeat") {
            const std::string v = need_value();
            char *end;
            const long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || n < 1 || n > 100) bad_usage("bad --repeat value '%s'", v.c_str());
            o.repeat = static_cast<int>(n);
        } else if (a == "--report") {
            o.report_dir = need_value();
            if (o.report_dir.empty()) bad_usage("%s needs a directory", "--report");
        } else if (a == "--redis-server") {
            o.redis_server = need_value();
            if (o.redis_server.empty()) bad_usage("%s needs a program", "--redis-server");
        } else if (a == "--peer") {
            o.peer = need_value();
            if (o.peer.empty()) bad_usage("%s needs a command", "--peer");
        } else if (a == "--workloads") {
            const std::string v = need_value();
            if (!parse_workloads(v, &o.workloads)) bad_usage("bad --workloads list '%s'", v.c_str());
        } else {
            bad_usage("unknown argument '%s'", argv[i]);
        }
    }
    if (o.seconds == 0.0) o.seconds = o.quick ? 0.3 : 2.0;
    if (o.repeat == 0) o.repeat = o.quick ? 1 : 3;
    return o;
}

std::string ratio_cell(double num, const Row *den) {
    if (!den || !(den->ops_per_sec > 0) || std::isnan(num)) return "-";
    return fmt("%.2fx", num / den->ops_per_sec);
}

void print_zipf_table(FILE *f, const std::vector<Row> &rows, const char *workload, const char *title,
                      const Options &o) {
    std::fprintf(f, "\n%s\n", title);
    std::fprintf(f, "  %-18s %7s %9s %10s %12s %15s\n", "system", "threads", "M ops/s", "hit ratio", "vs mutex-lru",
                 "vs nolimit-hash");
    bool any_overlap = false;
    for (int t : o.threads) {
        const Row *mutex = find_row(rows, "mutex-lru", "", workload, t, kZipfCacheEntries);
        const Row *nolimit = find_row(rows, "nolimit-hash", "", workload, t, kZipfCacheEntries);
        for (const Row &r : rows) {
            if (r.workload != workload || r.threads != t) continue;
            std::fprintf(f, "  %-18s %7d %9.2f %9.4f%c %12s %15s\n", label(r).c_str(), t, r.ops_per_sec / 1e6,
                         r.hit_ratio, r.overlap ? '*' : ' ', ratio_cell(r.ops_per_sec, mutex).c_str(),
                         ratio_cell(r.ops_per_sec, nolimit).c_str());
            any_overlap |= r.overlap;
        }
    }
    if (any_overlap)
        std::fprintf(f, "  * one thread ran ahead until it replayed requests another had just made: the hit ratio\n"
                        "    may be inflated (ops/s is unaffected); a longer trace (no --quick) makes this rarer\n");
}

void print_trace_table(FILE *f, const std::vector<Row> &rows, size_t requests) {
    std::fprintf(f, "\ncloudphysics: miss ratio, 1 thread, from empty (%zu requests); reference rows: libCacheSim\n",
                 requests);
    std::fprintf(f, "  %-26s", "cache size (objects)");
    for (size_t s : kTraceSizes) std::fprintf(f, " %8zu", s);
    std::fputc('\n', f);
    for (const MissRatioSystem &m : kMissRatioSystems) {
        const std::string name = *m.policy ? std::string(m.system) + "/" + m.policy : m.system;
        std::fprintf(f, "  %-26s", name.c_str());
        for (size_t s : kTraceSizes) {
            const Row *r = find_row(rows, m.system, m.policy, "cloudphysics", 1, s);
            if (r)
                std::fprintf(f, " %8.4f", 1.0 - r->hit_ratio);
            else
                std::fprintf(f, " %8s", "-");
        }
        std::fputc('\n', f);
        std::fprintf(f, "  %-26s", ("  minus " + std::string(m.ref->name)).c_str());
        for (size_t i = 0; i < kNumTraceSizes; i++) {
            const Row *r = find_row(rows, m.system, m.policy, "cloudphysics", 1, kTraceSizes[i]);
            // Rounded first so that a difference of zero does not print as -0.0000.
            if (r)
                std::fprintf(f, " %+8.4f", std::round(((1.0 - r->hit_ratio) - m.ref->miss[i]) * 1e4) / 1e4 + 0.0);
            else
                std::fprintf(f, " %8s", "-");
        }
        std::fputc('\n', f);
    }
    for (const RefRow &ref : kRefRows) {
        std::fprintf(f, "  %-26s", ("ref " + std::string(ref.name)).c_str());
        for (double v : ref.miss) std::fprintf(f, " %8.4f", v);
        std::fputc('\n', f);
    }
}

void print_memory_table(FILE *f, const std::vector<Row> &rows) {
    std::fprintf(f,
                 "\nmemory: overhead per entry BEYOND key and value bytes\n"
                 "  (jemalloc stats.allocated after inserting N keys minus before creating the cache,\n"
                 "   divided by the entries held, minus key and value bytes); memory: small items, inline\n"
                 "   in the index; memory-ool: %zu-byte keys, %zu-byte values, an allocation per entry\n",
                 kOolKeyBytes, kOolValueBytes);
    std::fprintf(f, "  %-11s %-18s %9s %9s %10s %12s %16s\n", "workload", "system", "N", "held", "key bytes",
                 "value bytes", "overhead B/entry");
    for (const char *w : {"memory", "memory-ool"})
        for (const Row &r : rows) {
            if (r.workload != w) continue;
            std::fprintf(f, "  %-11s %-18s %9zu %9zu %10.2f %12.0f %16.1f\n", w, label(r).c_str(), r.cache_size,
                         r.entries_held, r.key_bytes, r.value_bytes, r.bytes_per_entry);
        }
}

void print_memo_tables(FILE *f, const std::vector<Row> &rows, const Options &o) {
    std::fprintf(f,
                 "\nmemo-hit: a memoized function's hit (its 2-field key built per call) pinned, copied out\n"
                 "  and borrowed (one read section held around each batch of 64 calls a thread makes),\n"
                 "  against mc_cache_get + mc_value_release of the pre-encoded key on the function's own\n"
                 "  cache; %zu keys, Zipf(%.2f) order; ns/op is one call's time on one thread\n",
                 kMemoKeys, kZipfExponent);
    std::fprintf(f, "  %-20s %7s %9s %9s %10s %7s  %s\n", "system", "threads", "M ops/s", "ns/op", "hit ratio", "vs raw",
                 "call");
    for (int t : o.threads) {
        const Row *raw = find_row(rows, "modcache-raw-get", "", "memo-hit", t, kMemoCacheSize);
        for (const Row &r : rows) {
            if (r.workload != "memo-hit" || r.threads != t) continue;
            std::string ratio = "-";
            if (&r != raw && raw && raw->ns_per_op > 0) ratio = fmt("%.2fx", r.ns_per_op / raw->ns_per_op);
            std::fprintf(f, "  %-20s %7d %9.2f %9.1f %10.4f %7s  %s\n", label(r).c_str(), t, r.ops_per_sec / 1e6,
                         r.ns_per_op, r.hit_ratio, ratio.c_str(), memo_note(r.system));
        }
    }
    const Row *sf = find_row(rows, "modcache-memo", "", "single-flight", kSingleFlightThreads, kSingleFlightCacheSize);
    std::fprintf(f, "\nsingle-flight: %d threads call the same %zu missing keys together (loader sleeps %d us)\n",
                 kSingleFlightThreads, kSingleFlightKeys, kSingleFlightSleepUs);
    if (sf)
        std::fprintf(f, "  loader calls %lld (must be %zu); calls that joined a running load %" PRIu64 "\n",
                     sf->loader_calls, kSingleFlightKeys, sf->joined);
    else
        std::fprintf(f, "  not run\n");
}

// The list results.md has too, in the same words (report.cc).
void print_targets(FILE *f, const std::vector<Row> &rows, bool have_trace) {
    const std::vector<Target> list = targets(rows, have_trace), info = informational(rows);
    size_t width = 0;
    for (const std::vector<Target> *l : {&list, &info})
        for (const Target &t : *l) width = std::max(width, t.what.size());
    std::fprintf(f, "\ntargets (informational: the exit status does not depend on them)\n");
    for (const Target &t : list)
        std::fprintf(f, "  %-4s  %-*s  %s\n", target_status(t), static_cast<int>(width), t.what.c_str(),
                     t.measured.c_str());
    std::fprintf(f, "also measured, without a target\n");
    for (const Target &t : info)
        std::fprintf(f, "  %-4s  %-*s  %s\n", "", static_cast<int>(width), t.what.c_str(), t.measured.c_str());
}

std::string find_default_trace() {
    std::vector<std::string> candidates{"../shared/data/cloudphysics.txt"};
#ifdef MODCACHE_SOURCE_DIR
    candidates.push_back(std::string(MODCACHE_SOURCE_DIR) + "/../shared/data/cloudphysics.txt");
#endif
    for (const std::string &c : candidates) {
        if (FILE *f = std::fopen(c.c_str(), "rb")) {
            std::fclose(f);
            return c;
        }
    }
    return "";
}

// What the report says about the machine and the build.
std::string cpu_model() {
    FILE *f = std::fopen("/proc/cpuinfo", "r");
    if (!f) return "unknown";
    char line[512];
    std::string model = "unknown";
    while (std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, "model name", 10) != 0) continue;
        const char *p = std::strchr(line, ':');
        if (!p) continue;
        p++;
        while (*p == ' ' || *p == '\t') p++;
        model.assign(p, std::strcspn(p, "\n"));
        break;
    }
    std::fclose(f);
    return model;
}

double load_average() {
    double v = kNull;
    if (FILE *f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &v) != 1) v = kNull;
        std::fclose(f);
    }
    return v;
}

RunInfo run_info(const Options &o, size_t requests, double warm) {
    RunInfo info;
    info.version = mc_version();
    char date[64];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    info.date = date;
    info.cpu = cpu_model();
    info.hw_threads = std::thread::hardware_concurrency();
    utsname u{};
    info.kernel = uname(&u) == 0 ? std::string(u.sysname) + " " + u.release : "unknown";
#if defined(__clang__)
    info.compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    info.compiler = "gcc " __VERSION__;
#else
    info.compiler = "unknown compiler";
#endif
#ifdef MODCACHE_BUILD_TYPE
    info.build_type = *MODCACHE_BUILD_TYPE ? MODCACHE_BUILD_TYPE : "no CMAKE_BUILD_TYPE";
#else
    info.build_type = "build type unknown";
#endif
#ifndef __OPTIMIZE__
    info.build_type += ", NOT optimized: figures are meaningless";
#endif
    info.zipf_requests = requests;
    info.window = o.seconds;
    info.warm = warm;
    info.quick = o.quick;
    info.repeat = o.repeat;
    info.load_start = load_average();
    return info;
}

}  // namespace

int main(int argc, char **argv) {
    const Options o = parse_options(argc, argv);
    FILE *table = o.json ? stderr : stdout;
    std::vector<Row> rows;

    const double warm = std::min(0.5, o.seconds / 4);
    const size_t requests = o.quick ? kQuickRequests : kZipfRequests;
    RunInfo info = run_info(o, requests, warm);
#if !MODCACHE_HAVE_LIBCUCKOO
    info.notes.push_back("libcuckoo not run: libcuckoo/cuckoohash_map.hh was not found when the build was configured "
                         "(install libcuckoo-dev, then re-run cmake)");
    progress("mc_compare: %s", info.notes.back().c_str());
#endif
#ifndef __OPTIMIZE__
    progress("mc_compare: WARNING: built without optimization; use a Release or RelWithDebInfo build");
#endif

    // The cloudphysics trace is resolved first so that a wrong --trace fails before the long runs.
    std::vector<uint64_t> cp;
    std::string cp_path;
    if (o.runs("cloudphysics")) {
        cp_path = o.trace.empty() ? find_default_trace() : o.trace;
        if (!cp_path.empty()) {
            std::string err;
            if (!load_trace(cp_path, &cp, &err)) {
                std::fprintf(stderr, "mc_compare: %s\n", err.c_str());
                if (!o.trace.empty()) return 2;  // the file the user named is unusable
                cp.clear();
            }
        }
        if (cp.empty()) {
            info.notes.push_back("cloudphysics not run: no trace file (use --trace FILE)");
            std::fprintf(stderr, "mc_compare: no cloudphysics trace found (tried ../shared/data/cloudphysics.txt%s); "
                                 "skipping the cloudphysics workload (use --trace FILE)\n",
#ifdef MODCACHE_SOURCE_DIR
                         " and " MODCACHE_SOURCE_DIR "/../shared/data/cloudphysics.txt"
#else
                         ""
#endif
            );
        }
    }
    info.have_trace = !cp.empty();

    if (o.runs("zipf")) {
        progress("generating the Zipf trace: %zu requests, s=%.2f over %u keys, splitmix64 seed %" PRIu64, requests,
                 kZipfExponent, kZipfKeys, kZipfSeed);
        const std::vector<uint32_t> trace = zipf_trace(requests);
        const double cold_share = zipf_share_at_or_above(trace, kZipfCacheEntries);
        progress("sanity: share of requests with key >= %zu: %.4f (expected about 0.170)", kZipfCacheEntries,
                 cold_share);
        if (std::fabs(cold_share - 0.170) > 0.005) die("the Zipf trace does not match the workload definition");
        const uint64_t checksum = zipf_trace_checksum(trace);
        if (o.verbose) {
            // The line CaffeineBench --check prints for its own trace.
            std::string first;
            for (size_t i = 0; i < std::min<size_t>(16, trace.size()); i++) first += fmt(" %u", trace[i]);
            progress("trace: first keys%s; %zu requests, checksum %016llx", first.c_str(), trace.size(),
                     static_cast<unsigned long long>(checksum));
            MutexLruSys lru(kZipfCacheEntries);
            size_t misses = 0;
            for (uint32_t k : trace) misses += !lru.request(k, true);
            progress("sanity: exact LRU (mutex-lru) from cold, %zu entries, 1 thread: miss ratio %.4f%s",
                     kZipfCacheEntries, static_cast<double>(misses) / static_cast<double>(trace.size()),
                     o.quick ? " (0.2350 is the figure for the full 2^24 trace)" : " (expected 0.2350)");
        }

        // Started, and done generating its trace and compiling, before any timing; idle between its
        // runs. Before answering ready it runs each request shape untimed for twice a run's warm-up,
        // at least 0.5 s (a JIT compiler needs that much even for --quick).
        Peer peer;
        if (!o.peer.empty()) {
            progress("peer: starting %s", o.peer.c_str());
            std::string err;
            if (peer.start(o.peer, trace.size(), checksum, std::max(0.5, 2 * warm), &err)) {
                info.notes.push_back(fmt("%s: %s; in its own process, on the same trace (checksum %016llx), asked "
                                         "for each run after the other systems' runs of the round",
                                         peer.system().c_str(), peer.about().c_str(),
                                         static_cast<unsigned long long>(checksum)));
                progress("peer: %s ready, same trace: %s", peer.system().c_str(), peer.about().c_str());
            } else {
                info.notes.push_back("--peer not run: " + err);
                progress("mc_compare: --peer not run: %s", err.c_str());
            }
        }

        std::vector<Row> runs;
        for (const bool fill : {true, false}) {
            const char *workload = fill ? "zipf-getput" : "zipf-readonly";
            for (int t : o.threads) {
                int rep = 0;
                auto record = [&](const char *system, const char *policy, auto make) {
                    progress_begin("%s %s%s%s %d thread%s%s ... ", workload, system, *policy ? "/" : "", policy, t,
                                   t == 1 ? "" : "s", o.repeat > 1 ? fmt(" (run %d/%d)", rep, o.repeat).c_str() : "");
                    auto sys = make();
                    const ZipfResult z = run_zipf(*sys, trace, t, fill, warm, o.seconds);
                    progress_end("%.2f M ops/s, hit ratio %.4f%s", z.ops_per_sec / 1e6, z.hit_ratio,
                                 z.overlap ? " (threads met in the trace: hit ratio may be inflated)" : "");
                    Row r;
                    r.system = system;
                    r.policy = policy;
                    r.workload = workload;
                    r.threads = t;
                    r.cache_size = kZipfCacheEntries;
                    r.ops_per_sec = z.ops_per_sec;
                    r.hit_ratio = z.hit_ratio;
                    r.overlap = z.overlap;
                    runs.push_back(r);
                };
                // A peer that fails is noted and left out of the rest of the run.
                auto record_peer = [&] {
                    progress_begin("%s %s %d thread%s%s ... ", workload, peer.system().c_str(), t, t == 1 ? "" : "s",
                                   o.repeat > 1 ? fmt(" (run %d/%d)", rep, o.repeat).c_str() : "");
                    Row r;
                    std::string err;
                    if (!peer.run(workload, t, warm, o.seconds, &r, &err)) {
                        progress_end("failed: %s", err.c_str());
                        info.notes.push_back(fmt("%s stopped at %s %d thread%s (run %d): %s", peer.system().c_str(),
                                                 workload, t, t == 1 ? "" : "s", rep, err.c_str()));
                        peer.stop();
                        return;
                    }
                    progress_end("%.2f M ops/s, hit ratio %.4f%s", r.ops_per_sec / 1e6, r.hit_ratio,
                                 r.overlap ? " (threads met in the trace: hit ratio may be inflated)" : "");
                    runs.push_back(r);
                };
                for (rep = 1; rep <= o.repeat; rep++) {
                    record("modcache", "lru",
                           [] { return std::make_unique<ModcacheSys>(kZipfCacheEntries, MC_POLICY_LRU); });
                    record("modcache", "s3fifo",
                           [] { return std::make_unique<ModcacheSys>(kZipfCacheEntries, MC_POLICY_S3FIFO); });
                    record("mutex-lru", "", [] { return std::make_unique<MutexLruSys>(kZipfCacheEntries); });
                    record("nolimit-hash", "", [] { return std::make_unique<NolimitSys>(); });
#if MODCACHE_HAVE_LIBCUCKOO
                    record("libcuckoo", "", [] { return std::make_unique<LibcuckooSys>(); });
#endif
                    if (peer.running()) record_peer();
                }
            }
        }
        peer.stop();
        const std::vector<Row> med = median_rows(runs);
        rows.insert(rows.end(), med.begin(), med.end());
    }

    if (!cp.empty()) {
        progress("cloudphysics: %s, %zu requests", cp_path.c_str(), cp.size());
        for (size_t size : kTraceSizes) {
            auto record = [&](const char *system, const char *policy, auto make) {
                progress_begin("cloudphysics %s%s%s %zu entries ... ", system, *policy ? "/" : "", policy, size);
                auto sys = make();
                const ZipfResult z = run_trace(*sys, cp);
                progress_end("miss ratio %.4f", 1.0 - z.hit_ratio);
                Row r;
                r.system = system;
                r.policy = policy;
                r.workload = "cloudphysics";
                r.threads = 1;
                r.cache_size = size;
                r.ops_per_sec = z.ops_per_sec;
                r.hit_ratio = z.hit_ratio;
                rows.push_back(r);
            };
            // The hash seed decides how keys split between shards, which moves the miss ratio
            // where a working set only just fits (docs/cache.md): fixed seeds, all reported.
            auto seeded = [&](const char *policy, mc_policy p) {
                std::vector<double> hits;
                progress_begin("cloudphysics modcache/%s %zu entries, %d seeds ... ", policy, size, kTraceSeeds);
                for (int s = 1; s <= kTraceSeeds; s++) {
                    ModcacheSys sys(size, p, static_cast<uint64_t>(s));
                    hits.push_back(run_trace(sys, cp).hit_ratio);
                }
                std::vector<double> sorted = hits;
                std::sort(sorted.begin(), sorted.end());
                const double med = (sorted[(kTraceSeeds - 1) / 2] + sorted[kTraceSeeds / 2]) / 2.0;
                progress_end("miss ratio %.4f (%.4f to %.4f)", 1.0 - med, 1.0 - sorted.back(), 1.0 - sorted.front());
                Row r;
                r.system = "modcache";
                r.policy = policy;
                r.workload = "cloudphysics";
                r.threads = 1;
                r.cache_size = size;
                r.hit_ratio = med;
                r.hit_min = sorted.front();
                r.hit_max = sorted.back();
                rows.push_back(r);
            };
            seeded("lru", MC_POLICY_LRU);
            seeded("s3fifo", MC_POLICY_S3FIFO);
            record("mutex-lru", "", [size] { return std::make_unique<MutexLruSys>(size); });
        }
    }

    if (o.runs("memory")) {
        if (jemalloc_is_malloc()) {
            for (size_t n : kMemorySizes) {
                progress("memory modcache/lru, s3fifo, mutex-lru at %zu entries", n);
                rows.push_back(memory_modcache(MC_POLICY_LRU, "lru", n, false));
                rows.push_back(memory_modcache(MC_POLICY_S3FIFO, "s3fifo", n, false));
                rows.push_back(memory_mutex_lru(n));
                progress("memory-ool modcache/lru, s3fifo at %zu entries (%zu-byte keys, %zu-byte values)", n,
                         kOolKeyBytes, kOolValueBytes);
                rows.push_back(memory_modcache(MC_POLICY_LRU, "lru", n, true));
                rows.push_back(memory_modcache(MC_POLICY_S3FIFO, "s3fifo", n, true));
            }
        } else {
            info.notes.push_back("memory not run: malloc is not jemalloc in this process (sanitizer build?)");
            std::fprintf(stderr, "mc_compare: malloc is not jemalloc in this process (sanitizer build?); "
                                 "skipping the memory workload\n");
        }
    }

    if (o.runs("memo")) {
        const MemoKeys keys(kMemoKeys);
        progress("memo-hit: %zu keys (\"@user12345:example.com\", n), Zipf order over %zu requests", kMemoKeys,
                 kMemoRequests);
        run_memo_hit(rows, keys, o.threads, warm, o.seconds, o.repeat);
        run_single_flight(rows, keys);
    }

    if (o.runs("db-lookup")) {
        info.timer_ns = timer_overhead_ns();
        run_db_lookup(rows, o, warm, &info);
    }

    std::fprintf(table, "modcache %s comparison; %u hardware threads; Zipf trace %zu requests; window %.2f s "
                        "(+%.2f s warm-up); cache %zu entries preloaded with keys %zu..0 (hottest last)\n",
                 mc_version(), std::thread::hardware_concurrency(), requests, o.seconds, warm, kZipfCacheEntries,
                 kZipfCacheEntries - 1);
    for (const std::string &n : info.notes) std::fprintf(table, "  note: %s\n", n.c_str());
    if (o.runs("zipf")) {
        print_zipf_table(table, rows, "zipf-getput", "zipf-getput: get, put on miss", o);
        print_zipf_table(table, rows, "zipf-readonly", "zipf-readonly: get only", o);
    }
    if (!cp.empty())
        print_trace_table(table, rows, cp.size());
    else if (o.runs("cloudphysics"))
        std::fprintf(table, "\ncloudphysics: skipped (no trace file)\n");
    if (o.runs("memory")) print_memory_table(table, rows);
    if (o.runs("memo")) print_memo_tables(table, rows, o);
    if (o.runs("db-lookup")) print_db_table(table, rows, o);
    print_targets(table, rows, !cp.empty());
    if (o.json) print_json(stdout, rows);
    info.load_end = load_average();
    if (!o.report_dir.empty()) {
        std::string err;
        if (!write_report(o.report_dir, rows, info, &err)) {
            std::fprintf(stderr, "mc_compare: report: %s\n", err.c_str());
            return 1;
        }
        progress("report written to %s (results.md, results.json, plot-*.dat)", o.report_dir.c_str());
    }
    return 0;
}
