/* Test support: child processes, free ports, redis-server, a minimal HTTP client. */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mct_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned mct_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    socklen_t sl = sizeof sa;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int mct_spawn(mct_proc *p, const char *const *argv, const char *const *env)
{
    memset(p, 0, sizeof *p);
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        /* A test that dies (a failed assertion, a crash) takes its servers with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        for (const char *const *e = env; e && *e; e++)
            putenv((char *)*e);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    p->pid = pid;
    p->outfd = fds[0];
    p->cap = 4096;
    p->log = calloc(1, p->cap);
    return p->log ? 0 : -1;
}

/* Read what is available; false once the child closed its output. */
static bool mct_read_some(mct_proc *p)
{
    for (;;) {
        if (p->cap - p->len < 2048) {
            char *l = realloc(p->log, p->cap * 2);
            if (!l)
                return false;
            p->log = l;
            p->cap *= 2;
        }
        ssize_t n = read(p->outfd, p->log + p->len, p->cap - p->len - 1);
        if (n > 0) {
            p->len += (size_t)n;
            p->log[p->len] = 0;
            continue;
        }
        return n < 0 && (errno == EAGAIN || errno == EINTR);
    }
}

void mct_drain(mct_proc *p)
{
    if (p->outfd >= 0 && p->log)
        mct_read_some(p);
}

bool mct_wait_for(mct_proc *p, size_t from, const char *needle, int timeout_ms)
{
    long long deadline = mct_now_ms() + timeout_ms;
    for (;;) {
        bool open = mct_read_some(p);
        if (from <= p->len && strstr(p->log + from, needle))
            return true;
        long long left = deadline - mct_now_ms();
        if (!open || left <= 0)
            return false;
        struct pollfd pf = {.fd = p->outfd, .events = POLLIN};
        poll(&pf, 1, left > 50 ? 50 : (int)left);
    }
}

size_t mct_count(const mct_proc *p, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *s = p->log; s && (s = strstr(s, needle)); s += nl)
        n++;
    return n;
}

int mct_finish(mct_proc *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    if (sig)
        kill(p->pid, sig);
    int status = 0;
    /* Keep reading while waiting, so a chatty child never blocks on a full pipe. */
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid || (r < 0 && errno != EINTR))
            break;
        mct_read_some(p);
        struct pollfd pf = {.fd = p->outfd, .events = POLLIN};
        poll(&pf, 1, 20);
    }
    mct_read_some(p);
    close(p->outfd);
    p->outfd = -1;
    p->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int mct_run(const char *const *argv, const char *const *env, char *out, size_t cap)
{
    mct_proc p;
    if (mct_spawn(&p, argv, env) != 0)
        return -1;
    int rc = mct_finish(&p, 0);
    if (out && cap) {
        size_t n = p.len < cap - 1 ? p.len : cap - 1;
        memcpy(out, p.log, n);
        out[n] = 0;
    }
    free(p.log);
    return rc;
}

int mct_redis_start(mct_redis *r, unsigned port)
{
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof r->dir, "/tmp/mct-redis-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
    }
    if (port)
        r->port = port;
    for (int attempt = 0; attempt < 5; attempt++) {
        if (!port)
            r->port = mct_free_port();
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%u", r->port);
        const char *argv[] = {"/usr/bin/redis-server", "--port", portstr, "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", r->persist ? "yes" : "no", "--appendfsync",
                              "always", "--dir", r->dir, "--protected-mode", "no", NULL};
        if (mct_spawn(&r->proc, argv, NULL) != 0)
            return -1;
        if (mct_wait_for(&r->proc, 0, "Ready to accept connections", 10000))
            return 0;
        mct_finish(&r->proc, SIGKILL);
        free(r->proc.log);
        r->proc.log = NULL;
        if (port)
            break; /* the given port is taken: no other to try */
    }
    return -1;
}

void mct_redis_stop(mct_redis *r, bool hard)
{
    if (r->proc.pid > 0)
        mct_finish(&r->proc, hard ? SIGKILL : SIGTERM);
    free(r->proc.log);
    r->proc.log = NULL;
}

void mct_redis_cleanup(mct_redis *r)
{
    if (r->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", r->dir);
        r->dir[0] = 0;
    }
}

static void mct_reply_text(const redisReply *rep, char *out, size_t cap, size_t *len)
{
    char buf[64];
    const char *s = NULL;
    size_t n = 0;
    switch (rep->type) {
    case REDIS_REPLY_INTEGER:
        n = (size_t)snprintf(buf, sizeof buf, "%lld", rep->integer);
        s = buf;
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        s = rep->str;
        n = rep->len;
        break;
    case REDIS_REPLY_ERROR:
        if (*len + 4 < cap) {
            memcpy(out + *len, "ERR:", 4);
            *len += 4;
        }
        s = rep->str;
        n = rep->len;
        break;
    case REDIS_REPLY_NIL:
        s = "(nil)";
        n = 5;
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < rep->elements; i++)
            mct_reply_text(rep->element[i], out, cap, len);
        return;
    default:
        return;
    }
    if (*len + n + 1 < cap) {
        memcpy(out + *len, s, n);
        *len += n;
        out[(*len)++] = '\n';
    }
}

int mct_redis_cmd(unsigned port, char *out, size_t cap, const char *const *argv)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    int argc = 0;
    while (argv[argc])
        argc++;
    redisReply *rep = redisCommandArgv(c, argc, (const char **)argv, NULL);
    int rc = rep ? 0 : -1;
    size_t len = 0;
    if (rep && out && cap)
        mct_reply_text(rep, out, cap, &len);
    if (out && cap)
        out[len < cap ? len : cap - 1] = 0;
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return rc;
}

int mct_http(unsigned port, const char *method, const char *path, const char *headers, const char *body,
             char *out, size_t cap)
{
    if (out && cap)
        out[0] = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    /* A stuck or overloaded server fails the request after 10 s rather than hanging the
     * test (on Linux the send timeout also bounds connect). */
    struct timeval tv = {.tv_sec = 10};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t blen = body ? strlen(body) : 0;
    size_t rcap = strlen(path) + (headers ? strlen(headers) : 0) + blen + 256;
    char *req = malloc(rcap);
    if (!req) {
        close(fd);
        return 0;
    }
    int n = snprintf(req, rcap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n",
                     method, path, headers ? headers : "", blen);
    if (blen)
        memcpy(req + n, body, blen);
    size_t total = (size_t)n + blen, sent = 0;
    while (sent < total) {
        ssize_t w = write(fd, req + sent, total - sent);
        if (w <= 0)
            break;
        sent += (size_t)w;
    }
    free(req);
    char *resp = malloc(1 << 20);
    size_t got = 0;
    ssize_t r;
    while (resp && got < (1 << 20) - 1 && (r = read(fd, resp + got, (1 << 20) - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    if (!resp)
        return 0;
    resp[got] = 0;
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    const char *b = strstr(resp, "\r\n\r\n");
    if (out && cap && b) {
        size_t bl = strlen(b + 4);
        if (bl >= cap)
            bl = cap - 1;
        memcpy(out, b + 4, bl);
        out[bl] = 0;
    }
    free(resp);
    return status;
}

int mct_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) == 0 ? rc : -1;
}
