/* Tests of the example modules in a host served over loopback: example_dept against SQLite and
 * against a PostgreSQL server started here (when installed), and example_guard's request check. */
#include <glob.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <sqlite3.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "modcache.h"
#include "proc.h"

#define FN "example_dept.get_department_for_user"
#define USERS "/_modcache/client/dept/v1/users/"
#define SEED 300

/* The module's fixed list: seeded departments must all come from it. */
static const char *const departments[] = {"Engineering", "Sales", "Marketing", "Finance",
                                          "Support", "Research", "Legal", "Operations"};

/* ------------------------------------------------------------------ a host under test */

typedef struct th {
    mc_host *host;
    mc_config *doc;
    unsigned port;
    pthread_mutex_t mu; /* the host logs from server threads (a loader's warning) */
    char log[32768];
} th;

static void th_log(void *ud, mc_log_level level, const char *module, const char *message)
{
    (void)level;
    th *t = ud;
    pthread_mutex_lock(&t->mu);
    size_t used = strlen(t->log);
    snprintf(t->log + used, sizeof t->log - used, "[%s] %s\n", module ? module : "host", message);
    pthread_mutex_unlock(&t->mu);
}

static bool th_logged(th *t, const char *needle)
{
    pthread_mutex_lock(&t->mu);
    bool found = strstr(t->log, needle) != NULL;
    pthread_mutex_unlock(&t->mu);
    return found;
}

/* Load the modules of a YAML text and serve them on a free port. 0, or the load error (err). */
static int th_start(th *t, const char *yaml, mc_error *err)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    mc_host_options o;
    mc_host_options_init(&o);
    o.log = th_log;
    o.log_ud = t;
    int rc = mc_host_create(&o, &t->host);
    if (rc == 0)
        rc = mc_config_load_string(yaml, strlen(yaml), "dept-test.yaml", &t->doc, err);
    if (rc == 0)
        rc = mc_host_load_modules(t->host, mc_config_get(mc_config_root(t->doc), "modules"), err);
    if (rc == 0)
        rc = mc_host_http_start(t->host, "127.0.0.1:0", 0, "test-token", err);
    if (rc == 0)
        t->port = mc_host_http_port(t->host);
    return rc;
}

static void th_stop(th *t)
{
    mc_host_destroy(t->host);
    mc_config_free(t->doc);
    pthread_mutex_destroy(&t->mu);
    t->host = NULL;
    t->doc = NULL;
}

static mc_cached_stats th_stats(th *t)
{
    mc_cached *fn = mc_registry_find(mc_host_registry(t->host), FN);
    assert_non_null(fn);
    mc_cached_stats st;
    mc_cached_stats_get(fn, &st);
    return st;
}

/* ------------------------------------------------------------------ HTTP with libcurl */

typedef struct reply {
    long status;
    char body[8192];
    size_t blen;
    char headers[4096];
    size_t hlen;
} reply;

static size_t append(char *dst, size_t cap, size_t *len, const char *data, size_t n)
{
    size_t room = cap - 1 - *len, k = n < room ? n : room;
    memcpy(dst + *len, data, k);
    *len += k;
    dst[*len] = 0;
    return n;
}

static size_t on_body(char *d, size_t s, size_t n, void *ud)
{
    reply *r = ud;
    return append(r->body, sizeof r->body, &r->blen, d, s * n);
}

static size_t on_header(char *d, size_t s, size_t n, void *ud)
{
    reply *r = ud;
    return append(r->headers, sizeof r->headers, &r->hlen, d, s * n);
}

