/* examples/dept/dept_db.c: the connection pool in front of the department database, and the
 * fixed department list that seeding draws from. */
#include "dept_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dept_db {
    const dept_backend *be;
    void **conns;      /* pool_size connections */
    unsigned n;
    /* Free connections as a stack of indices: the most recently used one is reused first, so
     * a lightly loaded server keeps touching the same warm connection. */
    unsigned *free_idx;
    unsigned nfree;
    uint64_t delay_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a connection goes back to the pool */
};

static const char *const dept_names[] = {
    "Engineering", "Sales", "Marketing", "Finance", "Support", "Research", "Legal", "Operations",
};

const char *dept_seed_department(uint64_t i)
{
    /* splitmix64's finaliser: a fixed, well-mixed function of i. */
    uint64_t z = i + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return dept_names[z % (sizeof dept_names / sizeof dept_names[0])];
}

int dept_fail(mc_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

bool dept_db_has_postgres(void)
{
#ifdef DEPT_WITH_POSTGRES
    return true;
#else
    return false;
#endif
}

int dept_db_open(const dept_db_options *o, dept_db **out, mc_error *err)
{
    if (!o || !out || o->pool_size == 0 || !o->sqlite_path == !o->pg_conninfo)
        return dept_fail(err, MC_EINVAL, "give either an SQLite file or a PostgreSQL connection string");
    const dept_backend *be = &dept_sqlite_backend;
    if (o->pg_conninfo) {
#ifdef DEPT_WITH_POSTGRES
        be = &dept_pg_backend;
#else
        return dept_fail(err, MC_ENOTSUP, "this build has no PostgreSQL support (libpq was not found)");
#endif
    }
    int rc = be->setup(o, err);
    if (rc != 0)
        return rc;
    dept_db *db = calloc(1, sizeof *db);
    if (!db)
        return dept_fail(err, MC_ENOMEM, "out of memory");
    db->be = be;
    db->delay_ns = o->delay_ns;
    db->conns = calloc(o->pool_size, sizeof *db->conns);
    db->free_idx = calloc(o->pool_size, sizeof *db->free_idx);
    if (!db->conns || !db->free_idx) {
        dept_db_close(db);
        return dept_fail(err, MC_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&db->mu, NULL);
    pthread_cond_init(&db->cv, NULL);
    /* Every connection now: an unreachable database fails the module's init, not a request. */
    for (unsigned i = 0; i < o->pool_size; i++) {
        if (!(db->conns[i] = be->connect(o, err))) {
            db->n = i;
            dept_db_close(db);
            return err && err->code ? err->code : MC_EIO;
        }
        db->free_idx[db->nfree++] = i;
    }
    db->n = o->pool_size;
    *out = db;
    return 0;
}

void dept_db_close(dept_db *db)
{
    if (!db)
        return;
    for (unsigned i = 0; db->conns && i < db->n; i++)
        db->be->disconnect(db->conns[i]);
    if (db->conns && db->free_idx) {
        pthread_mutex_destroy(&db->mu);
        pthread_cond_destroy(&db->cv);
    }
    free(db->conns);
    free(db->free_idx);
    free(db);
}

static unsigned dept_acquire(dept_db *db)
{
    pthread_mutex_lock(&db->mu);
    while (db->nfree == 0)
        pthread_cond_wait(&db->cv, &db->mu);
    unsigned i = db->free_idx[--db->nfree];
    pthread_mutex_unlock(&db->mu);
    if (db->delay_ns) {
        /* The simulated round trip holds the connection, as a real one would. */
        struct timespec ts = {(time_t)(db->delay_ns / 1000000000u), (long)(db->delay_ns % 1000000000u)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return i;
}

static void dept_release(dept_db *db, unsigned i)
{
    pthread_mutex_lock(&db->mu);
    db->free_idx[db->nfree++] = i;
    pthread_mutex_unlock(&db->mu);
    pthread_cond_signal(&db->cv);
}

/* Backends want a NUL-terminated id too (libpq's text parameters). */
static int dept_user_copy(const char *user, size_t len, char *buf, mc_error *err)
{
    if (!user || len == 0 || len > DEPT_USER_MAX || memchr(user, 0, len))
        return dept_fail(err, MC_EINVAL, "bad user id");
    memcpy(buf, user, len);
    buf[len] = 0;
    return 0;
}

int dept_db_get(dept_db *db, const char *user, size_t user_len, char *out, size_t cap, size_t *len,
                mc_error *err)
{
    char id[DEPT_USER_MAX + 1];
    int rc = dept_user_copy(user, user_len, id, err);
    if (rc != 0 || !out || cap == 0)
        return rc ? rc : MC_EINVAL;
    unsigned i = dept_acquire(db);
    rc = db->be->get(db->conns[i], id, user_len, out, cap, len, err);
    dept_release(db, i);
    return rc;
}

int dept_db_set(dept_db *db, const char *user, size_t user_len, const char *dept, size_t dept_len,
                mc_error *err)
{
    char id[DEPT_USER_MAX + 1];
    int rc = dept_user_copy(user, user_len, id, err);
    if (rc != 0)
        return rc;
    if (!dept || dept_len == 0 || dept_len > DEPT_NAME_MAX)
        return dept_fail(err, MC_EINVAL, "bad department");
    unsigned i = dept_acquire(db);
    rc = db->be->set(db->conns[i], id, user_len, dept, dept_len, err);
    dept_release(db, i);
    return rc;
}
