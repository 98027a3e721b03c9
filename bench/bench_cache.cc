// bench/bench_cache.cc: google-benchmark micro benchmarks of single modcache operations: key
// encoding, copy and pinned hits, misses and replacing puts, for both policies and 1-2 threads.
//
// Keys are encoded ahead of time in the cache cases so that they time the cache alone;
// the encode cases give the rest. Throughput cases use real time: with several threads,
// items_per_second is then the aggregate rate, which is what scaling questions ask about.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include <modcache/cache.h>
#include <modcache/key.h>

#include "zipf.h"

namespace {

using namespace mcbench;

constexpr size_t kPreload = 100000;
constexpr size_t kKeyRing = size_t{1} << 16;  // power of two: index with a mask

struct EncodedKey {
    uint8_t len;
    uint8_t bytes[23];
};

EncodedKey encode_u(uint64_t k) {
    EncodedKey e;
    const mc_arg a = mc_arg_uint(k);
    size_t len = 0;
    if (mc_key_encode(&a, 1, e.bytes, sizeof e.bytes, &len) != 0) std::abort();
    e.len = static_cast<uint8_t>(len);
    return e;
}

// One cache per policy shared by every case and thread, built on first use. It holds keys
// 0..kPreload-1; max_entries is twice that so that shards rarely overflow their share, and the
// hit cases only use keys found present afterwards. Nothing inserts new keys later, so a hit
// key stays a hit.
struct Fixture {
    mc_cache *cache = nullptr;
    std::vector<EncodedKey> hits;    // Zipf-distributed present keys: realistic skew
    std::vector<EncodedKey> misses;  // keys never inserted
};

Fixture &fixture(int policy) {
    static Fixture fixtures[2];
    static std::once_flag once[2];
    std::call_once(once[policy], [policy] {
        Fixture &f = fixtures[policy];
        mc_cache_options opts;
        mc_cache_options_init(&opts);
        opts.max_entries = 2 * kPreload;
        opts.policy = static_cast<mc_policy>(policy);
        if (mc_cache_create(&opts, &f.cache) != 0) std::abort();
        for (uint64_t k = kPreload; k-- > 0;) {  // hottest last: the most recent
            const EncodedKey e = encode_u(k);
            if (mc_cache_put(f.cache, e.bytes, e.len, &k, sizeof k) != 0) std::abort();
        }
        const std::vector<uint32_t> trace = zipf_trace(4 * kKeyRing);
        for (size_t i = 0; i < trace.size() && f.hits.size() < kKeyRing; i++) {
            if (trace[i] >= kPreload) continue;
            const EncodedKey e = encode_u(trace[i]);
            if (mc_cache_contains(f.cache, e.bytes, e.len)) f.hits.push_back(e);
        }
        if (f.hits.size() < kKeyRing) std::abort();
        for (uint64_t i = 0; i < kKeyRing; i++) f.misses.push_back(encode_u(kZipfKeys + i));
        // Never destroyed: cases of both thread counts share it and google-benchmark has no
        // hook after the last of them; process exit reclaims it.
    });
    return fixtures[policy];
}

void label_policy(benchmark::State &state) {
    state.SetLabel(state.range(0) == MC_POLICY_S3FIFO ? "s3fifo" : "lru");
}

// Threads start at different points of the key ring so they do not walk it in lockstep.
size_t start_index(const benchmark::State &state) {
    return (static_cast<size_t>(state.thread_index()) * (kKeyRing / 7)) & (kKeyRing - 1);
}

// ---------------------------------------------------------------------------------------------

void BM_KeyEncodeInt(benchmark::State &state) {
    uint8_t buf[32];
    uint64_t k = 0;
    for (auto _ : state) {
        const mc_arg a = mc_arg_uint(k++ * 2654435761u);  // vary the magnitude, not just the low bits
        size_t len = 0;
        if (mc_key_encode(&a, 1, buf, sizeof buf, &len) != 0) {
            state.SkipWithError("mc_key_encode failed");
            break;
        }
        benchmark::DoNotOptimize(buf);
        benchmark::DoNotOptimize(len);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KeyEncodeInt);

void BM_KeyEncodeStrInt(benchmark::State &state) {
    // A typical module key: a user id and a number.
    static const char user[] = "@alice:example.com";
    uint8_t buf[64];
    uint64_t k = 0;
    for (auto _ : state) {
        const mc_arg a[2] = {mc_arg_strn(user, sizeof user - 1), mc_arg_uint(k++)};
        size_t len = 0;
        if (mc_key_encode(a, 2, buf, sizeof buf, &len) != 0) {
            state.SkipWithError("mc_key_encode failed");
            break;
        }
        benchmark::DoNotOptimize(buf);
        benchmark::DoNotOptimize(len);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_KeyEncodeStrInt);

void BM_GetCopyHit(benchmark::State &state) {
    Fixture &f = fixture(static_cast<int>(state.range(0)));
    size_t i = start_index(state);
    uint64_t value = 0;
    for (auto _ : state) {
        const EncodedKey &k = f.hits[i++ & (kKeyRing - 1)];
        size_t vlen = 0;
        if (mc_cache_get_copy(f.cache, k.bytes, k.len, &value, sizeof value, &vlen) != 0) {
            state.SkipWithError("mc_cache_get_copy: expected a hit");
            break;
        }
        benchmark::DoNotOptimize(value);
    }
    state.SetItemsProcessed(state.iterations());
    label_policy(state);
}

void BM_GetPinnedHit(benchmark::State &state) {
    Fixture &f = fixture(static_cast<int>(state.range(0)));
    size_t i = start_index(state);
    for (auto _ : state) {
        const EncodedKey &k = f.hits[i++ & (kKeyRing - 1)];
        mc_value *v = nullptr;
        if (mc_cache_get(f.cache, k.bytes, k.len, &v) != 0) {
            state.SkipWithError("mc_cache_get: expected a hit");
            break;
        }
        // Read the value as a caller would, so the pin is not released untouched.
        uint64_t x;
        std::memcpy(&x, mc_value_data(v), sizeof x);
        benchmark::DoNotOptimize(x);
        mc_value_release(v);
    }
    state.SetItemsProcessed(state.iterations());
    label_policy(state);
}

void BM_GetMiss(benchmark::State &state) {
    Fixture &f = fixture(static_cast<int>(state.range(0)));
    size_t i = start_index(state);
    uint64_t value = 0;
    for (auto _ : state) {
        const EncodedKey &k = f.misses[i++ & (kKeyRing - 1)];
        size_t vlen = 0;
        if (mc_cache_get_copy(f.cache, k.bytes, k.len, &value, sizeof value, &vlen) != MC_ENOENT) {
            state.SkipWithError("mc_cache_get_copy: expected a miss");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
    label_policy(state);
}

void BM_PutReplace(benchmark::State &state) {
    Fixture &f = fixture(static_cast<int>(state.range(0)));
    size_t i = start_index(state);
    uint64_t value = 0;
    for (auto _ : state) {
        const EncodedKey &k = f.hits[i++ & (kKeyRing - 1)];
        value++;
        if (mc_cache_put(f.cache, k.bytes, k.len, &value, sizeof value) != 0) {
            state.SkipWithError("mc_cache_put failed");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
    label_policy(state);
}

void cache_cases(benchmark::internal::Benchmark *b) {
    b->ArgName("policy")->Arg(MC_POLICY_LRU)->Arg(MC_POLICY_S3FIFO)->Threads(1)->Threads(2)->UseRealTime();
}
BENCHMARK(BM_GetCopyHit)->Apply(cache_cases);
BENCHMARK(BM_GetPinnedHit)->Apply(cache_cases);
BENCHMARK(BM_GetMiss)->Apply(cache_cases);
BENCHMARK(BM_PutReplace)->Apply(cache_cases);

}  // namespace

BENCHMARK_MAIN();
