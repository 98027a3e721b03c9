// bench/libcuckoo_sys.h: libcuckoo's cuckoohash_map (Debian libcuckoo-dev, header-only) as a
// system under test: a concurrent hash map with fine-grained bucket locks that never evicts.
#ifndef MODCACHE_BENCH_LIBCUCKOO_SYS_H
#define MODCACHE_BENCH_LIBCUCKOO_SYS_H

#include <cinttypes>
#include <cstddef>
#include <cstdint>

#include <libcuckoo/cuckoohash_map.hh>

#include "compare.h"
#include "zipf.h"

namespace mcbench {

class LibcuckooSys {
public:
    // Room for every key of the workload up front, as nolimit-hash has: the figures are the
    // map's steady state, not its resizes.
    LibcuckooSys() { map_.reserve(kZipfKeys); }
    LibcuckooSys(const LibcuckooSys &) = delete;
    LibcuckooSys &operator=(const LibcuckooSys &) = delete;

    bool request(uint64_t key, bool fill) {
        uint64_t value = 0;
        if (map_.find(key, value)) {
            if (value != key) die("libcuckoo: key %" PRIu64 " returned a wrong value", key);
            return true;
        }
        if (fill) map_.insert(key, key);
        return false;
    }
    void put(uint64_t key) { map_.insert_or_assign(key, key); }

private:
    // The mixer the other baselines use: std::hash of an integer is the identity, and the
    // workload's keys are dense small integers.
    struct Mix64 {
        size_t operator()(uint64_t k) const {
            k ^= k >> 33;
            k *= 0xff51afd7ed558ccdull;
            k ^= k >> 33;
            k *= 0xc4ceb9fe1a85ec53ull;
            k ^= k >> 33;
            return static_cast<size_t>(k);
        }
    };
    libcuckoo::cuckoohash_map<uint64_t, uint64_t, Mix64> map_;
};

}  // namespace mcbench

#endif
