// bench/trace.h: loading of text request traces (one unsigned integer object id per line,
// as in shared/data/cloudphysics.txt) for the miss-ratio runs.
#ifndef MODCACHE_BENCH_TRACE_H
#define MODCACHE_BENCH_TRACE_H

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace mcbench {

// Read `path` into *ids. Blank lines and surrounding whitespace are ignored (a trailing
// newline or CRLF must not add a request); anything else that is not an unsigned decimal
// integer fails with a message naming the line, since a silently skipped line would shift
// every miss ratio compared with the reference simulator.
inline bool load_trace(const std::string &path, std::vector<uint64_t> *ids, std::string *err) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) {
        *err = path + ": " + std::strerror(errno);
        return false;
    }
    ids->clear();
    char line[256];
    unsigned long lineno = 0;
    bool ok = true;
    while (std::fgets(line, sizeof line, f)) {
        lineno++;
        const size_t len = std::strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !std::feof(f)) {
            *err = path + ":" + std::to_string(lineno) + ": line too long";
            ok = false;
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == '\r' || *p == '\0') continue;
        uint64_t v = 0;
        const char *digits = p;
        while (*p >= '0' && *p <= '9') {
            const uint64_t d = static_cast<uint64_t>(*p - '0');
            if (v > (UINT64_MAX - d) / 10) {
                digits = p = "";  // overflow: report as malformed below
                break;
            }
            v = v * 10 + d;
            p++;
        }
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (p == digits || *p != '\0') {
            *err = path + ":" + std::to_string(lineno) + ": expected an unsigned integer id";
            ok = false;
            break;
        }
        ids->push_back(v);
    }
    if (ok && std::ferror(f)) {
        *err = path + ": read error";
        ok = false;
    }
    std::fclose(f);
    return ok;
}

}  // namespace mcbench

#endif
