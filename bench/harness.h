// bench/harness.h: the timed loops every throughput and latency figure comes from: threads walk
// one request trace from their own offsets, warm up, then count requests (or time each one).
#ifndef MODCACHE_BENCH_HARNESS_H
#define MODCACHE_BENCH_HARNESS_H

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

#include "compare.h"

namespace mcbench {

// A system under test offers request(key, fill): a get, and on a miss a put of the key when
// `fill`; it returns whether the get hit. The loops are templates over it so that the
// baselines are inlined: they must not be slowed by the harness.

enum Phase : int { kWait, kWarm, kMeasure, kStop };

struct Control {
    std::atomic<int> ready{0};
    std::atomic<int> phase{kWait};
};

// Padded so that threads publishing their counts never share a line.
struct alignas(64) ThreadCounts {
    uint64_t ops = 0;
    uint64_t hits = 0;
    uint64_t all_ops = 0;  // including the warm-up: where the thread ended up in the trace
};

// A system may also offer batch_begin() and batch_end(), which each thread calls around every
// batch of 64 requests it makes (a read section held across the batch); for the others these
// do nothing.
template <class Sys>
auto batch_begin(Sys &sys, int) -> decltype(sys.batch_begin(), void()) {
    sys.batch_begin();
}
template <class Sys>
void batch_begin(Sys &, long) {}
template <class Sys>
auto batch_end(Sys &sys, int) -> decltype(sys.batch_end(), void()) {
    sys.batch_end();
}
template <class Sys>
void batch_end(Sys &, long) {}

template <class Sys>
void zipf_worker(Sys &sys, const uint32_t *trace, size_t len, size_t start, bool fill, Control &ctl,
                 ThreadCounts &out) {
    ctl.ready.fetch_add(1, std::memory_order_acq_rel);
    while (ctl.phase.load(std::memory_order_acquire) == kWait) {
    }
    uint64_t ops = 0, hits = 0, warm_ops = 0;
    int seen = kWarm;
    size_t i = start;
    for (;;) {
        // The phase flag is read once per batch so its cache line is not pulled every request.
        batch_begin(sys, 0);
        for (int b = 0; b < 64; b++) {
            hits += sys.request(trace[i], fill);
            if (++i == len) i = 0;
        }
        batch_end(sys, 0);
        ops += 64;
        const int phase = ctl.phase.load(std::memory_order_relaxed);
        if (phase != seen) {
            // A thread descheduled through the whole window sees the stop first: its counts
            // are all warm-up and must not be charged to the window.
            if (phase == kStop && seen == kMeasure) break;
            warm_ops += ops;
            ops = hits = 0;  // warm-up over: count from here
            if (phase == kStop) break;
            seen = phase;
        }
    }
    out.ops = ops;
    out.hits = hits;
    out.all_ops = warm_ops + ops;
}

// Threads walk one trace from offsets len/threads apart. A mutex hands the lock unevenly, so
// one thread can run ahead until it replays, a moment later, the requests another thread has
// just made: they all hit, and the get+put hit ratio is inflated (throughput is not affected).
// This says whether two threads' positions came within `margin` requests of each other; the
// drift between two threads is taken as steady, which is how an unfair lock behaves.
inline bool trace_positions_met(const std::vector<ThreadCounts> &counts, const std::vector<size_t> &starts,
                                size_t len, size_t margin) {
    const int64_t L = static_cast<int64_t>(len), m = static_cast<int64_t>(margin);
    for (size_t i = 0; i < counts.size(); i++) {
        for (size_t j = i + 1; j < counts.size(); j++) {
            const int64_t d0 = static_cast<int64_t>(starts[j]) - static_cast<int64_t>(starts[i]);
            const int64_t d1 = d0 + static_cast<int64_t>(counts[j].all_ops) - static_cast<int64_t>(counts[i].all_ops);
            const int64_t lo = std::min(d0, d1) - m, hi = std::max(d0, d1) + m;
            // Is there a multiple of len (the positions coincide) in [lo, hi]?
            const int64_t k = lo >= 0 ? (lo + L - 1) / L : -((-lo) / L);
            if (k * L <= hi) return true;
        }
    }
    return false;
}

struct WindowRun {
    std::vector<ThreadCounts> counts;
    std::vector<size_t> starts;
    uint64_t ops = 0, hits = 0;
    double secs = 0.0;
};

// One timed run: thread t calls sys_for(t) (one shared system, or one client per thread),
// warms up for `warm` seconds, then counts requests for `window` seconds.
template <class SysFor>
WindowRun run_window_each(SysFor sys_for, const std::vector<uint32_t> &trace, int nthreads, bool fill, double warm,
                          double window) {
    Control ctl;
    WindowRun w;
    w.counts.resize(static_cast<size_t>(nthreads));
    std::vector<std::thread> threads;
    const size_t len = trace.size();
    for (int t = 0; t < nthreads; t++) {
        const size_t start = static_cast<size_t>(t) * len / static_cast<size_t>(nthreads);
        w.starts.push_back(start);
        threads.emplace_back([&, t, start] {
            zipf_worker(sys_for(t), trace.data(), len, start, fill, ctl, w.counts[static_cast<size_t>(t)]);
        });
    }
    // Release all threads at once only when every one is running, so none starts alone.
    while (ctl.ready.load(std::memory_order_acquire) < nthreads) std::this_thread::yield();
    ctl.phase.store(kWarm, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::duration<double>(warm));
    const auto t0 = Clock::now();
    ctl.phase.store(kMeasure, std::memory_order_release);
    std::this_thread::sleep_for(std::chrono::duration<double>(window));
    const auto t1 = Clock::now();
    ctl.phase.store(kStop, std::memory_order_release);
    for (std::thread &th : threads) th.join();
    for (const ThreadCounts &c : w.counts) {
        w.ops += c.ops;
        w.hits += c.hits;
    }
    w.secs = std::chrono::duration<double>(t1 - t0).count();
    return w;
}

template <class Sys>
WindowRun run_window(Sys &sys, const std::vector<uint32_t> &trace, int nthreads, bool fill, double warm,
                     double window) {
    return run_window_each([&sys](int) -> Sys & { return sys; }, trace, nthreads, fill, warm, window);
}

// Latency: every thread times each of its requests (get only) until `seconds` have passed or
// it has taken max_samples. One clock read separates two requests, so a sample is a request
// plus one clock read and the loop (timer_overhead_ns measures that floor).
struct LatencyRun {
    std::vector<uint32_t> ns;  // every thread's samples
    double p50_ns = kNull, p99_ns = kNull;
};

inline void latency_percentiles(LatencyRun *r) {
    std::vector<uint32_t> &v = r->ns;
    if (v.empty()) return;
    const size_t i50 = (v.size() - 1) / 2, i99 = (v.size() - 1) * 99 / 100;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i50), v.end());
    r->p50_ns = v[i50];
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i99), v.end());
    r->p99_ns = v[i99];
}

