// bench/peer.h: a system measured in a process of its own (bench/caffeine/: Caffeine on the JVM),
// which mc_compare starts once and asks for each Zipf run between its own systems' runs.
#ifndef MODCACHE_BENCH_PEER_H
#define MODCACHE_BENCH_PEER_H

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "compare.h"

namespace mcbench {

// The protocol: one line each way per step, over the peer's stdin and stdout (its stderr is
// mc_compare's).
//   -> trace REQUESTS JIT_SECONDS       generate the Zipf trace (zipf.h) of that length, then run
//                                       each request shape untimed for JIT_SECONDS (at 1 and at
//                                       2 threads)
//   <- ready CHECKSUM SYSTEM ABOUT...   zipf_trace_checksum of its trace in hex, the system's name
//                                       (lower case, digits, '-'), what it is (versions, flags)
//   -> run WORKLOAD THREADS WARM WINDOW one run as mc_compare's run_zipf does it: a new cache of
//                                       kZipfCacheEntries, preloaded, then run_window's loop
//   <- record OVERLAP JSON              1 when trace_positions_met, else 0; then the results.json
//                                       record of the run (report.cc's print_json, on one line)
//   -> quit
// Any step may be answered with "error MESSAGE", after which the peer exits. A peer answers only
// once it has nothing left running (a JVM: no compilation), since the other systems' runs are
// timed between its answers.
class Peer {
public:
    Peer() = default;
    ~Peer() { stop(); }
    Peer(const Peer &) = delete;
    Peer &operator=(const Peer &) = delete;

    // Start `command` (with /bin/sh -c) and have it generate a trace of `requests` keys, which
    // must give `checksum`. On failure the process is stopped and *err says why.
    bool start(const std::string &command, size_t requests, uint64_t checksum, double jit_seconds,
               std::string *err);
    // One run; *row gets system, workload, threads, cache_size, ops_per_sec, hit_ratio and
    // overlap. On failure (an error answer, a malformed record, no answer in time) *err says why;
    // the peer is left running, and the caller decides whether to stop it.
    bool run(const char *workload, int threads, double warm, double window, Row *row, std::string *err);
    // Ask it to quit, then kill its process group if it has not exited within 5 s.
    void stop();

    bool running() const { return pid_ > 0; }
    const std::string &system() const { return system_; }
    const std::string &about() const { return about_; }

private:
    bool send(const std::string &line, std::string *err);
    bool receive(double timeout_s, std::string *line, std::string *err);
    std::string gone(const char *otherwise);

    pid_t pid_ = -1;
    int to_ = -1;    // its stdin
    int from_ = -1;  // its stdout
    std::string buf_;
    std::string system_ = "peer", about_;
};

}  // namespace mcbench

#endif
