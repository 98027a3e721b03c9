/* examples/dept/dept_db.h: the example module's database: users(user_id, department) in SQLite
 * (the default) or PostgreSQL, behind a small pool of connections shared by server threads.
 *
 * Ownership: dept_db_open hands the caller a dept_db it frees with dept_db_close; strings passed
 * in are only read during the call. Thread safety: dept_db_get and dept_db_set may run from any
 * number of threads at once (each borrows one pooled connection for the duration of the query);
 * dept_db_open and dept_db_close run alone. */
#ifndef DEPT_DB_H
#define DEPT_DB_H

#include <modcache/common.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest user id and department the module accepts or returns, in bytes. */
#define DEPT_USER_MAX 255
#define DEPT_NAME_MAX 255

typedef struct dept_db dept_db;

typedef struct dept_db_options {
    /* Exactly one of the two: an SQLite file, or a libpq connection string. */
    const char *sqlite_path;
    const char *pg_conninfo;
    /* < 0: do not seed. SQLite: when the file does not exist, create it with users
     * user0..user<N-1>; PostgreSQL: create the table if missing and seed it when empty. A missing
     * SQLite file without seed_users is refused (a mistyped path should not create a database). */
    int64_t seed_users;
    /* Connections in the pool (>= 1): the number of queries that can run at once. */
    unsigned pool_size;
    /* Added to every query while it holds its connection, as a round trip to a database on
     * another machine would: for demonstrations and tests. 0: none. */
    uint64_t delay_ns;
} dept_db_options;

/* Whether this build can talk to PostgreSQL (libpq was found). */
bool dept_db_has_postgres(void);

/* Seed the database if asked, then open pool_size connections and prepare their statements.
 * Returns 0, MC_EINVAL (options), MC_EIO (database unreachable, seeding failed: err says why),
 * MC_ENOTSUP (PostgreSQL asked for in a build without libpq), MC_ENOMEM. */
int dept_db_open(const dept_db_options *opts, dept_db **out, mc_error *err);
void dept_db_close(dept_db *db);

/* The department of a user: 0 with the name copied into out (NUL-terminated, *len its length),
 * MC_ENOENT for an unknown user, MC_E2BIG for a name over cap - 1 bytes, MC_EIO for a database
 * error (err, if not NULL, says what the database said). */
int dept_db_get(dept_db *db, const char *user, size_t user_len, char *out, size_t cap, size_t *len,
                mc_error *err);
/* Change a user's department: 0, MC_ENOENT for an unknown user, MC_EIO (err filled). */
int dept_db_set(dept_db *db, const char *user, size_t user_len, const char *dept, size_t dept_len,
                mc_error *err);

/* The department seeding gives user<i>: a fixed list, picked by a hash of i so that neighbours
 * differ, the same in every build and for both databases. */
const char *dept_seed_department(uint64_t i);

#endif
