/* Does the host keep serving under hostile connections? Keep-alive request rate and latency
 * against a module resource of an mchost process on loopback, first with no other clients,
 * then with 5,000 idle and 1,000 trickling connections open (the latter re-opened as the
 * server drops them at its header deadline). Target: at least 80% of the quiet rate, p99 under
 * 10 ms. Starts and stops its own mchost. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

#include "bench_time.h"

#define IDLE 5000
#define TRICKLING 1000
#define CLIENTS 4 /* keep-alive connections measuring, one thread each */
#define PATH "/_modcache/client/bench/v1/item"

static unsigned port;
static atomic_bool stop_clients, stop_attack;

static int connect_to(bool blocking)
{
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One request on a kept-alive blocking connection; reads the whole answer. 0 or -1. */
static int request(int fd)
{
    static const char req[] = "GET " PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        return -1;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
            return -1;
        const char *cl = strcasestr(buf, "Content-Length:");
        size_t body = cl ? strtoul(cl + 15, NULL, 10) : 0;
        size_t want = (size_t)(end + 4 - buf) + body;
        while (have < want) {
            n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                return -1;
            have += (size_t)n;
        }
        return 0;
    }
}

typedef struct {
    uint64_t *lat;
    size_t n, cap;
    int errors;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    int fd = connect_to(true);
    while (fd >= 0 && !atomic_load(&stop_clients)) {
        uint64_t t0 = now_ns();
        if (request(fd) != 0) {
            c->errors++;
            close(fd);
            fd = connect_to(true);
            continue;
        }
        if (c->n < c->cap)
            c->lat[c->n++] = now_ns() - t0;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

typedef struct {
    double rate;
    uint64_t p50, p99, max;
    int errors;
} result;

/* CLIENTS closed-loop keep-alive clients for `secs` seconds. */
static result measure(double secs)
{
    client cs[CLIENTS];
    pthread_t th[CLIENTS];
    atomic_store(&stop_clients, false);
    for (int i = 0; i < CLIENTS; i++) {
        cs[i] = (client){.cap = 4000000};
        cs[i].lat = malloc(cs[i].cap * sizeof *cs[i].lat);
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    uint64_t t0 = now_ns();
    nanosleep(&(struct timespec){(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)}, NULL);
    atomic_store(&stop_clients, true);
    size_t total = 0;
    result r = {0};
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        total += cs[i].n;
        r.errors += cs[i].errors;
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < CLIENTS; i++) {
        memcpy(all + k, cs[i].lat, cs[i].n * sizeof *all);
        k += cs[i].n;
        free(cs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp_u64);
    r.rate = (double)total / elapsed;
    if (total) {
        r.p50 = all[total / 2];
        r.p99 = all[total * 99 / 100];
        r.max = all[total - 1];
    }
    free(all);
    return r;
}

/* The hostile side: IDLE kept-alive connections that sent one request and stay quiet, and
 * TRICKLING ones that send a request head a byte at a time, re-opened when dropped. */
static int idle_fds[IDLE], trickle_fds[TRICKLING];
static atomic_ulong reopened;

static void trickle_open(int i)
{
    static const char head[] = "GET " PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    trickle_fds[i] = connect_to(false);
    if (trickle_fds[i] >= 0)
        send(trickle_fds[i], head, sizeof head - 1, MSG_NOSIGNAL);
}

static void *attack_main(void *arg)
{
    (void)arg;
    char buf[512];
    for (unsigned round = 0; !atomic_load(&stop_attack); round++) {
        /* Each trickling connection sends one byte about every second. */
        for (int i = (int)(round % 10); i < TRICKLING; i += 10) {
            if (trickle_fds[i] >= 0) {
                ssize_t n = recv(trickle_fds[i], buf, sizeof buf, MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN) ||
                    send(trickle_fds[i], "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                    close(trickle_fds[i]);
                    trickle_fds[i] = -1;
                }
            }
            if (trickle_fds[i] < 0) {
                trickle_open(i);
                atomic_fetch_add(&reopened, 1);
            }
        }
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    return NULL;
}

static int open_idle(void)
{
    int ok = 0;
    for (int i = 0; i < IDLE; i++) {
        idle_fds[i] = connect_to(true);
        if (idle_fds[i] >= 0 && request(idle_fds[i]) == 0)
            ok++;
    }
    return ok;
}

/* A number from /proc/<pid>/status ("VmRSS:" in KiB, "Threads:"), or -1. */
static long proc_status(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, strlen(field)))
            v = strtol(line + strlen(field), NULL, 10);
    if (f)
        fclose(f);
    return v;
}

static bool raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur >= need)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
        return false;
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

int main(int argc, char **argv)
{
    bool quick = false, inline_handlers = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--inline")) {
            inline_handlers = true; /* server.handler_threads: 0 */
        } else {
            fprintf(stderr, "usage: bench_http_load [--quick] [--inline]\n");
            return 2;
        }
    }
    /* The loaded phase of a full run outlasts the server's 10 s header deadline, so that the
     * trickling connections are dropped and re-opened while it is measured. */
    double secs = quick ? 2.0 : 5.0, loaded_secs = quick ? 2.0 : 12.0;
    signal(SIGPIPE, SIG_IGN);
    if (!raise_nofile(IDLE + TRICKLING + 256)) {
        fprintf(stderr, "bench_http_load: needs %d open files (ulimit -n)\n", IDLE + TRICKLING + 256);
        return 1;
    }
    char dir[] = "/tmp/bench-http-XXXXXX", cfg[128];
    if (!mkdtemp(dir))
        return 1;
    snprintf(cfg, sizeof cfg, "%s/host.yaml", dir);
    char text[512];
    snprintf(text, sizeof text, "server:\n  listen: 127.0.0.1:0\n%smodules:\n  - module: %s\n",
             inline_handlers ? "  handler_threads: 0\n" : "", BENCH_MODULE);
    if (mct_write_file(cfg, text) != 0)
        return 1;
    mct_proc host = {0};
    if (mct_spawn(&host, (const char *const[]){MCHOST, "-c", cfg, NULL}, NULL) != 0 ||
        !mct_wait_for(&host, 0, "serving HTTP on 127.0.0.1:", 10000)) {
        fprintf(stderr, "bench_http_load: mchost did not start:\n%s\n", host.log ? host.log : "");
        return 1;
    }
    const char *at = strstr(host.log, "serving HTTP on 127.0.0.1:");
    port = (unsigned)strtoul(at + strlen("serving HTTP on 127.0.0.1:"), NULL, 10);
    const char *threads = strstr(at, "(");
    int nthreads = threads ? atoi(threads + 1) : 0;
    const char *handlers = threads ? strstr(threads, ", ") : NULL;
    int nhandlers = handlers ? atoi(handlers + 2) : 0;

    measure(0.5); /* warm-up */
    result quiet = measure(secs);
    long rss_quiet = proc_status(host.pid, "VmRSS:"), threads_quiet = proc_status(host.pid, "Threads:");

    uint64_t t0 = now_ns();
    int idle_ok = open_idle();
    for (int i = 0; i < TRICKLING; i++)
        trickle_open(i);
    double open_s = (double)(now_ns() - t0) / 1e9;
    pthread_t attacker;
    atomic_store(&stop_attack, false);
    pthread_create(&attacker, NULL, attack_main, NULL);
    nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
    long rss_loaded = proc_status(host.pid, "VmRSS:"), threads_loaded = proc_status(host.pid, "Threads:");
    result loaded = measure(loaded_secs);
    atomic_store(&stop_attack, true);
    pthread_join(attacker, NULL);
    int idle_alive = 0;
    char b;
    for (int i = 0; i < IDLE; i++) {
        if (idle_fds[i] >= 0 && recv(idle_fds[i], &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN)
            idle_alive++;
        if (idle_fds[i] >= 0)
            close(idle_fds[i]);
    }
    for (int i = 0; i < TRICKLING; i++)
        if (trickle_fds[i] >= 0)
            close(trickle_fds[i]);
    mct_finish(&host, SIGTERM);
    free(host.log);
    unlink(cfg);
    rmdir(dir);

    double ratio = quiet.rate > 0 ? loaded.rate / quiet.rate : 0;
    bool met = ratio >= 0.8 && loaded.p99 < 10000000u;
    printf("HTTP under hostile connections: mchost on loopback (%d event threads, %d handler threads%s), "
           "%d keep-alive clients, GET of a module resource, %.0f s quiet, %.0f s loaded\n",
           nthreads, nhandlers, nhandlers ? "" : ": handlers on the event threads", CLIENTS, secs, loaded_secs);
    printf("  %-34s %9.0f req/s   p50 %6.3f ms   p99 %6.3f ms   max %7.3f ms   errors %d\n", "quiet", quiet.rate,
           (double)quiet.p50 / 1e6, (double)quiet.p99 / 1e6, (double)quiet.max / 1e6, quiet.errors);
    printf("  %-34s %9.0f req/s   p50 %6.3f ms   p99 %6.3f ms   max %7.3f ms   errors %d\n",
           "with 5000 idle + 1000 trickling", loaded.rate, (double)loaded.p50 / 1e6, (double)loaded.p99 / 1e6,
           (double)loaded.max / 1e6, loaded.errors);
    printf("  loaded/quiet rate %.1f%%; %d of %d idle connections opened (%d still open at the end), "
           "opened in %.1f s; %lu trickling connections re-opened after being dropped\n",
           ratio * 100, idle_ok, IDLE, idle_alive, open_s, (unsigned long)atomic_load(&reopened));
    printf("  mchost: %ld threads and %.1f MiB resident quiet, %ld threads and %.1f MiB with the 6000 connections open\n",
           threads_quiet, (double)rss_quiet / 1024, threads_loaded, (double)rss_loaded / 1024);
    printf("  target (>= 80%% of the quiet rate, p99 < 10 ms): %s\n", met ? "met" : "NOT met");
    return 0;
}
