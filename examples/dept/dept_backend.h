/* examples/dept/dept_backend.h: what the connection pool (dept_db.c) needs from a database: set
 * it up once, open and close one connection, run the two queries on a connection.
 *
 * Internal to the example module. A connection belongs to the pool that opened it (closed with
 * disconnect) and is used by one thread at a time, which the pool guarantees, so backends need
 * no locking of their own; `setup` runs alone, before any connection is opened. */
#ifndef DEPT_BACKEND_H
#define DEPT_BACKEND_H

#include "dept_db.h"

typedef struct dept_backend {
    const char *name;
    /* Create and seed the database if the options ask for it. 0 or MC_E* (err filled). */
    int (*setup)(const dept_db_options *opts, mc_error *err);
    /* One connection with its statements prepared; NULL with err filled on failure. */
    void *(*connect)(const dept_db_options *opts, mc_error *err);
    void (*disconnect)(void *conn);
    /* As dept_db_get / dept_db_set; `user` is NUL-terminated as well as counted. */
    int (*get)(void *conn, const char *user, size_t user_len, char *out, size_t cap, size_t *len,
               mc_error *err);
    int (*set)(void *conn, const char *user, size_t user_len, const char *dept, size_t dept_len,
               mc_error *err);
} dept_backend;

extern const dept_backend dept_sqlite_backend;
#ifdef DEPT_WITH_POSTGRES
extern const dept_backend dept_pg_backend;
#endif

/* Fill err (may be NULL) with code and a printf-style message; returns code. */
int dept_fail(mc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
