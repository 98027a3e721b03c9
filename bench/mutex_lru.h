// bench/mutex_lru.h: the yardstick the cache is measured against: an exact LRU of uint64 keys
// to uint64 values, one hash index and one doubly linked list under a single mutex.
#ifndef MODCACHE_BENCH_MUTEX_LRU_H
#define MODCACHE_BENCH_MUTEX_LRU_H

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace mcbench {

// Everything is preallocated at construction from operator new (malloc, jemalloc in the bench
// processes), so the memory benchmark sees the whole footprint and no operation allocates.
// The index is open addressing with linear probing and backward-shift deletion: an LRU
// deletes on every insert once full, and tombstones would slowly fill the table.
class MutexLru {
public:
    explicit MutexLru(size_t capacity) : capacity_(capacity) {
        assert(capacity >= 1 && capacity < kNone);
        // At most half full, so hits average close to one probe.
        size_t slots = 16;
        while (slots < 2 * capacity) slots <<= 1;
        mask_ = slots - 1;
        slots_.reset(new Slot[slots]);
        for (size_t i = 0; i < slots; i++) slots_[i].node = kNone;
        // One extra node is the list's sentinel: its next is the most recent entry and its
        // prev the least recent, which makes link and unlink branch-free.
        nodes_.reset(new Node[capacity + 1]);
        sentinel_ = static_cast<uint32_t>(capacity);
        nodes_[sentinel_].prev = nodes_[sentinel_].next = sentinel_;
    }

    MutexLru(const MutexLru &) = delete;
    MutexLru &operator=(const MutexLru &) = delete;

    // On a hit, copy the value, make the entry the most recent and return true.
    bool get(uint64_t key, uint64_t *value) {
        const uint32_t h = hash32(key);
        std::lock_guard<std::mutex> lock(mu_);
        const size_t slot = find(key, h);
        if (slot == kNotFound) return false;
        const uint32_t n = slots_[slot].node;
        touch(n);
        *value = nodes_[n].value;
        return true;
    }

    // Insert or replace; evicts the least recently used entry when full.
    void put(uint64_t key, uint64_t value) {
        const uint32_t h = hash32(key);
        std::lock_guard<std::mutex> lock(mu_);
        const size_t slot = find(key, h);
        if (slot != kNotFound) {
            const uint32_t n = slots_[slot].node;
            nodes_[n].value = value;
            touch(n);
            return;
        }
        uint32_t n;
        if (used_ < capacity_) {
            n = static_cast<uint32_t>(used_++);
        } else {
            n = nodes_[sentinel_].prev;  // least recently used: reuse its node
            unlink(n);
            const uint64_t old = nodes_[n].key;
            erase_slot(find(old, hash32(old)));
        }
        nodes_[n].key = key;
        nodes_[n].value = value;
        link_front(n);
        insert_slot(n, h);
    }

    size_t size() {
        std::lock_guard<std::mutex> lock(mu_);
        return used_;
    }
    size_t capacity() const { return capacity_; }

private:
    static constexpr uint32_t kNone = UINT32_MAX;
    static constexpr size_t kNotFound = SIZE_MAX;

    struct Node {
        uint64_t key;
        uint64_t value;
        uint32_t prev, next;
    };
    // The slot keeps 32 hash bits beside the node index: most probes that do not match are
    // rejected without touching the node, which would be a second cache miss.
    struct Slot {
        uint32_t node;
        uint32_t hash;
    };

    // A full 64-bit mixer (murmur3 fmix64): benchmark keys are dense small integers, and
    // linear probing degrades badly on clustered hashes.
    static uint32_t hash32(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdull;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ull;
        k ^= k >> 33;
        return static_cast<uint32_t>(k);
    }

    size_t find(uint64_t key, uint32_t h) const {
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const Slot s = slots_[i];
            if (s.node == kNone) return kNotFound;
            if (s.hash == h && nodes_[s.node].key == key) return i;
        }
    }

    void insert_slot(uint32_t n, uint32_t h) {
        size_t i = h & mask_;
        while (slots_[i].node != kNone) i = (i + 1) & mask_;
        slots_[i] = Slot{n, h};
    }

    // Backward-shift deletion: pull later members of the probe run into the hole whenever
    // their home slot lies cyclically at or before it, so lookups never need tombstones.
    void erase_slot(size_t hole) {
        size_t j = hole;
        for (;;) {
            j = (j + 1) & mask_;
            if (slots_[j].node == kNone) break;
            const size_t home = slots_[j].hash & mask_;
            if (((j - home) & mask_) >= ((j - hole) & mask_)) {
                slots_[hole] = slots_[j];
                hole = j;
            }
        }
        slots_[hole].node = kNone;
    }

    void unlink(uint32_t n) {
        Node &x = nodes_[n];
        nodes_[x.prev].next = x.next;
        nodes_[x.next].prev = x.prev;
    }

    void link_front(uint32_t n) {
        Node &s = nodes_[sentinel_];
        nodes_[n].prev = sentinel_;
        nodes_[n].next = s.next;
        nodes_[s.next].prev = n;
        s.next = n;
    }

    void touch(uint32_t n) {
        // The hottest keys are hit again and again: skip the four stores when already in front.
        if (nodes_[sentinel_].next == n) return;
        unlink(n);
        link_front(n);
    }

    std::mutex mu_;
    const size_t capacity_;
    size_t used_ = 0;
    size_t mask_ = 0;
    uint32_t sentinel_ = 0;
    std::unique_ptr<Slot[]> slots_;
    std::unique_ptr<Node[]> nodes_;
};

}  // namespace mcbench

#endif
