// bench/peer.cc: mc_compare's side of the peer protocol (peer.h): the child process, its two
// pipes, and the checks on what it answers.
#include "peer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace mcbench {
namespace {

// Long enough for a loaded machine to generate the full trace and compile the JVM's hot paths.
constexpr double kStartTimeout = 300.0;
// What a run may take beyond its warm-up and window: a collection, the preload, a busy machine.
constexpr double kRunSlack = 120.0;
constexpr size_t kMaxLine = 64 * 1024;

std::string exit_text(int status) {
    if (WIFEXITED(status)) return fmt("exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt("killed by signal %d", WTERMSIG(status));
    return "stopped";
}

// The raw text of `key`'s value in a one-line JSON object as print_json writes it: a number,
// null, or a quoted identifier (which never holds a comma or a brace).
bool json_field(const std::string &obj, const char *key, std::string *out) {
    const std::string pat = std::string("\"") + key + "\":";
    size_t p = obj.find(pat);
    if (p == std::string::npos) return false;
    p = obj.find_first_not_of(' ', p + pat.size());
    if (p == std::string::npos) return false;
    const size_t end = obj.find_first_of(",}", p);
    if (end == std::string::npos) return false;
    *out = obj.substr(p, obj.find_last_not_of(' ', end - 1) + 1 - p);
    return true;
}

bool json_number(const std::string &obj, const char *key, double *out) {
    std::string v;
    if (!json_field(obj, key, &v)) return false;
    if (v == "null") {
        *out = kNull;
        return true;
    }
    char *end;
    errno = 0;
    *out = std::strtod(v.c_str(), &end);
    return !v.empty() && *end == '\0' && errno == 0 && std::isfinite(*out);
}

bool valid_name(const std::string &s) {
    if (s.empty() || s.size() > 40) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

}  // namespace

bool Peer::start(const std::string &command, size_t requests, uint64_t checksum, double jit_seconds,
                 std::string *err) {
    stop();
    // A peer that exits must fail a write with EPIPE, not kill this process.
    signal(SIGPIPE, SIG_IGN);
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0) {
        *err = fmt("pipe: %s", std::strerror(errno));
        return false;
    }
    if (pipe2(from, O_CLOEXEC) != 0) {
        *err = fmt("pipe: %s", std::strerror(errno));
        close(to[0]);
        close(to[1]);
        return false;
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        *err = fmt("fork: %s", std::strerror(errno));
        for (int fd : {to[0], to[1], from[0], from[1]}) close(fd);
        return false;
    }
    if (pid == 0) {
        // Its own process group, so that stop() can end the shell and whatever it started; and
        // gone with this process even when that dies without stopping it.
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (dup2(to[0], 0) < 0 || dup2(from[1], 1) < 0) _exit(127);
        execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char *>(nullptr));
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    pid_ = pid;
    to_ = to[1];
    from_ = from[0];
    buf_.clear();

    std::string line;
    if (!send(fmt("trace %zu %.3f", requests, jit_seconds), err) || !receive(kStartTimeout, &line, err)) {
        stop();
        return false;
    }
    char sum[32], name[64];
    int used = 0;
    if (std::sscanf(line.c_str(), "ready %31s %63s %n", sum, name, &used) != 2 || !valid_name(name)) {
        *err = "unexpected answer to 'trace': " + line.substr(0, 200);
        stop();
        return false;
    }
    system_ = name;
    about_ = line.substr(static_cast<size_t>(used));
    const std::string want = fmt("%016llx", static_cast<unsigned long long>(checksum));
    if (want != sum) {
        *err = fmt("%s generated another Zipf trace (checksum %s, want %s): not measured", name, sum, want.c_str());
        stop();
        return false;
    }
    return true;
}

bool Peer::run(const char *workload, int threads, double warm, double window, Row *row, std::string *err) {
    std::string line;
    if (!running()) {
        *err = "not running";
        return false;
    }
    if (!send(fmt("run %s %d %.3f %.3f", workload, threads, warm, window), err) ||
        !receive(warm + window + kRunSlack, &line, err))
        return false;
    if (line.compare(0, 7, "record ") != 0 || line.size() < 10 || (line[7] != '0' && line[7] != '1') ||
        line[8] != ' ') {
        *err = "unexpected answer to 'run': " + line.substr(0, 200);
        return false;
    }
    const std::string rec = line.substr(9);
    std::string sys, wl, pol;
    double t = 0, size = 0, ops = 0, hit = 0;
    if (!json_field(rec, "system", &sys) || !json_field(rec, "workload", &wl) || !json_field(rec, "policy", &pol) ||
        !json_number(rec, "threads", &t) || !json_number(rec, "cache_size", &size) ||
        !json_number(rec, "ops_per_sec", &ops) || !json_number(rec, "hit_ratio", &hit)) {
        *err = "malformed record: " + rec.substr(0, 200);
        return false;
    }
    if (sys != "\"" + system_ + "\"" || wl != std::string("\"") + workload + "\"" || pol != "null" ||
        t != threads || size != static_cast<double>(kZipfCacheEntries) || !(ops > 0) || !(hit >= 0 && hit <= 1)) {
        *err = "a record for another run, or out of range: " + rec.substr(0, 200);
        return false;
    }
    *row = Row();
    row->system = system_;
    row->workload = workload;
    row->threads = threads;
    row->cache_size = kZipfCacheEntries;
    row->ops_per_sec = ops;
    row->hit_ratio = hit;
    row->overlap = line[7] == '1';
    return true;
}

void Peer::stop() {
    if (pid_ <= 0) return;
    std::string ignored;
    if (!send("quit", &ignored) && pid_ <= 0) return;  // it had exited, and send reaped it
    close(to_);
    to_ = -1;
    int status;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (waitpid(pid_, &status, WNOHANG) == 0) {
        if (Clock::now() >= deadline) {
            kill(-pid_, SIGKILL);
            waitpid(pid_, &status, 0);
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    close(from_);
    from_ = -1;
    pid_ = -1;
}

bool Peer::send(const std::string &line, std::string *err) {
    const std::string s = line + "\n";
    size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = write(to_, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = system_ + " " + (errno == EPIPE ? gone("closed its input") : fmt("write: %s", std::strerror(errno)));
            return false;
        }
        off += static_cast<size_t>(n);
    }
    return true;
}

// Most likely it exited: reap it to say how. One that did not is left to stop().
std::string Peer::gone(const char *otherwise) {
    int status = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;  // reaped: stop() must not wait for it again
            close(to_);
            close(from_);
            to_ = from_ = -1;
            return exit_text(status);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return otherwise;
}

bool Peer::receive(double timeout_s, std::string *line, std::string *err) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    for (;;) {
        const size_t nl = buf_.find('\n');
        if (nl != std::string::npos) {
            *line = buf_.substr(0, nl);
            buf_.erase(0, nl + 1);
            if (line->compare(0, 6, "error ") == 0) {
                *err = system_ + ": " + line->substr(6);
                return false;
            }
            return true;
        }
        if (buf_.size() > kMaxLine) {
            *err = fmt("%s: an answer longer than %zu bytes", system_.c_str(), kMaxLine);
            return false;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) {
            *err = fmt("%s: no answer within %.0f s", system_.c_str(), timeout_s);
            return false;
        }
        pollfd p{from_, POLLIN, 0};
        const int r = poll(&p, 1, static_cast<int>(std::min<long long>(left, 60000)));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *err = fmt("poll: %s", std::strerror(errno));
            return false;
        }
        if (r == 0) continue;
        char chunk[4096];
        const ssize_t n = read(from_, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *err = system_ + " " + gone("closed its output");
            return false;
        }
        buf_.append(chunk, static_cast<size_t>(n));
    }
}

}  // namespace mcbench
