/* examples/dept/dept_pg.c: the PostgreSQL backend (libpq): creates and seeds the table under an
 * advisory lock, then one connection per pool slot (libpq connections are not thread-safe). */
#include "dept_backend.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    PGconn *conn;
    bool prepared; /* the session has dept_get / dept_set (lost when the connection is reset) */
} dept_pg_conn;

/* Any constant works: it only has to be the same in every process seeding this table. */
#define DEPT_PG_SEED_LOCK "7266697"

/* libpq's messages end with a newline; errors read better on one line. */
static int dept_pg_fail(mc_error *err, const char *what, const char *msg)
{
    size_t n = msg ? strlen(msg) : 0;
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    return dept_fail(err, MC_EIO, "postgres: %s: %.*s", what, (int)n, msg ? msg : "");
}

/* The server's NOTICEs ("relation already exists, skipping") are not worth a log line. */
static void dept_pg_quiet(void *ud, const char *message)
{
    (void)ud;
    (void)message;
}

static PGconn *dept_pg_open(const char *conninfo, mc_error *err)
{
    PGconn *c = PQconnectdb(conninfo);
    if (!c) {
        dept_fail(err, MC_ENOMEM, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        dept_pg_fail(err, "cannot connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, dept_pg_quiet, NULL);
    return c;
}

/* Run a command that returns no rows; 0 or MC_EIO. */
static int dept_pg_exec(PGconn *c, const char *sql, mc_error *err)
{
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                 ? 0
                 : dept_pg_fail(err, sql, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* COPY the seed rows in, buffered: one round trip per 64 KiB instead of one per row. */
static int dept_pg_copy_seed(PGconn *c, int64_t n, mc_error *err)
{
    PGresult *r = PQexec(c, "COPY users(user_id, department) FROM STDIN");
    ExecStatusType st = PQresultStatus(r);
    PQclear(r);
    if (st != PGRES_COPY_IN)
        return dept_pg_fail(err, "COPY users", PQerrorMessage(c));
    char buf[65536];
    size_t used = 0;
    int ok = 1;
    for (int64_t i = 0; ok == 1 && i < n; i++) {
        int len = snprintf(buf + used, sizeof buf - used, "user%lld\t%s\n", (long long)i,
                           dept_seed_department((uint64_t)i));
        used += (size_t)len;
        if (sizeof buf - used < 128 || i + 1 == n) {
            ok = PQputCopyData(c, buf, (int)used);
            used = 0;
        }
    }
    if (PQputCopyEnd(c, ok == 1 ? NULL : "seeding stopped") != 1)
        ok = 0;
    int rc = 0;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && rc == 0)
            rc = dept_pg_fail(err, "COPY users", PQresultErrorMessage(r));
        PQclear(r);
    }
    return rc == 0 && ok != 1 ? dept_pg_fail(err, "COPY users", PQerrorMessage(c)) : rc;
}

static int dept_pg_setup(const dept_db_options *o, mc_error *err)
{
    PGconn *c = dept_pg_open(o->pg_conninfo, err);
    if (!c)
        return err && err->code ? err->code : MC_EIO;
    /* Hosts starting together against one empty database: the lock makes one of them create
     * and seed while the others wait, then find the rows there. */
    int rc = dept_pg_exec(c, "BEGIN", err);
    if (rc == 0)
        rc = dept_pg_exec(c, "SELECT pg_advisory_xact_lock(" DEPT_PG_SEED_LOCK ")", err);
    if (rc == 0)
        rc = dept_pg_exec(c, "CREATE TABLE IF NOT EXISTS users(user_id TEXT PRIMARY KEY, department TEXT NOT NULL)", err);
    if (rc == 0 && o->seed_users > 0) {
        PGresult *r = PQexec(c, "SELECT 1 FROM users LIMIT 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = dept_pg_fail(err, "SELECT 1 FROM users", PQresultErrorMessage(r));
        else if (PQntuples(r) == 0)
            rc = dept_pg_copy_seed(c, o->seed_users, err);
        PQclear(r);
    }
    if (rc == 0)
        rc = dept_pg_exec(c, "COMMIT", err);
    PQfinish(c);
    return rc;
}

static int dept_pg_prepare(dept_pg_conn *p, mc_error *err)
{
    PGresult *r = PQprepare(p->conn, "dept_get", "SELECT department FROM users WHERE user_id = $1", 1, NULL);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : dept_pg_fail(err, "prepare", PQresultErrorMessage(r));
    PQclear(r);
    if (rc == 0) {
        r = PQprepare(p->conn, "dept_set", "UPDATE users SET department = $2 WHERE user_id = $1", 2, NULL);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : dept_pg_fail(err, "prepare", PQresultErrorMessage(r));
        PQclear(r);
    }
    p->prepared = rc == 0;
    return rc;
}

static void dept_pg_disconnect(void *c)
{
    dept_pg_conn *p = c;
    if (p) {
        PQfinish(p->conn);
        free(p);
    }
}

static void *dept_pg_connect(const dept_db_options *o, mc_error *err)
{
    dept_pg_conn *p = calloc(1, sizeof *p);
    if (!p) {
        dept_fail(err, MC_ENOMEM, "out of memory");
        return NULL;
    }
    if (!(p->conn = dept_pg_open(o->pg_conninfo, err)) || dept_pg_prepare(p, err) != 0) {
        dept_pg_disconnect(p);
        return NULL;
    }
    return p;
}

/* A connection the server dropped (a restart) is reset and prepared again before use, so the
 * pool recovers by itself once the database is back. */
static int dept_pg_ready(dept_pg_conn *p, mc_error *err)
{
    if (PQstatus(p->conn) != CONNECTION_OK) {
        PQreset(p->conn);
        p->prepared = false;
        if (PQstatus(p->conn) != CONNECTION_OK)
            return dept_pg_fail(err, "reconnect", PQerrorMessage(p->conn));
    }
    return p->prepared ? 0 : dept_pg_prepare(p, err);
}

static int dept_pg_get(void *c, const char *user, size_t user_len, char *out, size_t cap, size_t *len,
                       mc_error *err)
{
    (void)user_len;
    dept_pg_conn *p = c;
    int rc = dept_pg_ready(p, err);
    if (rc != 0)
        return rc;
    const char *params[1] = {user};
    PGresult *r = PQexecPrepared(p->conn, "dept_get", 1, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = dept_pg_fail(err, "select", PQresultErrorMessage(r));
    } else if (PQntuples(r) == 0) {
        rc = MC_ENOENT;
    } else {
        size_t n = (size_t)PQgetlength(r, 0, 0);
        if (n >= cap) {
            rc = dept_fail(err, MC_E2BIG, "department of %s is %zu bytes long", user, n);
        } else {
            memcpy(out, PQgetvalue(r, 0, 0), n);
            out[n] = 0;
            *len = n;
        }
    }
    PQclear(r);
    return rc;
}

static int dept_pg_set(void *c, const char *user, size_t user_len, const char *dept, size_t dept_len,
                       mc_error *err)
{
    (void)user_len;
    dept_pg_conn *p = c;
    int rc = dept_pg_ready(p, err);
    if (rc != 0)
        return rc;
    char name[DEPT_NAME_MAX + 1]; /* text parameters are NUL-terminated */
    memcpy(name, dept, dept_len);
    name[dept_len] = 0;
    const char *params[2] = {user, name};
    PGresult *r = PQexecPrepared(p->conn, "dept_set", 2, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        rc = dept_pg_fail(err, "update", PQresultErrorMessage(r));
    else if (strcmp(PQcmdTuples(r), "0") == 0)
        rc = MC_ENOENT;
    PQclear(r);
    return rc;
}

const dept_backend dept_pg_backend = {
    "postgres", dept_pg_setup, dept_pg_connect, dept_pg_disconnect, dept_pg_get, dept_pg_set,
};
