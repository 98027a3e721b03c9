/* examples/dept/dept_load.c: a load generator for the example_dept module: client threads on
 * keep-alive HTTP/1.1 connections GET users drawn from a Zipf distribution, and report
 * throughput and latency percentiles as key=value lines.
 *
 *   dept_load --url http://127.0.0.1:8008 --users 100000 --threads 4 --duration 10
 *
 * Every request's latency is recorded (per thread, merged at the end). A progress line is
 * rewritten on stderr while it runs; the summary goes to stdout for scripts to read. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_BUF 65536

typedef struct load_options {
    struct sockaddr_in addr;
    char host[64];
    const char *prefix; /* path before the user id */
    uint64_t users;
    unsigned threads;
    double duration;   /* seconds; used when requests is 0 */
    uint64_t requests; /* total, over all threads */
    double zipf_s;
    uint64_t seed;
    bool quiet;
} load_options;

typedef struct worker {
    pthread_t thread;
    const load_options *opt;
    const double *cdf; /* shared, read-only */
    uint64_t rng;
    int fd;
    char buf[LOAD_BUF];
    uint64_t *lat; /* nanoseconds, one per request */
    size_t nlat, cap;
    bool oom;
    /* Read by the progress line while the worker runs, hence atomic (relaxed: counts only). */
    _Atomic uint64_t done, errors;
} worker;

static atomic_bool load_stop;
static _Atomic uint64_t load_issued; /* requests handed out, in --requests mode */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a fast generator with a 64-bit state, seeded per thread. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Cumulative weights of ranks 1..n under Zipf(s): rank k has weight 1/k^s. */
static double *zipf_cdf(uint64_t n, double s)
{
    double *cdf = malloc(n * sizeof *cdf);
    if (!cdf)
        return NULL;
    double sum = 0;
    for (uint64_t k = 0; k < n; k++) {
        sum += 1.0 / pow((double)(k + 1), s);
        cdf[k] = sum;
    }
    return cdf;
}

