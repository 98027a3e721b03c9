/* Test support: child processes (mchost, redis-server, mcctl) with their stderr captured, free
 * loopback ports, and a minimal HTTP/1.1 client. Used by the tests that run programs. */
#ifndef MCT_PROC_H
#define MCT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct mct_proc {
    pid_t pid;
    int outfd;         /* the child's stdout and stderr, merged (non-blocking reads) */
    char *log;         /* everything read so far, NUL-terminated */
    size_t len, cap;
} mct_proc;

/* A free TCP port on 127.0.0.1 (bound then released). */
unsigned mct_free_port(void);

/* Start argv[0] (a path) with stdout+stderr captured; extra environment "K=V" strings in env
 * (NULL-terminated, may be NULL). Returns 0 or -1. */
int mct_spawn(mct_proc *p, const char *const *argv, const char *const *env);
/* Read the child's output until `needle` appears after byte `from` (or timeout_ms passes, or the
 * child closes its output). True when it appeared. */
bool mct_wait_for(mct_proc *p, size_t from, const char *needle, int timeout_ms);
/* Read whatever output is available now. */
void mct_drain(mct_proc *p);
/* Send sig (0: none), wait for the child, return its exit status (128+signal if killed). The
 * captured output stays in p->log (the caller frees it). */
int mct_finish(mct_proc *p, int sig);
/* Count occurrences of needle in the captured output. */
size_t mct_count(const mct_proc *p, const char *needle);

/* Run a program to completion, capturing stdout+stderr into out (NUL-terminated). Returns the
 * exit status, or -1. */
int mct_run(const char *const *argv, const char *const *env, char *out, size_t cap);

/* A redis-server on 127.0.0.1:port, no persistence, in a scratch directory. */
typedef struct mct_redis {
    mct_proc proc;
    unsigned port;
    char dir[64];
    bool persist; /* set before start: an append-only file, so data survives a restart */
} mct_redis;

/* Start (port 0: pick a free one) and wait until it answers PING. Returns 0 or -1. */
int mct_redis_start(mct_redis *r, unsigned port);
/* Stop it (SIGKILL when hard, else SIGTERM) and wait. The directory is kept for a restart. */
void mct_redis_stop(mct_redis *r, bool hard);
/* Remove the scratch directory. */
void mct_redis_cleanup(mct_redis *r);
/* Run one command with redis-cli-like arguments; the reply as text into out (integers and
 * strings as themselves, arrays flattened one element per line, errors prefixed "ERR:").
 * Returns 0, or -1 when the server cannot be reached. */
int mct_redis_cmd(unsigned port, char *out, size_t cap, const char *const *argv);

/* One HTTP/1.1 request to 127.0.0.1:port (Connection: close). headers: "Name: v\r\n" lines or
 * NULL. Returns the status (0 when the host cannot be reached); the response body into out. */
int mct_http(unsigned port, const char *method, const char *path, const char *headers,
             const char *body, char *out, size_t cap);

/* Write a file (text). Returns 0 or -1. */
int mct_write_file(const char *path, const char *text);

#endif
