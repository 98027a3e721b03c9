/* examples/dept/dept_sqlite.c: the SQLite backend: creates and seeds a missing file atomically,
 * then one connection per pool slot with its two statements prepared once and reused. */
#include "dept_backend.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *get;
    sqlite3_stmt *set;
} dept_sqlite_conn;

static const char dept_schema[] =
    "CREATE TABLE users(user_id TEXT PRIMARY KEY, department TEXT NOT NULL)";

/* Build the database under a temporary name and link it into place, so that nobody ever
 * opens a half-seeded file (and a failed seed leaves nothing behind). */
static int dept_sqlite_seed(const char *path, int64_t n, mc_error *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.seed-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return dept_fail(err, MC_EINVAL, "%s: path too long", path);
    unlink(tmp);
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    /* One transaction and no syncing until the end: seeding 100,000 rows takes a fraction of a
     * second instead of minutes. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, dept_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO users(user_id, department) VALUES (?1, ?2)", -1, &ins, NULL);
    for (int64_t i = 0; rc == SQLITE_OK && i < n; i++) {
        char id[32];
        int len = snprintf(id, sizeof id, "user%lld", (long long)i);
        sqlite3_bind_text(ins, 1, id, len, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, dept_seed_department((uint64_t)i), -1, SQLITE_STATIC);
        rc = sqlite3_step(ins);
        rc = rc == SQLITE_DONE ? sqlite3_reset(ins) : rc;
    }
    sqlite3_finalize(ins);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    int out = 0;
    if (rc != SQLITE_OK)
        out = dept_fail(err, MC_EIO, "%s: cannot create the database: %s", path,
                        db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if (sqlite3_close(db) != SQLITE_OK && out == 0)
        out = dept_fail(err, MC_EIO, "%s: cannot close the new database", path);
    /* link, not rename: if another process created the file meanwhile, keep theirs (same
     * content) rather than replace a file they may already have open. */
    if (out == 0 && link(tmp, path) != 0 && errno != EEXIST)
        out = dept_fail(err, MC_EIO, "%s: cannot move the new database into place: %s", path, strerror(errno));
    unlink(tmp);
    return out;
}

static int dept_sqlite_setup(const dept_db_options *o, mc_error *err)
{
    if (access(o->sqlite_path, F_OK) == 0)
        return 0; /* an existing database is used as it is, never re-seeded */
    if (errno != ENOENT)
        return dept_fail(err, MC_EIO, "%s: %s", o->sqlite_path, strerror(errno));
    if (o->seed_users < 0)
        return dept_fail(err, MC_EIO, "%s: no such database file (set seed_users to create one)", o->sqlite_path);
    return dept_sqlite_seed(o->sqlite_path, o->seed_users, err);
}

static void dept_sqlite_disconnect(void *c)
{
    dept_sqlite_conn *s = c;
    if (!s)
        return;
    sqlite3_finalize(s->get);
    sqlite3_finalize(s->set);
    sqlite3_close(s->db);
    free(s);
}

static void *dept_sqlite_connect(const dept_db_options *o, mc_error *err)
{
    dept_sqlite_conn *s = calloc(1, sizeof *s);
    if (!s) {
        dept_fail(err, MC_ENOMEM, "out of memory");
        return NULL;
    }
    /* NOMUTEX: the pool hands a connection to one thread at a time, so SQLite's own
     * per-connection mutex would only cost time. No CREATE: setup made the file. */
    int rc = sqlite3_open_v2(o->sqlite_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* A writer (a PUT) waits for readers instead of failing at once; WAL lets readers and
     * the writer proceed together, across processes too. */
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(s->db, 5000);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(s->db, "SELECT department FROM users WHERE user_id = ?1", -1,
                                SQLITE_PREPARE_PERSISTENT, &s->get, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(s->db, "UPDATE users SET department = ?2 WHERE user_id = ?1", -1,
                                SQLITE_PREPARE_PERSISTENT, &s->set, NULL);
    if (rc != SQLITE_OK) {
        dept_fail(err, MC_EIO, "%s: %s", o->sqlite_path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        dept_sqlite_disconnect(s);
        return NULL;
    }
    return s;
}

static int dept_sqlite_get(void *c, const char *user, size_t user_len, char *out, size_t cap, size_t *len,
                           mc_error *err)
{
    dept_sqlite_conn *s = c;
    sqlite3_bind_text(s->get, 1, user, (int)user_len, SQLITE_STATIC);
    int step = sqlite3_step(s->get), rc = 0;
    if (step == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(s->get, 0);
        size_t n = (size_t)sqlite3_column_bytes(s->get, 0);
        if (!v) {
            rc = dept_fail(err, MC_EIO, "department of %s is NULL", user);
        } else if (n >= cap) {
            rc = dept_fail(err, MC_E2BIG, "department of %s is %zu bytes long", user, n);
        } else {
            memcpy(out, v, n);
            out[n] = 0;
            *len = n;
        }
    } else if (step == SQLITE_DONE) {
        rc = MC_ENOENT;
    } else {
        rc = dept_fail(err, MC_EIO, "select: %s", sqlite3_errmsg(s->db));
    }
    /* Ready for the next use, and no pointer into the caller's buffer is kept. */
    sqlite3_reset(s->get);
    sqlite3_clear_bindings(s->get);
    return rc;
}

static int dept_sqlite_set(void *c, const char *user, size_t user_len, const char *dept, size_t dept_len,
                           mc_error *err)
{
    dept_sqlite_conn *s = c;
    sqlite3_bind_text(s->set, 1, user, (int)user_len, SQLITE_STATIC);
    sqlite3_bind_text(s->set, 2, dept, (int)dept_len, SQLITE_STATIC);
    int step = sqlite3_step(s->set), rc = 0;
    if (step != SQLITE_DONE)
        rc = dept_fail(err, MC_EIO, "update: %s", sqlite3_errmsg(s->db));
    else if (sqlite3_changes(s->db) == 0)
        rc = MC_ENOENT;
    sqlite3_reset(s->set);
    sqlite3_clear_bindings(s->set);
    return rc;
}

const dept_backend dept_sqlite_backend = {
    "sqlite", dept_sqlite_setup, dept_sqlite_connect, dept_sqlite_disconnect, dept_sqlite_get, dept_sqlite_set,
};