/* A rank in [0, n): the first whose cumulative weight reaches a uniform draw. */
static uint64_t zipf_draw(const double *cdf, uint64_t n, uint64_t *rng)
{
    double u = (double)(rng_next(rng) >> 11) * 0x1p-53 * cdf[n - 1];
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void conn_close(worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

static int conn_open(worker *w)
{
    w->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (w->fd < 0)
        return -1;
    int one = 1;
    /* Requests are small and each waits for its answer: no Nagle delay. */
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0}; /* a stuck server shows as errors, not a hang */
    setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(w->fd, (const struct sockaddr *)&w->opt->addr, sizeof w->opt->addr) != 0) {
        conn_close(w);
        return -1;
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* A header's value in the header block [h, end), or NULL. */
static const char *header_value(const char *h, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *l = h; l < end;) {
        const char *eol = memchr(l, '\n', (size_t)(end - l));
        if (!eol)
            eol = end;
        if ((size_t)(eol - l) > nl && l[nl] == ':' && strncasecmp(l, name, nl) == 0) {
            const char *v = l + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        l = eol + 1;
    }
    return NULL;
}

/* One request-response on the worker's connection. Returns the status, or -1 on an I/O or
 * protocol error (the connection is then closed). *got_bytes tells whether any of the answer
 * arrived, so that a keep-alive connection the server had closed can be retried. */
static int exchange(worker *w, const char *req, size_t req_len, bool *got_bytes)
{
    *got_bytes = false;
    if (write_all(w->fd, req, req_len) != 0)
        goto fail;
    size_t have = 0;
    char *hend = NULL;
    while (!hend) {
        if (have == LOAD_BUF - 1)
            goto fail;
        ssize_t k = recv(w->fd, w->buf + have, LOAD_BUF - 1 - have, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto fail;
        *got_bytes = true;
        have += (size_t)k;
        w->buf[have] = 0;
        hend = strstr(w->buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(w->buf, "HTTP/1.%*d %d", &status) != 1)
        goto fail;
    size_t vlen;
    const char *cl = header_value(w->buf, hend, "Content-Length", &vlen);
    if (!cl)
        goto fail; /* the host always sends a length; anything else is not worth guessing at */
    uint64_t body = strtoull(cl, NULL, 10);
    size_t hlen = (size_t)(hend + 4 - w->buf);
    uint64_t left = body > have - hlen ? body - (have - hlen) : 0;
    while (left) { /* the body itself is not needed: read it off the connection */
        ssize_t k = recv(w->fd, w->buf, left < LOAD_BUF ? (size_t)left : LOAD_BUF, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            goto fail;
        left -= (uint64_t)k;
    }
    const char *conn = header_value(w->buf, hend, "Connection", &vlen);
    if (conn && vlen == 5 && strncasecmp(conn, "close", 5) == 0)
        conn_close(w);
    return status;
fail:
    conn_close(w);
    return -1;
}

static void record(worker *w, uint64_t ns)
{
    if (w->nlat == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 65536;
        uint64_t *l = realloc(w->lat, cap * sizeof *l);
        if (!l) {
            w->oom = true;
            return;
        }
        w->lat = l;
        w->cap = cap;
    }
    w->lat[w->nlat++] = ns;
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    const load_options *o = w->opt;
    char req[1024];
    while (!atomic_load_explicit(&load_stop, memory_order_relaxed)) {
        if (o->requests && atomic_fetch_add_explicit(&load_issued, 1, memory_order_relaxed) >= o->requests)
            break;
        uint64_t rank = zipf_draw(w->cdf, o->users, &w->rng);
        int n = snprintf(req, sizeof req, "GET %suser%llu HTTP/1.1\r\nHost: %s\r\n\r\n", o->prefix,
                         (unsigned long long)rank, o->host);
        uint64_t t0 = now_ns();
        int status = -1;
        /* Two attempts: the second only when a reused connection failed before any answer. */
        for (int attempt = 0; attempt < 2 && status < 0; attempt++) {
            bool reused = w->fd >= 0, got = false;
            if (w->fd < 0 && conn_open(w) != 0)
                break;
            status = exchange(w, req, (size_t)n, &got);
            if (status >= 0 || got || !reused)
                break;
        }
        record(w, now_ns() - t0);
        if (status != 200)
            atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
        if (status < 0 && w->fd < 0) {
            /* The server is gone or refusing: do not spin at full speed on connect errors. */
            nanosleep(&(struct timespec){0, 10000000}, NULL);
        }
    }
    conn_close(w);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in milliseconds. */
static double pct_ms(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)ceil(p * (double)n);
    i = i ? i - 1 : 0;
    return (double)v[i < n ? i : n - 1] / 1e6;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: dept_load --url http://HOST:PORT [options]\n"
            "  --users N        user ids user0..user<N-1> (default 100000)\n"
            "  --threads N      client threads, one keep-alive connection each (default 4)\n"
            "  --duration S     run for S seconds (default 10)\n"
            "  --requests N     or stop after N requests in total\n"
            "  --zipf S         Zipf exponent (default 1.0; user0 is the most requested)\n"
            "  --seed N         random seed (default 1)\n"
            "  --prefix PATH    path before the user id (default /_modcache/client/dept/v1/users/)\n"
            "  --quiet          no progress line on stderr\n"
            "Prints requests, ok, errors (any status but 200, or no answer), seconds, rps, and\n"
            "latency percentiles p50_ms, p90_ms, p99_ms, max_ms as key=value lines on stdout.\n");
}

static int parse_url(load_options *o, const char *url)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    const char *colon = strrchr(p, ':');
    size_t hl = colon ? (size_t)(colon - p) : 0;
    if (!colon || hl == 0 || hl >= sizeof o->host)
        return -1;
    memcpy(o->host, p, hl);
    o->host[hl] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (port == 0 || port > 65535 || (*end && strcmp(end, "/") != 0))
        return -1;
    o->addr.sin_family = AF_INET;
    o->addr.sin_port = htons((uint16_t)port);
    const char *ip = strcmp(o->host, "localhost") == 0 ? "127.0.0.1" : o->host;
    return inet_pton(AF_INET, ip, &o->addr.sin_addr) == 1 ? 0 : -1;
}

static int parse_args(load_options *o, int argc, char **argv)
{
    *o = (load_options){.prefix = "/_modcache/client/dept/v1/users/", .users = 100000, .threads = 4,
                        .duration = 10, .zipf_s = 1.0, .seed = 1};
    bool have_url = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        } else if (!v) {
            fprintf(stderr, "dept_load: %s needs a value\n", a);
            return -1;
        }
        i++;
        errno = 0;
        if (!strcmp(a, "--url")) {
            if (parse_url(o, v) != 0) {
                fprintf(stderr, "dept_load: --url %s: expected http://<IPv4 address>:<port>\n", v);
                return -1;
            }
            have_url = true;
            continue;
        } else if (!strcmp(a, "--prefix")) {
            o->prefix = v;
            continue;
        } else if (!strcmp(a, "--users")) {
            o->users = strtoull(v, &end, 10);
        } else if (!strcmp(a, "--threads")) {
            o->threads = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--duration")) {
            o->duration = strtod(v, &end);
        } else if (!strcmp(a, "--requests")) {
            o->requests = strtoull(v, &end, 10);
        } else if (!strcmp(a, "--zipf")) {
            o->zipf_s = strtod(v, &end);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
        } else {
            fprintf(stderr, "dept_load: unknown option %s\n", a);
            usage(stderr);
            return -1;
        }
        if (errno || !end || *end || end == v) {
            fprintf(stderr, "dept_load: %s %s: not a number\n", a, v);
            return -1;
        }
    }
    if (!have_url) {
        usage(stderr);
        return -1;
    }
    if (o->users == 0 || o->users > 100000000 || o->threads == 0 || o->threads > 1024 ||
        !(o->duration > 0) || o->zipf_s < 0 || o->zipf_s > 10 || strlen(o->prefix) > 512) {
        fprintf(stderr, "dept_load: out of range: need 1 <= users <= 1e8, 1 <= threads <= 1024, "
                        "duration > 0, 0 <= zipf <= 10\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    load_options o;
    if (parse_args(&o, argc, argv) != 0)
        return 2;
    double *cdf = zipf_cdf(o.users, o.zipf_s);
    worker *ws = calloc(o.threads, sizeof *ws);
    if (!cdf || !ws) {
        fprintf(stderr, "dept_load: out of memory\n");
        return 1;
    }
    uint64_t t0 = now_ns();
    unsigned started = 0;
    for (unsigned i = 0; i < o.threads; i++) {
        ws[i].opt = &o;
        ws[i].cdf = cdf;
        ws[i].fd = -1;
        ws[i].rng = o.seed * 0x100000001b3ULL + i;
        if (pthread_create(&ws[i].thread, NULL, worker_run, &ws[i]) != 0) {
            fprintf(stderr, "dept_load: cannot start thread %u\n", i);
            atomic_store(&load_stop, true);
            break;
        }
        started++;
    }
    /* The main thread keeps time and draws the progress line until the run is over. */
    uint64_t last_print = 0;
    for (;;) {
        nanosleep(&(struct timespec){0, 50000000}, NULL);
        uint64_t el = now_ns() - t0, done = 0, errs = 0;
        for (unsigned i = 0; i < started; i++) {
            done += atomic_load_explicit(&ws[i].done, memory_order_relaxed);
            errs += atomic_load_explicit(&ws[i].errors, memory_order_relaxed);
        }
        bool over = o.requests ? done >= o.requests : (double)el / 1e9 >= o.duration;
        if (!o.quiet && (el - last_print >= 500000000u || over)) {
            last_print = el;
            fprintf(stderr, "\rdept_load: %5.1f s  %10llu requests  %8.0f req/s  %llu errors   ", (double)el / 1e9,
                    (unsigned long long)done, (double)done / ((double)el / 1e9), (unsigned long long)errs);
            fflush(stderr);
        }
        if (over || atomic_load(&load_stop))
            break;
    }
    atomic_store(&load_stop, true);
    for (unsigned i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    double secs = (double)(now_ns() - t0) / 1e9;
    if (!o.quiet)
        fputc('\n', stderr);

    size_t total = 0;
    uint64_t errors = 0;
    bool oom = false;
    for (unsigned i = 0; i < started; i++) {
        total += ws[i].nlat;
        errors += atomic_load(&ws[i].errors);
        oom |= ws[i].oom;
    }
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (!all || oom) {
        fprintf(stderr, "dept_load: out of memory for the latencies\n");
        return 1;
    }
    size_t k = 0;
    for (unsigned i = 0; i < started; i++) {
        memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof *all);
        k += ws[i].nlat;
        free(ws[i].lat);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    printf("requests=%zu\nok=%llu\nerrors=%llu\nthreads=%u\nusers=%llu\nzipf=%.2f\nseconds=%.3f\n"
           "rps=%.0f\np50_ms=%.3f\np90_ms=%.3f\np99_ms=%.3f\nmax_ms=%.3f\n",
           total, (unsigned long long)(total - errors), (unsigned long long)errors, o.threads,
           (unsigned long long)o.users, o.zipf_s, secs, (double)total / secs, pct_ms(all, total, 0.50),
           pct_ms(all, total, 0.90), pct_ms(all, total, 0.99), total ? (double)all[total - 1] / 1e6 : 0.0);
    free(all);
    free(ws);
    free(cdf);
    return started == o.threads ? 0 : 1;
}