/* One request on a handle (kept alive between calls). Returns the status, 0 if no answer. */
static long http_on(CURL *c, unsigned port, const char *method, const char *path, const char *body, reply *r)
{
    char url[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    r->status = 0;
    r->blen = r->hlen = 0;
    r->body[0] = r->headers[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    return r->status;
}

static CURL *client(struct curl_slist **hdrs)
{
    CURL *c = curl_easy_init();
    /* Bodies go at once, without a 100-continue round trip. */
    *hdrs = curl_slist_append(NULL, "Expect:");
    if (c)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    return c;
}

static long http(th *t, const char *method, const char *path, const char *body, reply *r)
{
    struct curl_slist *h;
    CURL *c = client(&h);
    assert_non_null(c);
    long st = http_on(c, t->port, method, path, body, r);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (st == 0)
        fail_msg("%s %s: no answer", method, path);
    return st;
}

/* ------------------------------------------------------------------ the database, directly */

typedef struct fixture {
    const char *name;
    bool pg;
    bool available; /* false: the backend is not installed; the group's tests skip */
    char dir[64];
    char dbconf[512]; /* the module's config line naming the database */
    th host;          /* the host most tests use */
    sqlite3 *lite;
#ifdef HAVE_LIBPQ
    PGconn *pq;
    mct_proc pgproc;
    char pgbin[256];
    unsigned pgport;
#endif
} fixture;

static void db_exec(fixture *f, const char *sql)
{
#ifdef HAVE_LIBPQ
    if (f->pg) {
        PGresult *r = PQexec(f->pq, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return;
    }
#endif
    char *msg = NULL;
    if (sqlite3_exec(f->lite, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static bool sqlite_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int rc = sqlite3_step(s);
    bool row = rc == SQLITE_ROW;
    if (row)
        snprintf(out, cap, "%s", sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
    else if (rc != SQLITE_DONE)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return row;
}

/* The first column of the first row as text; false when there is no row. */
static bool db_text(fixture *f, const char *sql, char *out, size_t cap)
{
#ifdef HAVE_LIBPQ
    if (f->pg) {
        PGresult *r = PQexec(f->pq, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        bool row = PQntuples(r) > 0;
        if (row)
            snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return row;
    }
#endif
    return sqlite_text(f->lite, sql, out, cap);
}

static long db_count(fixture *f, const char *sql)
{
    char buf[64];
    assert_true(db_text(f, sql, buf, sizeof buf));
    return strtol(buf, NULL, 10);
}

static void db_department(fixture *f, const char *user, char *out, size_t cap)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT department FROM users WHERE user_id = '%s'", user);
    if (!db_text(f, sql, out, cap))
        fail_msg("no row for %s", user);
}

/* YAML for one dept module (plus optional modules before it) on the fixture's database. */
static void dept_yaml(fixture *f, char *out, size_t cap, const char *before, const char *extra)
{
    snprintf(out, cap,
             "modules:\n%s"
             "  - module: %s\n"
             "    config:\n"
             "      %s\n"
             "      seed_users: %d\n"
             "      max_entries: 1000\n"
             "      pool_size: 4\n%s",
             before ? before : "", DEPT_MODULE, f->dbconf, SEED, extra ? extra : "");
}

static void rm_rf(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ------------------------------------------------------------------ group setups */

static fixture sqlite_fx = {.name = "sqlite"};
static fixture pg_fx = {.name = "postgres", .pg = true};

static int start_main_host(fixture *f)
{
    char yaml[2048];
    dept_yaml(f, yaml, sizeof yaml, NULL, NULL);
    mc_error err = {0};
    if (th_start(&f->host, yaml, &err) != 0) {
        fprintf(stderr, "cannot start the host: %s\n%s", err.message, f->host.log);
        return -1;
    }
    return 0;
}

static int sqlite_setup(void **state)
{
    fixture *f = &sqlite_fx;
    *state = f;
    snprintf(f->dir, sizeof f->dir, "/tmp/test-dept-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->dbconf, sizeof f->dbconf, "database: %.60s/dept.db", f->dir);
    if (start_main_host(f) != 0)
        return -1;
    char path[128];
    snprintf(path, sizeof path, "%.60s/dept.db", f->dir);
    if (sqlite3_open_v2(path, &f->lite, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(f->lite, 10000);
    f->available = true;
    return 0;
}

static int sqlite_teardown(void **state)
{
    fixture *f = *state;
    th_stop(&f->host);
    sqlite3_close(f->lite);
    rm_rf(f->dir);
    return 0;
}

#ifdef HAVE_LIBPQ
/* The newest /usr/lib/postgresql/<version>/bin with an initdb, into f->pgbin. */
static bool pg_find(fixture *f)
{
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return false;
    const char *best = NULL;
    long best_v = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best_v)
            best_v = v, best = g.gl_pathv[i];
    }
    if (best)
        snprintf(f->pgbin, sizeof f->pgbin, "%.*s", (int)(strlen(best) - strlen("/initdb")), best);
    globfree(&g);
    return best != NULL;
}

/* argv for a PostgreSQL program: through runuser as the postgres user when we are root (initdb
 * and postgres refuse to run as root). */
static void pg_argv(const char **argv, const char *const *args)
{
    size_t n = 0;
    if (geteuid() == 0) {
        argv[n++] = "/usr/sbin/runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    for (size_t i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

static int pg_start(fixture *f)
{
    char initdb[300], postgres[300], data[128], port[16];
    snprintf(initdb, sizeof initdb, "%s/initdb", f->pgbin);
    snprintf(postgres, sizeof postgres, "%s/postgres", f->pgbin);
    snprintf(data, sizeof data, "%s/data", f->dir);
    const char *argv[32];
    static char out[16384];
    pg_argv(argv, (const char *const[]){initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                        "--locale=C", "--no-sync", NULL});
    int rc = mct_run(argv, NULL, out, sizeof out);
    if (rc != 0) {
        fprintf(stderr, "initdb failed (%d):\n%s\n", rc, out);
        return -1;
    }
    /* The port is free when picked; another program could take it before postgres binds, so
     * try a few. The server's socket file goes to our temporary directory, not /run. */
    for (int attempt = 0; attempt < 3; attempt++) {
        f->pgport = mct_free_port();
        snprintf(port, sizeof port, "%u", f->pgport);
        pg_argv(argv, (const char *const[]){postgres, "-D", data, "-p", port, "-k", f->dir, "-c",
                                            "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                                            "synchronous_commit=off", "-c", "full_page_writes=off", NULL});
        if (mct_spawn(&f->pgproc, argv, NULL) != 0)
            return -1;
        if (mct_wait_for(&f->pgproc, 0, "database system is ready to accept connections", 60000))
            return 0;
        fprintf(stderr, "postgres did not start:\n%s\n", f->pgproc.log);
        mct_finish(&f->pgproc, SIGKILL);
        free(f->pgproc.log);
        f->pgproc.log = NULL;
    }
    return -1;
}

static void pg_stop(fixture *f)
{
    if (f->pgproc.pid <= 0)
        return;
    /* pg_ctl's fast shutdown, so that runuser (when in between) has nothing to forward. */
    char pg_ctl[300], data[128];
    snprintf(pg_ctl, sizeof pg_ctl, "%s/pg_ctl", f->pgbin);
    snprintf(data, sizeof data, "%s/data", f->dir);
    const char *argv[32];
    char out[4096];
    pg_argv(argv, (const char *const[]){pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "60", "stop", NULL});
    int rc = mct_run(argv, NULL, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "pg_ctl stop failed (%d): %s\n", rc, out);
    mct_finish(&f->pgproc, rc == 0 ? 0 : SIGKILL);
    free(f->pgproc.log);
    f->pgproc.log = NULL;
}
#endif

static int pg_setup(void **state)
{
    fixture *f = &pg_fx;
    *state = f;
#ifndef HAVE_LIBPQ
    print_message("libpq was not found at build time: PostgreSQL tests skipped\n");
    return 0;
#else
    if (!pg_find(f)) {
        print_message("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                      "PostgreSQL tests skipped (`make test` installs it)\n");
        return 0;
    }
    struct passwd *pw = NULL;
    if (geteuid() == 0 && !(pw = getpwnam("postgres"))) {
        print_message("running as root and there is no postgres user to run PostgreSQL as: "
                      "PostgreSQL tests skipped\n");
        return 0;
    }
    snprintf(f->dir, sizeof f->dir, "/tmp/test-dept-pg-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    if (pw && chown(f->dir, pw->pw_uid, pw->pw_gid) != 0)
        return -1;
    if (pg_start(f) != 0)
        return -1;
    snprintf(f->dbconf, sizeof f->dbconf,
             "postgres: \"host=127.0.0.1 port=%u user=postgres dbname=postgres connect_timeout=10\"", f->pgport);
    char conninfo[256];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%u user=postgres dbname=postgres", f->pgport);
    if (start_main_host(f) != 0)
        return -1;
    f->pq = PQconnectdb(conninfo);
    if (PQstatus(f->pq) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s\n", PQerrorMessage(f->pq));
        return -1;
    }
    print_message("PostgreSQL %s on 127.0.0.1:%u\n", f->pgbin, f->pgport);
    f->available = true;
    return 0;
#endif
}

static int pg_teardown(void **state)
{
    fixture *f = *state;
#ifdef HAVE_LIBPQ
    if (f->host.host)
        th_stop(&f->host);
    if (f->pq)
        PQfinish(f->pq);
    pg_stop(f);
    if (f->dir[0])
        rm_rf(f->dir);
#else
    (void)f;
#endif
    return 0;
}

#define NEED(f)                                                                                    \
    do {                                                                                           \
        if (!(f)->available)                                                                       \
            skip();                                                                                \
    } while (0)

/* ------------------------------------------------------------------ the checks, per backend */

/* The table's rows in one string, ordered by user id, for comparing two databases. */
static void rows_of(fixture *f, char *out, size_t cap)
{
    if (f->pg)
        assert_true(db_text(f, "SELECT string_agg(user_id || '=' || department, ',' ORDER BY user_id) FROM users",
                            out, cap));
    else
        assert_true(db_text(f, "SELECT group_concat(user_id || '=' || department, ',') FROM "
                               "(SELECT user_id, department FROM users ORDER BY user_id)", out, cap));
}

static void test_seeding(void **state)
{
    fixture *f = *state;
    NEED(f);
    assert_int_equal(db_count(f, "SELECT count(*) FROM users"), SEED);
    char d[64];
    db_department(f, "user0", d, sizeof d);
    db_department(f, "user299", d, sizeof d);
    assert_false(db_text(f, "SELECT department FROM users WHERE user_id = 'user300'", d, sizeof d));
    /* Departments come from the fixed list, and more than one of them is used. */
    char sql[512] = "SELECT count(*) FROM users WHERE department NOT IN (";
    for (size_t i = 0; i < sizeof departments / sizeof departments[0]; i++)
        snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "%s'%s'", i ? ", " : "", departments[i]);
    strcat(sql, ")");
    assert_int_equal(db_count(f, sql), 0);
    assert_true(db_count(f, "SELECT count(DISTINCT department) FROM users") >= 4);

    /* Deterministic: an independent SQLite seed holds exactly the same rows. */
    char yaml[2048], ref[128];
    snprintf(ref, sizeof ref, "%s/reference.db", f->dir);
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: %s, seed_users: %d}\n",
             DEPT_MODULE, ref, SEED);
    th tmp;
    mc_error err = {0};
    if (th_start(&tmp, yaml, &err) != 0)
        fail_msg("%s", err.message);
    th_stop(&tmp);
    static char mine[65536], theirs[65536];
    rows_of(f, mine, sizeof mine);
    sqlite3 *rdb;
    assert_int_equal(sqlite3_open_v2(ref, &rdb, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_true(sqlite_text(rdb, "SELECT group_concat(user_id || '=' || department, ',') FROM "
                                 "(SELECT user_id, department FROM users ORDER BY user_id)", theirs, sizeof theirs));
    sqlite3_close(rdb);
    assert_true(strlen(mine) > SEED * 10);
    assert_string_equal(mine, theirs);

    /* An existing database (SQLite: the file; PostgreSQL: a non-empty table) is not re-seeded. */
    char extra[64];
    snprintf(extra, sizeof extra, "      simulated_latency: 0ms\n");
    dept_yaml(f, yaml, sizeof yaml, NULL, extra);
    char *seed = strstr(yaml, "seed_users: 300");
    assert_non_null(seed);
    memcpy(seed, "seed_users: 500", 15);
    if (th_start(&tmp, yaml, &err) != 0)
        fail_msg("%s", err.message);
    th_stop(&tmp);
    assert_int_equal(db_count(f, "SELECT count(*) FROM users"), SEED);
}

static void test_get_and_hit(void **state)
{
    fixture *f = *state;
    NEED(f);
    reply r;
    char dept[64], want[256];
    db_department(f, "user3", dept, sizeof dept);
    snprintf(want, sizeof want, "{\"user_id\": \"user3\", \"department\": \"%s\"}", dept);
    mc_cached_stats s0 = th_stats(&f->host);
    assert_int_equal(http(&f->host, "GET", USERS "user3", NULL, &r), 200);
    assert_string_equal(r.body, want);
    assert_non_null(strstr(r.headers, "Content-Type: application/json"));
    mc_cached_stats s1 = th_stats(&f->host);
    assert_int_equal(s1.loads, s0.loads + 1);
    assert_int_equal(s1.cache.misses, s0.cache.misses + 1);
    /* The second GET is a hit: no query. */
    assert_int_equal(http(&f->host, "GET", USERS "user3", NULL, &r), 200);
    assert_string_equal(r.body, want);
    mc_cached_stats s2 = th_stats(&f->host);
    assert_int_equal(s2.loads, s1.loads);
    assert_int_equal(s2.cache.hits, s1.cache.hits + 1);
}

static void test_put_then_get(void **state)
{
    fixture *f = *state;
    NEED(f);
    reply r;
    assert_int_equal(http(&f->host, "GET", USERS "user4", NULL, &r), 200); /* now cached */
    mc_cached_stats s0 = th_stats(&f->host);
    /* Quote, backslash and a non-ASCII character: stored as text, answered JSON-escaped. */
    assert_int_equal(http(&f->host, "PUT", USERS "user4", "{\"department\": \"R&D \\\"labs\\\" \\\\ caf\\u00e9\"}", &r),
                     200);
    assert_string_equal(r.body, "{\"user_id\": \"user4\", \"department\": \"R&D \\\"labs\\\" \\\\ caf\xc3\xa9\"}");
    char dept[64];
    db_department(f, "user4", dept, sizeof dept);
    assert_string_equal(dept, "R&D \"labs\" \\ caf\xc3\xa9");
    assert_int_equal(http(&f->host, "GET", USERS "user4", NULL, &r), 200);
    assert_string_equal(r.body, "{\"user_id\": \"user4\", \"department\": \"R&D \\\"labs\\\" \\\\ caf\xc3\xa9\"}");
    mc_cached_stats s1 = th_stats(&f->host);
    assert_int_equal(s1.loads, s0.loads + 1); /* the PUT invalidated the entry: one reload */
    assert_true(s1.invalidations > s0.invalidations);
    /* And the reloaded value is cached again. */
    assert_int_equal(http(&f->host, "GET", USERS "user4", NULL, &r), 200);
    assert_int_equal(th_stats(&f->host).loads, s1.loads);
}

static void test_not_found(void **state)
{
    fixture *f = *state;
    NEED(f);
    reply r;
    mc_cached_stats s0 = th_stats(&f->host);
    assert_int_equal(http(&f->host, "GET", USERS "nobody", NULL, &r), 404);
    assert_string_equal(r.body, "{\"error\": \"no such user\"}");
    /* "No value" is cached: the second GET does not query. */
    assert_int_equal(http(&f->host, "GET", USERS "nobody", NULL, &r), 404);
    mc_cached_stats s1 = th_stats(&f->host);
    assert_int_equal(s1.loads, s0.loads + 1);
    assert_int_equal(s1.cache.hits, s0.cache.hits + 1);
    assert_int_equal(http(&f->host, "PUT", USERS "nobody", "{\"department\": \"Sales\"}", &r), 404);
    char d[64];
    assert_false(db_text(f, "SELECT department FROM users WHERE user_id = 'nobody'", d, sizeof d));

    /* A row added behind the module's back stays unseen until the key is invalidated. */
    db_exec(f, "INSERT INTO users(user_id, department) VALUES ('nobody', 'Legal')");
    assert_int_equal(http(&f->host, "GET", USERS "nobody", NULL, &r), 404);
    const char *key = "[\"nobody\"]";
    mc_error err = {0};
    assert_int_equal(mc_registry_invalidate(mc_host_registry(f->host.host), FN, &key, 1, &err), 0);
    assert_int_equal(http(&f->host, "GET", USERS "nobody", NULL, &r), 200);
    assert_string_equal(r.body, "{\"user_id\": \"nobody\", \"department\": \"Legal\"}");
    db_exec(f, "DELETE FROM users WHERE user_id = 'nobody'");
    assert_int_equal(mc_registry_invalidate(mc_host_registry(f->host.host), FN, &key, 1, &err), 0);

    /* Paths other than users/<id> under the module's tree. */
    assert_int_equal(http(&f->host, "GET", "/_modcache/client/dept/v1", NULL, &r), 404);
    assert_int_equal(http(&f->host, "GET", "/_modcache/client/dept/v1/teams/x", NULL, &r), 404);
    assert_int_equal(http(&f->host, "GET", USERS "user1/extra", NULL, &r), 404);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    NEED(f);
    reply r;
    char before[64], after[64];
    db_department(f, "user5", before, sizeof before);
    mc_cached_stats s0 = th_stats(&f->host);
    char long_body[400];
    snprintf(long_body, sizeof long_body, "{\"department\": \"%0300d\"}", 7);
    const char *bodies[] = {"", "{}", "not json", "{\"department\": 5}", "{\"department\": \"\"}",
                            "{\"dept\": \"Sales\"}", "{\"department\": \"Sales\", \"x\": 1}",
                            "{\"department\": \"Sales\"} tail", "{\"department\": \"Sa\\u0000les\"}",
                            "{\"department\": \"\\ud800\"}", "[\"Sales\"]", long_body};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        if (http(&f->host, "PUT", USERS "user5", bodies[i], &r) != 400)
            fail_msg("body %zu (%s): status %ld", i, bodies[i], r.status);
        assert_non_null(strstr(r.body, "{\"error\": \""));
    }
    db_department(f, "user5", after, sizeof after);
    assert_string_equal(before, after);
    /* A user id that is not UTF-8 (%FF decodes to the byte 0xff). */
    assert_int_equal(http(&f->host, "GET", USERS "bad%FFid", NULL, &r), 400);
    const char *methods[] = {"DELETE", "POST", "PATCH"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(http(&f->host, methods[i], USERS "user5", NULL, &r), 405);
        assert_non_null(strstr(r.headers, "Allow: GET, PUT"));
    }
    mc_cached_stats s1 = th_stats(&f->host);
    assert_int_equal(s1.loads, s0.loads);
    assert_int_equal(s1.cache.misses, s0.cache.misses);
}

static void test_database_error(void **state)
{
    fixture *f = *state;
    NEED(f);
    reply r;
    char dept[64], want[256];
    db_department(f, "user7", dept, sizeof dept);
    mc_cached_stats s0 = th_stats(&f->host);
    db_exec(f, "ALTER TABLE users RENAME TO users_away");
    assert_int_equal(http(&f->host, "GET", USERS "user7", NULL, &r), 503);
    assert_string_equal(r.body, "{\"error\": \"the database is unavailable\"}");
    assert_int_equal(http(&f->host, "PUT", USERS "user7", "{\"department\": \"Sales\"}", &r), 503);
    mc_cached_stats s1 = th_stats(&f->host);
    assert_int_equal(s1.load_errors, s0.load_errors + 1);
    assert_int_equal(s1.cache.entries, s0.cache.entries); /* the error was not cached */
    assert_true(th_logged(&f->host, "lookup of user7 failed"));
    db_exec(f, "ALTER TABLE users_away RENAME TO users");
    /* Back: the next GET queries again and succeeds. */
    assert_int_equal(http(&f->host, "GET", USERS "user7", NULL, &r), 200);
    snprintf(want, sizeof want, "{\"user_id\": \"user7\", \"department\": \"%s\"}", dept);
    assert_string_equal(r.body, want);
    assert_int_equal(th_stats(&f->host).loads, s1.loads + 1);
}

/* ---- several clients at once: GETs and PUTs over a few hot users */

#define HOT_FIRST 10
#define HOT_N 20
#define THREADS 6
#define OPS 150

typedef struct worker {
    fixture *f;
    int id;
    unsigned puts;
    unsigned bad; /* answers that were wrong; asserted by the main thread */
    char why[256];
} worker;

static bool plausible_department(const char *body)
{
    const char *d = strstr(body, "\"department\": \"");
    if (!d)
        return false;
    d += strlen("\"department\": \"");
    for (size_t i = 0; i < sizeof departments / sizeof departments[0]; i++) {
        size_t n = strlen(departments[i]);
        if (!strncmp(d, departments[i], n) && d[n] == '"')
            return true;
    }
    int t, k;
    return sscanf(d, "T%d-%d\"", &t, &k) == 2;
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    struct curl_slist *h;
    CURL *c = client(&h);
    unsigned seed = (unsigned)w->id * 7919u + 1;
    reply *r = malloc(sizeof *r);
    for (int i = 0; c && r && i < OPS; i++) {
        char path[128], body[64];
        int user = HOT_FIRST + (int)(rand_r(&seed) % HOT_N);
        snprintf(path, sizeof path, USERS "user%d", user);
        bool put = rand_r(&seed) % 10 == 0;
        long st;
        if (put) {
            snprintf(body, sizeof body, "{\"department\": \"T%d-%d\"}", w->id, i);
            st = http_on(c, w->f->host.port, "PUT", path, body, r);
            w->puts++;
        } else {
            st = http_on(c, w->f->host.port, "GET", path, NULL, r);
        }
        if (st != 200 || !plausible_department(r->body)) {
            if (!w->bad++)
                snprintf(w->why, sizeof w->why, "%s %s: %ld %.120s", put ? "PUT" : "GET", path, st, r->body);
        }
    }
    if (!c || !r)
        w->bad++;
    free(r);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    fixture *f = *state;
    NEED(f);
    mc_cached_stats s0 = th_stats(&f->host);
    worker ws[THREADS];
    pthread_t th_ids[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ws[i] = (worker){.f = f, .id = i};
        assert_int_equal(pthread_create(&th_ids[i], NULL, worker_run, &ws[i]), 0);
    }
    unsigned puts = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th_ids[i], NULL);
        if (ws[i].bad)
            fail_msg("client %d: %u wrong answers, first: %s", i, ws[i].bad, ws[i].why);
        puts += ws[i].puts;
    }
    mc_cached_stats s1 = th_stats(&f->host);
    /* A load happens only for a key with no entry, which each user lacks once at first and
     * again after each invalidation (a PUT): nothing else may query. */
    assert_true(s1.loads - s0.loads <= HOT_N + puts);
    assert_true(s1.cache.hits > s0.cache.hits);
    /* No stale entry survived the concurrent writes: every answer now is the database's. */
    reply r;
    for (int u = HOT_FIRST; u < HOT_FIRST + HOT_N; u++) {
        char user[32], path[64], dept[64], want[256];
        snprintf(user, sizeof user, "user%d", u);
        snprintf(path, sizeof path, USERS "%s", user);
        db_department(f, user, dept, sizeof dept);
        snprintf(want, sizeof want, "{\"user_id\": \"%s\", \"department\": \"%s\"}", user, dept);
        assert_int_equal(http(&f->host, "GET", path, NULL, &r), 200);
        assert_string_equal(r.body, want);
    }
}

/* ---- the guard in front of the module: refusals happen before the resource runs */

static void test_guard(void **state)
{
    fixture *f = *state;
    NEED(f);
    char before[512], yaml[4096];
    /* 0.01 requests per second: after the burst of 3, no credit comes back during the test. */
    snprintf(before, sizeof before,
             "  - module: %s\n"
             "    config: {deny_users: [user8, \"someone else\"], requests_per_second: 0.01, burst: 3}\n",
             GUARD_MODULE);
    dept_yaml(f, yaml, sizeof yaml, before, NULL);
    th g;
    mc_error err = {0};
    if (th_start(&g, yaml, &err) != 0)
        fail_msg("%s\n%s", err.message, g.log);
    reply r;
    assert_int_equal(http(&g, "GET", USERS "user8", NULL, &r), 403);
    assert_string_equal(r.body, "{\"error\": \"this user is denied\"}");
    assert_int_equal(http(&g, "PUT", USERS "user8", "{\"department\": \"Sales\"}", &r), 403);
    mc_cached_stats s = th_stats(&g);
    assert_int_equal(s.loads, 0);
    assert_int_equal(s.cache.hits + s.cache.misses, 0);

    /* The burst: three requests pass (one load, two hits)... */
    for (int i = 0; i < 3; i++)
        assert_int_equal(http(&g, "GET", USERS "user1", NULL, &r), 200);
    s = th_stats(&g);
    assert_int_equal(s.loads, 1);
    assert_int_equal(s.cache.hits, 2);
    /* ...the fourth is limited before the resource runs, with a Retry-After. */
    char d_before[64], d_after[64];
    db_department(f, "user1", d_before, sizeof d_before);
    assert_int_equal(http(&g, "GET", USERS "user2", NULL, &r), 429);
    const char *ra = strstr(r.headers, "Retry-After: ");
    assert_non_null(ra);
    assert_true(strtol(ra + strlen("Retry-After: "), NULL, 10) >= 1);
    assert_non_null(strstr(r.body, "\"error\": \"rate limited\""));
    assert_int_equal(http(&g, "PUT", USERS "user1", "{\"department\": \"Sales-limited\"}", &r), 429);
    db_department(f, "user1", d_after, sizeof d_after);
    assert_string_equal(d_before, d_after);
    /* Denied users are refused as denied (the deny list comes first and costs no credit). */
    assert_int_equal(http(&g, "GET", USERS "user8", NULL, &r), 403);
    mc_cached_stats s2 = th_stats(&g);
    assert_int_equal(s2.loads, s.loads);
    assert_int_equal(s2.cache.hits, s.cache.hits);
    assert_int_equal(s2.cache.misses, s.cache.misses);
    /* /metrics is not subject to request checks. */
    assert_int_equal(http(&g, "GET", "/metrics", NULL, &r), 200);
    th_stop(&g);
    /* The guard's count at shutdown (the host and its threads are gone: no lock needed). */
    if (!strstr(g.log, "[example_guard] refused 3 denied and 2 rate-limited request(s)"))
        fail_msg("guard's shutdown line missing:\n%s", g.log);
}

/* ---- configuration errors name their path */

static void expect_load_error(const char *yaml, const char *needle)
{
    th t;
    mc_error err = {0};
    int rc = th_start(&t, yaml, &err);
    th_stop(&t);
    if (rc == 0)
        fail_msg("loaded, expected an error containing '%s'", needle);
    if (!strstr(err.message, needle))
        fail_msg("error '%s' lacks '%s'", err.message, needle);
}

static void test_config_errors(void **state)
{
    fixture *f = *state;
    NEED(f);
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: %s/x.db, seed_users: many}\n",
             DEPT_MODULE, f->dir);
    expect_load_error(yaml, "modules[0].config.seed_users: expected an integer");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: %s/x.db, colour: red}\n",
             DEPT_MODULE, f->dir);
    expect_load_error(yaml, "modules[0].config.colour: unknown key");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: a.db, postgres: \"host=x\"}\n",
             DEPT_MODULE);
    expect_load_error(yaml, "modules[0].config.postgres: give either `database` or `postgres`");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n", DEPT_MODULE);
    expect_load_error(yaml, "missing `database` (an SQLite file) or `postgres`");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: [dept.db]\n", DEPT_MODULE);
    expect_load_error(yaml, "modules[0].config: expected a map with `database`");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: %s/x.db, pool_size: 0}\n",
             DEPT_MODULE, f->dir);
    expect_load_error(yaml, "modules[0].config.pool_size: expected an integer from 1 to 256");
    /* A missing file without seed_users is refused rather than created empty. */
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {database: %s/missing.db}\n",
             DEPT_MODULE, f->dir);
    expect_load_error(yaml, "missing.db: no such database file (set seed_users to create one)");
    char path[128];
    snprintf(path, sizeof path, "%s/missing.db", f->dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {burst: 5}\n", GUARD_MODULE);
    expect_load_error(yaml, "modules[0].config.burst: burst needs requests_per_second");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {deny_users: user1}\n", GUARD_MODULE);
    expect_load_error(yaml, "modules[0].config.deny_users: expected a list of user ids");
    snprintf(yaml, sizeof yaml, "modules:\n  - module: %s\n    config: {requests_per_second: 0}\n", GUARD_MODULE);
    expect_load_error(yaml, "modules[0].config.requests_per_second: expected a number from 0.001");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    /* test_seeding first: later tests change rows. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seeding),
        cmocka_unit_test(test_get_and_hit),
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_database_error),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_guard),
    };
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_seeding),
        cmocka_unit_test(test_get_and_hit),
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_database_error),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_config_errors), /* backend-independent: here only */
    };
    int failed = cmocka_run_group_tests_name("example_dept on SQLite", sqlite_tests, sqlite_setup, sqlite_teardown);
    failed += cmocka_run_group_tests_name("example_dept on PostgreSQL", tests, pg_setup, pg_teardown);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
