// bench/zipf.h: the project's deterministic Zipf request trace (shared/data/README.md):
// splitmix64 seeded 42, s = 0.99 over 1,000,000 keys, inverse CDF by binary search, key = rank-1.
#ifndef MODCACHE_BENCH_ZIPF_H
#define MODCACHE_BENCH_ZIPF_H

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mcbench {

// Defaults of the workload every figure in the project is quoted for; changing any of them
// makes the results incomparable with shared/data/README.md and ANCHORS.md.
constexpr uint64_t kZipfSeed = 42;
constexpr double kZipfExponent = 0.99;
constexpr uint32_t kZipfKeys = 1000000;
constexpr size_t kZipfRequests = size_t{1} << 24;

// splitmix64 (Steele, Lea, Flood 2014): the generator named by the workload definition.
struct SplitMix64 {
    uint64_t state;
    explicit SplitMix64(uint64_t seed) : state(seed) {}
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1): the top 53 bits are exactly representable in a double.
    double next_double() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// The CDF over ranks 1..n with p(k) proportional to 1/k^s; cdf[k-1] = P(rank <= k).
inline std::vector<double> zipf_cdf(uint32_t n, double s) {
    std::vector<double> cdf(n);
    double sum = 0.0;
    for (uint32_t k = 1; k <= n; k++) {
        sum += 1.0 / std::pow(static_cast<double>(k), s);
        cdf[k - 1] = sum;
    }
    for (double &c : cdf) c /= sum;
    // Rounding can leave the last entry a hair below 1; force it so every u < 1 maps to a rank.
    cdf[n - 1] = 1.0;
    return cdf;
}

// Generate `len` keys: key = (smallest rank whose CDF reaches u) - 1, so key 0 is the hottest.
// Keys fit 32 bits, which halves the trace's memory traffic while threads walk it.
inline std::vector<uint32_t> zipf_trace(size_t len, uint32_t n = kZipfKeys,
                                        double s = kZipfExponent, uint64_t seed = kZipfSeed) {
    const std::vector<double> cdf = zipf_cdf(n, s);
    SplitMix64 rng(seed);
    std::vector<uint32_t> trace(len);
    for (size_t i = 0; i < len; i++) {
        const double u = rng.next_double();
        const size_t idx = static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        trace[i] = static_cast<uint32_t>(std::min<size_t>(idx, n - 1));
    }
    return trace;
}

// FNV-1a's constants over the keys, one 32-bit key per step: what a generator in another process
// must reproduce (mc_compare --peer refuses a peer whose trace gives another checksum).
inline uint64_t zipf_trace_checksum(const std::vector<uint32_t> &trace) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t k : trace) {
        h ^= k;
        h *= 0x100000001b3ull;
    }
    return h;
}

// Share of requests for keys >= `hot` (what a cache holding exactly the `hot` hottest keys
// would miss): 0.170 for the default workload and hot = 100,000.
inline double zipf_share_at_or_above(const std::vector<uint32_t> &trace, uint32_t hot) {
    size_t cold = 0;
    for (uint32_t k : trace) cold += (k >= hot);
    return trace.empty() ? 0.0 : static_cast<double>(cold) / static_cast<double>(trace.size());
}

}  // namespace mcbench

#endif
