// bench/mc_args.h: C++ spellings of the MC_ARG_* field constructors of modcache/key.h for the
// benchmarks, which are C++: the header's macros use C99 compound literals with nested
// designators (.v.u = ...), which C++17 does not accept.
#ifndef MODCACHE_BENCH_MC_ARGS_H
#define MODCACHE_BENCH_MC_ARGS_H

#include <cstdint>
#include <cstring>
#include <modcache/key.h>

namespace mcbench {

// Same field as MC_ARG_U(x).
inline mc_arg arg_u(uint64_t x) {
    mc_arg a;
    std::memset(&a, 0, sizeof a);
    a.type = MC_ARG_UINT;
    a.v.u = x;
    return a;
}

// Same field as MC_ARG_SN(p, n): a UTF-8 string, borrowed for the duration of the call.
inline mc_arg arg_str(const char *p, size_t n) {
    mc_arg a;
    std::memset(&a, 0, sizeof a);
    a.type = MC_ARG_STR;
    a.v.s.ptr = p;
    a.v.s.len = n;
    return a;
}

}  // namespace mcbench

#endif