template <class SysFor>
LatencyRun run_latency_each(SysFor sys_for, const std::vector<uint32_t> &trace, int nthreads, double seconds,
                            size_t max_samples) {
    std::vector<std::vector<uint32_t>> per(static_cast<size_t>(nthreads));
    // Sized and written before the run: first touches of fresh pages would otherwise land in
    // the samples as page faults.
    for (auto &v : per) v.assign(max_samples, 0);
    std::vector<size_t> taken(static_cast<size_t>(nthreads), 0);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    const size_t len = trace.size();
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    for (int t = 0; t < nthreads; t++) {
        threads.emplace_back([&, t] {
            auto &sys = sys_for(t);
            uint32_t *out = per[static_cast<size_t>(t)].data();
            // Offsets differ from the throughput run's so this pass does not replay its start.
            size_t i = (2 * static_cast<size_t>(t) + 1) * len / (2 * static_cast<size_t>(nthreads));
            ready.fetch_add(1, std::memory_order_acq_rel);
            while (!go.load(std::memory_order_acquire)) {
            }
            const auto start = Clock::now();
            auto prev = start;
            size_t n = 0;
            while (n < max_samples) {
                sys.request(trace[i], false);
                if (++i == len) i = 0;
                const auto now = Clock::now();
                const auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(now - prev).count();
                out[n++] = static_cast<uint32_t>(std::min<long long>(d, UINT32_MAX));
                prev = now;
                if (now - start >= limit) break;
            }
            taken[static_cast<size_t>(t)] = n;
        });
    }
    while (ready.load(std::memory_order_acquire) < nthreads) std::this_thread::yield();
    go.store(true, std::memory_order_release);
    for (std::thread &th : threads) th.join();
    LatencyRun r;
    for (size_t t = 0; t < per.size(); t++) r.ns.insert(r.ns.end(), per[t].begin(), per[t].begin() + taken[t]);
    latency_percentiles(&r);
    return r;
}

// The floor of a latency sample: the same loop around a request that does nothing.
inline double timer_overhead_ns() {
    struct Nothing {
        bool request(uint64_t, bool) { return true; }
    } nothing;
    const std::vector<uint32_t> trace(1024, 0);
    LatencyRun r = run_latency_each([&](int) -> Nothing & { return nothing; }, trace, 1, 0.05, size_t{1} << 20);
    return r.p50_ns;
}

}  // namespace mcbench

#endif
