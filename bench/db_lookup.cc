// bench/db_lookup.cc: the db-lookup workload: Zipf lookups of user ids answered by a warm
// memoized function over SQLite, by a redis-server over loopback, and by SQLite directly.
//
// The benchmark owns everything it talks to: a SQLite database and a redis-server, both in a
// temporary directory, started, filled, stopped and removed by the run itself.
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include <modcache/cached.h>

#include "compare.h"
#include "harness.h"
#include "zipf.h"

namespace mcbench {
namespace {

// ---------------------------------------------------------------------------------------------
// The data: user<i> -> one of a few departments, the same pairs in SQLite and in Redis.

constexpr const char *kDepartments[] = {"engineering", "sales",      "marketing", "finance", "support",
                                        "legal",       "operations", "research",  "design",  "security"};
constexpr size_t kNumDepartments = sizeof kDepartments / sizeof kDepartments[0];

const char *department_of(size_t user) {
    // A multiplicative hash spreads departments over users so that neighbours differ.
    return kDepartments[((user * 2654435761ull) >> 16) % kNumDepartments];
}

// Every answer is checked: a lookup that returned the wrong row would still be fast.
void check_department(size_t user, const void *data, size_t len, const char *who) {
    const char *want = department_of(user);
    if (len != std::strlen(want) || std::memcmp(data, want, len) != 0)
        die("%s: user%zu answered '%.*s', want '%s'", who, user, static_cast<int>(len),
            static_cast<const char *>(data), want);
}

// The ids as callers hold them, built once so that no request formats a string.
class UserIds {
public:
    explicit UserIds(size_t n) {
        offsets_.reserve(n + 1);
        offsets_.push_back(0);
        for (size_t i = 0; i < n; i++) {
            char buf[32];
            const int len = std::snprintf(buf, sizeof buf, "user%zu", i);
            data_.append(buf, static_cast<size_t>(len));
            offsets_.push_back(data_.size());
        }
    }
    size_t size() const { return offsets_.size() - 1; }
    const char *id(size_t i, size_t *len) const {
        *len = offsets_[i + 1] - offsets_[i];
        return data_.data() + offsets_[i];
    }

private:
    std::string data_;
    std::vector<size_t> offsets_;
};

// ---------------------------------------------------------------------------------------------
// SQLite.

[[noreturn]] void die_sqlite(sqlite3 *db, const char *what) {
    die("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

void sqlite_exec(sqlite3 *db, const char *sql) {
    char *msg = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
        std::string m = msg ? msg : "unknown error";
        sqlite3_free(msg);
        die("sqlite: %s: %s", sql, m.c_str());
    }
}

void create_database(const std::string &path, const UserIds &ids) {
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
        die_sqlite(db, path.c_str());
    // A scratch file: no journal and no syncs while filling it.
    sqlite_exec(db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
                    "CREATE TABLE users(user_id TEXT PRIMARY KEY, department TEXT NOT NULL);"
                    "BEGIN");
    sqlite3_stmt *ins = nullptr;
    if (sqlite3_prepare_v2(db, "INSERT INTO users(user_id, department) VALUES (?1, ?2)", -1, &ins, nullptr) !=
        SQLITE_OK)
        die_sqlite(db, "prepare INSERT");
    for (size_t i = 0; i < ids.size(); i++) {
        size_t len;
        const char *id = ids.id(i, &len);
        sqlite3_bind_text(ins, 1, id, static_cast<int>(len), SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, department_of(i), -1, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) die_sqlite(db, "INSERT");
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    sqlite_exec(db, "COMMIT");
    sqlite3_close(db);
}

constexpr const char *kSelect = "SELECT department FROM users WHERE user_id = ?1";

// One read-only connection and its prepared lookup; one thread at a time.
class SqliteReader {
public:
    explicit SqliteReader(const std::string &path) {
        // NOMUTEX: the connection is never shared between threads at once, so SQLite's own
        // per-connection mutex would only add cost.
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
            die_sqlite(db_, path.c_str());
        // 64 MiB of page cache holds the whole database (a few MB): once warm, a lookup never
        // reads the file, the most favourable setting for the query.
        sqlite_exec(db_, "PRAGMA cache_size = -65536");
        if (sqlite3_prepare_v3(db_, kSelect, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK)
            die_sqlite(db_, "prepare SELECT");
    }
    ~SqliteReader() {
        sqlite3_finalize(stmt_);
        sqlite3_close(db_);
    }
    SqliteReader(const SqliteReader &) = delete;
    SqliteReader &operator=(const SqliteReader &) = delete;

    // Calls use(department, length) while the row is current; false when the user is absent.
    template <class F>
    bool lookup(const void *id, size_t len, F use) {
        sqlite3_bind_text(stmt_, 1, static_cast<const char *>(id), static_cast<int>(len), SQLITE_STATIC);
        const int rc = sqlite3_step(stmt_);
        bool found = false;
        if (rc == SQLITE_ROW) {
            const void *d = sqlite3_column_text(stmt_, 0);
            use(d, static_cast<size_t>(sqlite3_column_bytes(stmt_, 0)));
            found = true;
        } else if (rc != SQLITE_DONE) {
            die_sqlite(db_, "SELECT");
        }
        sqlite3_reset(stmt_);
        return found;
    }

    // Every user once, so that the page cache holds the table and its index.
    void warm(const UserIds &ids) {
        for (size_t i = 0; i < ids.size(); i++) {
            size_t len;
            const char *id = ids.id(i, &len);
            if (!lookup(id, len, [&](const void *d, size_t n) { check_department(i, d, n, "sqlite"); }))
                die("sqlite: user%zu is missing", i);
        }
    }

    // The plan's detail lines: "SEARCH users USING INDEX ..." when the index is used.
    std::string plan() {
        sqlite3_stmt *st = nullptr;
        const std::string sql = std::string("EXPLAIN QUERY PLAN ") + kSelect;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) die_sqlite(db_, "EXPLAIN");
        std::string out;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *detail = sqlite3_column_text(st, 3);
            if (!out.empty()) out += "; ";
            out += detail ? reinterpret_cast<const char *>(detail) : "";
        }
        sqlite3_finalize(st);
        return out;
    }

private:
    sqlite3 *db_ = nullptr;
    sqlite3_stmt *stmt_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Redis: a redis-server child on a free loopback port.

std::string find_program(const std::string &name) {
    if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
    const char *path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    size_t pos = 0;
    while (pos <= dirs.size()) {
        size_t end = dirs.find(':', pos);
        if (end == std::string::npos) end = dirs.size();
        std::string dir = dirs.substr(pos, end - pos);
        if (dir.empty()) dir = ".";
        const std::string cand = dir + "/" + name;
        struct stat st;
        if (stat(cand.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(cand.c_str(), X_OK) == 0) return cand;
        pos = end + 1;
    }
    return "";
}

// Bound then released: another process may take it before redis-server does, which start()
// notices (the server exits) and answers with another port.
unsigned free_loopback_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t alen = sizeof a;
    unsigned port = 0;
    if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

redisContext *redis_connect(unsigned port, int timeout_ms) {
    const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", static_cast<int>(port), tv);
    if (c && c->err) {
        redisFree(c);
        return nullptr;
    }
    return c;
}

std::string read_tail(const std::string &path, size_t max) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return "";
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
    return s.size() > max ? s.substr(s.size() - max) : s;
}

class RedisServer {
public:
    ~RedisServer() { stop(); }

    // Start exe with its directory and log in dir; true once it answers PING.
    bool start(const std::string &exe, const std::string &dir, std::string *err) {
        const std::string log = dir + "/redis.log";
        for (int attempt = 0; attempt < 3; attempt++) {
            const unsigned port = free_loopback_port();
            if (port == 0) {
                *err = fmt("no free loopback port: %s", std::strerror(errno));
                return false;
            }
            const std::string port_s = std::to_string(port);
            // No persistence and no background saves: the server holds the pairs in memory only.
            const char *argv[] = {exe.c_str(), "--port", port_s.c_str(), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--dir", dir.c_str(), "--daemonize", "no", nullptr};
            const pid_t parent = getpid();
            const pid_t pid = fork();
            if (pid < 0) {
                *err = fmt("fork: %s", std::strerror(errno));
                return false;
            }
            if (pid == 0) {
                // The server goes with this process even when it dies without stopping it.
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent) _exit(127);
                const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
                const int in = open("/dev/null", O_RDONLY);
                if (fd < 0 || in < 0) _exit(127);
                dup2(in, 0);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(exe.c_str(), const_cast<char *const *>(argv));
                _exit(127);
            }
            pid_ = pid;
            port_ = port;
            // Poll for readiness: the server gives no other sign that it listens.
            const auto deadline = Clock::now() + std::chrono::seconds(10);
            bool exited = false;
            int status = 0;
            while (Clock::now() < deadline) {
                if (waitpid(pid_, &status, WNOHANG) == pid_) {
                    exited = true;
                    pid_ = -1;
                    break;
                }
                if (redisContext *c = redis_connect(port_, 200)) {
                    redisReply *r = static_cast<redisReply *>(redisCommand(c, "PING"));
                    const bool pong = r && r->type == REDIS_REPLY_STATUS && std::strcmp(r->str, "PONG") == 0;
                    if (r) freeReplyObject(r);
                    redisFree(c);
                    if (pong) return true;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
            if (!exited) {
                stop();
                *err = "redis-server did not answer PING within 10 s";
                return false;
            }
            *err = fmt("%s exited at start (%s %d): ", exe.c_str(), WIFEXITED(status) ? "status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)) +
                   read_tail(log, 400);
            // Most likely the port was taken in between: try another.
        }
        return false;
    }

    void stop() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        const auto deadline = Clock::now() + std::chrono::seconds(5);
        int status;
        while (waitpid(pid_, &status, WNOHANG) == 0) {
            if (Clock::now() >= deadline) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
    }

    // For the die hook: no waiting, the process is about to end.
    void kill_now() const {
        if (pid_ > 0) kill(pid_, SIGKILL);
    }

    unsigned port() const { return port_; }

private:
    pid_t pid_ = -1;
    unsigned port_ = 0;
};

void redis_fill(unsigned port, const UserIds &ids) {
    redisContext *c = redis_connect(port, 2000);
    if (!c) die("redis: cannot connect to 127.0.0.1:%u", port);
    // Pipelined in batches: one round trip per thousand SETs rather than per SET.
    constexpr size_t kBatch = 1000;
    for (size_t base = 0; base < ids.size(); base += kBatch) {
        const size_t end = std::min(ids.size(), base + kBatch);
        for (size_t i = base; i < end; i++) {
            size_t len;
            const char *id = ids.id(i, &len);
            const char *dept = department_of(i);
            const char *argv[3] = {"SET", id, dept};
            const size_t lens[3] = {3, len, std::strlen(dept)};
            if (redisAppendCommandArgv(c, 3, argv, lens) != REDIS_OK) die("redis: SET: %s", c->errstr);
        }
        for (size_t i = base; i < end; i++) {
            void *reply = nullptr;
            if (redisGetReply(c, &reply) != REDIS_OK) die("redis: SET: %s", c->errstr);
            redisReply *r = static_cast<redisReply *>(reply);
            if (r->type != REDIS_REPLY_STATUS || std::strcmp(r->str, "OK") != 0) die("redis: SET user%zu failed", i);
            freeReplyObject(r);
        }
    }
    redisReply *r = static_cast<redisReply *>(redisCommand(c, "DBSIZE"));
    if (!r || r->type != REDIS_REPLY_INTEGER || static_cast<size_t>(r->integer) != ids.size())
        die("redis: DBSIZE is not %zu after the fill", ids.size());
    freeReplyObject(r);
    redisFree(c);
}

std::string redis_version(unsigned port) {
    redisContext *c = redis_connect(port, 2000);
    if (!c) return "?";
    std::string v = "?";
    if (redisReply *r = static_cast<redisReply *>(redisCommand(c, "INFO server"))) {
        if (r->type == REDIS_REPLY_STRING) {
            const char *p = std::strstr(r->str, "redis_version:");
            if (p) {
                p += std::strlen("redis_version:");
                v.assign(p, std::strcspn(p, "\r\n"));
            }
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return v;
}

// ---------------------------------------------------------------------------------------------
// The systems: request(user, fill) answers one lookup and checks it (fill is unused: every
// user exists). Redis and SQLite clients are one per thread; the memoized function is shared.

class RedisGetSys {
public:
    RedisGetSys(unsigned port, const UserIds &ids) : ids_(ids) {
        c_ = redis_connect(port, 2000);
        if (!c_) die("redis: cannot connect to 127.0.0.1:%u", port);
    }
    ~RedisGetSys() { redisFree(c_); }
    RedisGetSys(const RedisGetSys &) = delete;
    RedisGetSys &operator=(const RedisGetSys &) = delete;

    bool request(uint64_t user, bool) {
        size_t len;
        const char *id = ids_.id(user, &len);
        const char *argv[2] = {"GET", id};
        const size_t lens[2] = {3, len};
        redisReply *r = static_cast<redisReply *>(redisCommandArgv(c_, 2, argv, lens));
        if (!r) die("redis: GET: %s", c_->errstr);
        if (r->type != REDIS_REPLY_STRING) die("redis: GET user%" PRIu64 ": reply of type %d", user, r->type);
        check_department(user, r->str, r->len, "redis-get");
        freeReplyObject(r);
        return true;
    }

private:
    const UserIds &ids_;
    redisContext *c_ = nullptr;
};

class SqliteQuerySys {
public:
    SqliteQuerySys(const std::string &path, const UserIds &ids) : reader_(path), ids_(ids) { reader_.warm(ids); }
    bool request(uint64_t user, bool) {
        size_t len;
        const char *id = ids_.id(user, &len);
        if (!reader_.lookup(id, len, [&](const void *d, size_t n) { check_department(user, d, n, "sqlite-query"); }))
            die("sqlite-query: user%" PRIu64 " is missing", user);
        return true;
    }

private:
    SqliteReader reader_;
    const UserIds &ids_;
};

// The memoized function's loader runs the same query on its own connection. Loads from
// several threads take turns on it; they happen only while warming.
struct MemoBackend {
    explicit MemoBackend(const std::string &path) : reader(path) {}
    std::mutex mu;
    SqliteReader reader;
};

int load_department(void *self, const mc_arg *args, size_t nargs, mc_load *load) {
    MemoBackend *b = static_cast<MemoBackend *>(self);
    if (nargs != 1 || args[0].type != MC_ARG_STR) return MC_EINVAL;
    std::lock_guard<std::mutex> lock(b->mu);
    int rc = 0;
    const bool found =
        b->reader.lookup(args[0].v.s.ptr, args[0].v.s.len, [&](const void *d, size_t n) { rc = mc_load_set_copy(load, d, n); });
    return found ? rc : mc_load_set_none(load);
}

class MemoDbSys {
public:
    MemoDbSys(mc_cached *fn, const UserIds &ids) : fn_(fn), ids_(ids) {}
    bool request(uint64_t user, bool) {
        size_t len;
        const char *id = ids_.id(user, &len);
        const mc_arg arg = mc_arg_strn(id, len);
        mc_value *v = nullptr;
        check_rc(mc_cached_call(fn_, &arg, 1, &v), "mc_cached_call");
        if (mc_value_is_none(v)) die("modcache-memo: user%" PRIu64 " has no department", user);
        check_department(user, mc_value_data(v), mc_value_size(v), "modcache-memo");
        mc_value_release(v);
        return true;
    }

private:
    mc_cached *fn_;
    const UserIds &ids_;
};

// ---------------------------------------------------------------------------------------------
// Cleanup, also when die() ends the run early.

RedisServer *g_redis = nullptr;
std::string g_tmpdir;

void db_lookup_die_hook() {
    if (g_redis) g_redis->kill_now();
    if (!g_tmpdir.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(g_tmpdir, ec);
    }
}

std::string make_tmpdir() {
    const char *base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mc_compare.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) die("mkdtemp %s: %s", tmpl.c_str(), std::strerror(errno));
    return buf.data();
}

}  // namespace

void run_db_lookup(std::vector<Row> &rows, const Options &o, double warm, RunInfo *info) {
    const UserIds ids(kDbUsers);
    const std::vector<uint32_t> order = zipf_trace(kDbRequests, static_cast<uint32_t>(kDbUsers));

    // A server that goes away mid-run must fail a call with an error, not kill the process.
    signal(SIGPIPE, SIG_IGN);
    g_tmpdir = make_tmpdir();
    set_die_hook(db_lookup_die_hook);
    const std::string db_path = g_tmpdir + "/users.db";
    progress("db-lookup: %zu users (user0..user%zu) in SQLite %s at %s", kDbUsers, kDbUsers - 1,
             sqlite3_libversion(), db_path.c_str());
    create_database(db_path, ids);
    {
        SqliteReader probe(db_path);
        const std::string plan = probe.plan();
        if (plan.find("USING INDEX") == std::string::npos && plan.find("USING PRIMARY KEY") == std::string::npos)
            die("sqlite: the lookup does not use the index: %s", plan.c_str());
        info->notes.push_back(fmt("SQLite %s; query plan: %s", sqlite3_libversion(), plan.c_str()));
    }

    // The memoized function, warmed with every user: its figures are those of hits.
    MemoBackend backend(db_path);
    mc_cached_options mo;
    mc_cached_options_init(&mo);
    mo.name = "bench.db.get_department_for_user";
    mo.max_entries = kDbMemoCacheSize;
    mc_cached *fn = nullptr;
    check_rc(mc_cached_create(&mo, load_department, &backend, &fn), "mc_cached_create");
    MemoDbSys memo(fn, ids);
    for (size_t i = 0; i < kDbUsers; i++) memo.request(i, false);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    if (st.loads != kDbUsers || st.cache.entries != kDbUsers)
        die("db-lookup: warming left %" PRIu64 " entries after %" PRIu64 " loads, want %zu of each", st.cache.entries,
            st.loads, kDbUsers);
    const uint64_t warm_loads = st.loads;

    // Redis, when there is a server to run.
    RedisServer redis;
    bool have_redis = false;
    const std::string exe = find_program(o.redis_server.empty() ? "redis-server" : o.redis_server);
    if (exe.empty()) {
        info->notes.push_back(fmt("redis-get not run: %s not found (install redis-server or use --redis-server PATH)",
                                  o.redis_server.empty() ? "redis-server" : o.redis_server.c_str()));
    } else {
        std::string err;
        g_redis = &redis;
        if (redis.start(exe, g_tmpdir, &err)) {
            progress("db-lookup: %s %s on 127.0.0.1:%u, filling %zu keys", exe.c_str(),
                     redis_version(redis.port()).c_str(), redis.port(), kDbUsers);
            redis_fill(redis.port(), ids);
            info->notes.push_back(fmt("redis-server %s (hiredis client, one GET per round trip over 127.0.0.1)",
                                      redis_version(redis.port()).c_str()));
            have_redis = true;
        } else {
            info->notes.push_back("redis-get not run: " + err);
        }
    }
    if (!have_redis) progress("db-lookup: %s", info->notes.back().c_str());

    // Enough samples for a stable p99 without holding a fast system's every call in memory.
    const size_t max_samples = o.quick ? size_t{1} << 19 : size_t{1} << 22;
    std::vector<Row> runs;
    for (int t : o.threads) {
        int rep = 0;
        auto record = [&](const char *system, size_t cache_size, auto sys_for) {
            progress_begin("db-lookup %s %d thread%s%s ... ", system, t, t == 1 ? "" : "s",
                           o.repeat > 1 ? fmt(" (run %d/%d)", rep, o.repeat).c_str() : "");
            mc_cache_stats before, after;
            mc_cache_stats_get(mc_cached_cache(fn), &before);
            const WindowRun w = run_window_each(sys_for, order, t, false, warm, o.seconds);
            LatencyRun lat = run_latency_each(sys_for, order, t, o.seconds, max_samples);
            mc_cache_stats_get(mc_cached_cache(fn), &after);
            Row r;
            r.system = system;
            r.workload = "db-lookup";
            r.threads = t;
            r.cache_size = cache_size;
            r.ops_per_sec = static_cast<double>(w.ops) / w.secs;
            r.ns_per_op = static_cast<double>(t) * 1e9 / r.ops_per_sec;
            r.p50_ns = lat.p50_ns;
            r.p99_ns = lat.p99_ns;
            if (r.system == "modcache-memo") {
                mc_cached_stats now;
                mc_cached_stats_get(fn, &now);
                // A load during the runs means some call missed: the figures would not be hits'.
                if (now.loads != warm_loads) die("db-lookup: %" PRIu64 " loads while measuring", now.loads - warm_loads);
                const double hits = static_cast<double>(after.hits - before.hits);
                const double misses = static_cast<double>(after.misses - before.misses);
                r.hit_ratio = hits + misses > 0 ? hits / (hits + misses) : kNull;
            }
            progress_end("%.3f M ops/s, p50 %.0f ns, p99 %.0f ns (%zu samples)", r.ops_per_sec / 1e6, r.p50_ns,
                         r.p99_ns, lat.ns.size());
            runs.push_back(r);
        };
        // One client per thread, connected (and, for SQLite, warmed) before any timing.
        std::vector<std::unique_ptr<SqliteQuerySys>> sqlite_clients;
        for (int i = 0; i < t; i++) sqlite_clients.push_back(std::make_unique<SqliteQuerySys>(db_path, ids));
        std::vector<std::unique_ptr<RedisGetSys>> redis_clients;
        for (int i = 0; have_redis && i < t; i++)
            redis_clients.push_back(std::make_unique<RedisGetSys>(redis.port(), ids));
        for (rep = 1; rep <= o.repeat; rep++) {
            record("modcache-memo", kDbMemoCacheSize, [&](int) -> MemoDbSys & { return memo; });
            record("sqlite-query", kDbUsers,
                   [&](int i) -> SqliteQuerySys & { return *sqlite_clients[static_cast<size_t>(i)]; });
            if (have_redis)
                record("redis-get", kDbUsers,
                       [&](int i) -> RedisGetSys & { return *redis_clients[static_cast<size_t>(i)]; });
        }
    }
    const std::vector<Row> med = median_rows(runs);
    rows.insert(rows.end(), med.begin(), med.end());

    redis.stop();
    g_redis = nullptr;
    mc_cached_destroy(fn);
    std::error_code ec;
    std::filesystem::remove_all(g_tmpdir, ec);
    g_tmpdir.clear();
}

void print_db_table(FILE *f, const std::vector<Row> &rows, const Options &o) {
    std::fprintf(f,
                 "\ndb-lookup: user id -> department, %zu users, Zipf(%.2f) order; modcache-memo is a warm\n"
                 "  memoized function over the SQLite query; p50/p99 are single calls, timed one by one\n",
                 kDbUsers, kZipfExponent);
    std::fprintf(f, "  %-18s %7s %11s %9s %9s %9s %14s\n", "system", "threads", "ops/s", "ns/op", "p50 ns", "p99 ns",
                 "memo x (p50)");
    for (int t : o.threads) {
        const Row *memo = find_row(rows, "modcache-memo", "", "db-lookup", t, kDbMemoCacheSize);
        for (const Row &r : rows) {
            if (r.workload != "db-lookup" || r.threads != t) continue;
            std::string x = "-";
            if (memo && &r != memo && memo->p50_ns > 0) x = fmt("%.1fx", r.p50_ns / memo->p50_ns);
            std::fprintf(f, "  %-18s %7d %11.0f %9.1f %9.0f %9.0f %14s\n", label(r).c_str(), t, r.ops_per_sec,
                         r.ns_per_op, r.p50_ns, r.p99_ns, x.c_str());
        }
    }
}

}  // namespace mcbench
