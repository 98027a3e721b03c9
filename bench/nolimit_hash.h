// bench/nolimit_hash.h: the ceiling a concurrent cache is compared with: a fixed-size
// lock-free hash map of uint64 keys to uint64 values that never evicts or deletes.
#ifndef MODCACHE_BENCH_NOLIMIT_HASH_H
#define MODCACHE_BENCH_NOLIMIT_HASH_H

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace mcbench {

// Open addressing with linear probing over a power-of-two array of (key, value) slots.
// Reads take no lock and write nothing; an insert claims a slot with one CAS on its key.
// Without deletes a key never moves, so a reader that meets an empty slot knows the key is
// absent. The all-ones key and value are reserved as "empty" markers.
class NolimitHash {
public:
    static constexpr uint64_t kEmpty = UINT64_MAX;
    static constexpr size_t kDefaultSlots = size_t{1} << 21;

    explicit NolimitHash(size_t slots = kDefaultSlots) {
        assert(slots >= 2 && (slots & (slots - 1)) == 0);
        mask_ = slots - 1;
        slots_.reset(new Slot[slots]);
        for (size_t i = 0; i < slots; i++) {
            slots_[i].key.store(kEmpty, std::memory_order_relaxed);
            slots_[i].value.store(kEmpty, std::memory_order_relaxed);
        }
    }

    NolimitHash(const NolimitHash &) = delete;
    NolimitHash &operator=(const NolimitHash &) = delete;

    bool get(uint64_t key, uint64_t *value) const {
        for (size_t i = hash(key) & mask_, n = 0; n <= mask_; i = (i + 1) & mask_, n++) {
            const uint64_t k = slots_[i].key.load(std::memory_order_acquire);
            if (k == kEmpty) return false;
            if (k == key) {
                // The key is published before its value: a reader racing the insert sees the
                // empty value and reports a miss, as if it had come a moment earlier.
                const uint64_t v = slots_[i].value.load(std::memory_order_acquire);
                if (v == kEmpty) return false;
                *value = v;
                return true;
            }
        }
        return false;
    }

    // Insert or overwrite. Returns false only when the table is full (the caller sized it
    // too small) or for the reserved key/value.
    bool put(uint64_t key, uint64_t value) {
        if (key == kEmpty || value == kEmpty) return false;
        for (size_t i = hash(key) & mask_, n = 0; n <= mask_; i = (i + 1) & mask_, n++) {
            uint64_t k = slots_[i].key.load(std::memory_order_acquire);
            if (k == kEmpty) {
                // acq_rel: on failure we must see the winner's key to compare it below.
                if (slots_[i].key.compare_exchange_strong(k, key, std::memory_order_acq_rel,
                                                          std::memory_order_acquire))
                    k = key;
            }
            if (k == key) {
                // release: a reader that sees this value sees the key stored before it.
                slots_[i].value.store(value, std::memory_order_release);
                return true;
            }
        }
        return false;
    }

    size_t slots() const { return mask_ + 1; }

private:
    // Key and value share a 16-byte slot so a hit costs one cache line.
    struct Slot {
        std::atomic<uint64_t> key;
        std::atomic<uint64_t> value;
    };

    static uint64_t hash(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdull;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ull;
        k ^= k >> 33;
        return k;
    }

    size_t mask_ = 0;
    std::unique_ptr<Slot[]> slots_;
};

}  // namespace mcbench

#endif
