/* mchost: the module host daemon. Loads the YAML config and its modules, serves HTTP (module
 * resources, admin API, metrics), reloads cache factors on SIGHUP, stops cleanly on SIGINT/TERM. */
#include <modcache.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* Every line the host, its modules and its bus log: server.log_level / --log-level and
 * server.log_format (modcache/log.h). */
static mc_logger logger;

static void hlog(mc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hlog(mc_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mc_logger_write(&logger, level, "host", msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mchost -c FILE [--check] [--log-level LEVEL]\n"
               "\n"
               "Loads the configuration FILE and its modules, then serves HTTP until SIGINT or SIGTERM.\n"
               "  -c, --config FILE  the host's YAML configuration\n"
               "  --check            validate the configuration and load the modules, then exit\n"
               "  --log-level LEVEL  debug, info, warn or error (default: server.log_level, else info)\n"
               "  --version          print the version\n"
               "  --help             this text\n"
               "SIGHUP re-reads the caches: block and applies its cache factors.\n"
               "With caches: {snapshot: {path: FILE}}, persistent caches are saved at a clean stop and\n"
               "restored at start once the invalidation stream proves them current.\n"
               "With invalidation: {backend: redis}, invalidations reach every host reading the same\n"
               "Redis stream (see docs/fleet.md); administer hosts with mcctl.\n"
               "Exit status: 0 on a clean stop, 2 on a configuration or start-up error.\n");
}

static int fail(const mc_error *err)
{
    fprintf(stderr, "mchost: %s\n", err->message[0] ? err->message : mc_strerror(err->code));
    return 2;
}

/* The admin token file, checked (mc_host_admin_token_read), its fault at the file's position. */
static char *read_token(const mc_host_config *hc, mc_error *err)
{
    char *token = NULL;
    mc_error terr = {0};
    int rc = mc_host_admin_token_read(hc->admin_token_file, &token, &terr);
    if (rc != 0)
        mc_config_fail(hc->admin_token_node, err, rc, "%s", terr.message);
    return token;
}

/* Enough open files for max_connections (each connection is one descriptor) and the rest of
 * the process: the soft limit is raised up to the hard one; when even that is too low, say so
 * (the server then lowers its connection limit and says so too). */
static void raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    /* Each connection, up to 256 being answered 503 past the limit, and the rest of the process. */
    rlim_t want = (rlim_t)max_connections + 512;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return;
    rlim_t cur = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (rl.rlim_cur > cur && setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = cur;
    if (rl.rlim_cur < want)
        hlog(MC_LOG_WARN,
             "open-files limit %llu (hard limit %llu) is below the %llu that server.max_connections %u "
             "needs: raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit)",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max, (unsigned long long)want,
             max_connections);
    else if (rl.rlim_cur > cur)
        hlog(MC_LOG_INFO, "open-files limit raised from %llu to %llu", (unsigned long long)cur,
             (unsigned long long)rl.rlim_cur);
}

/* SIGHUP: the caches: block's factors again (global, then each named one). */
static void reload_factors(const char *path, mc_registry *reg)
{
    mc_error err = {0};
    mc_config *doc = NULL;
    mc_host_config hc;
    if (mc_config_load_file(path, &doc, &err) != 0 || mc_host_config_read(doc, &hc, &err) != 0) {
        hlog(MC_LOG_ERROR, "reload refused, keeping the running configuration: %s", err.message);
        if (doc)
            mc_config_free(doc);
        return;
    }
    /* As at start: MODCACHE_CACHE_FACTOR[_<NAME>] in the environment still win over the file. */
    int rc = mc_registry_reload_factors(reg, &hc.caches);
    if (rc != 0)
        hlog(MC_LOG_ERROR, "reload refused, keeping the running factors: %s", mc_strerror(rc));
    else
        hlog(MC_LOG_INFO, "cache factors reloaded from %s", path);
    free(hc.factors);
    mc_config_free(doc);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *level_arg = NULL;
    int check = 0;
    mc_logger_init(&logger);
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            level_arg = argv[++i];
            if (mc_log_level_parse(level_arg, &logger.min_level) != 0) {
                fprintf(stderr, "mchost: --log-level %s: expected debug, info, warn or error\n", level_arg);
                return 2;
            }
        } else if (!strcmp(argv[i], "--check")) {
            check = 1;
        } else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("mchost %s\n", mc_version());
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    /* Signals are taken by sigwait in this thread only: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    mc_error err = {0};
    mc_config *doc = NULL;
    mc_host_config hc;
    if (mc_config_load_file(path, &doc, &err) != 0 || mc_host_config_read(doc, &hc, &err) != 0) {
        mc_config_free(doc);
        return fail(&err);
    }
    logger.format = hc.log_format;
    if (!level_arg) /* the command line wins over the file */
        logger.min_level = hc.log_level;
    mc_registry *reg = NULL;
    int rc = mc_registry_create(&hc.caches, &reg);
    free(hc.factors);
    if (rc != 0) {
        err.code = rc;
        snprintf(err.message, sizeof err.message, "caches: %s", mc_strerror(rc));
        mc_config_free(doc);
        return fail(&err);
    }
    mc_host *host = NULL;
    mc_bus *bus = NULL;
    mc_host_snapshot *snap = NULL;
    char *token = NULL;
    int status = 0;
    if (hc.snapshot_path && !check) {
        /* Read before the bus starts: the bus resumes from the position it saved. */
        mc_host_snapshot_options so;
        mc_host_snapshot_options_init(&so);
        so.path = hc.snapshot_path;
        so.interval_ns = hc.snapshot_interval_ns;
        so.trust_without_bus = hc.snapshot_trust_without_bus;
        so.registry = reg;
        so.log = mc_logger_host_fn;
        so.log_ud = &logger;
        if ((rc = mc_host_snapshot_open(&so, &snap)) != 0) {
            err.code = rc;
            snprintf(err.message, sizeof err.message, "caches.snapshot: %s", mc_strerror(rc));
            status = fail(&err);
            goto out;
        }
    }
    if (hc.backend == MC_BUS_REDIS && !check) {
        /* Started before the modules, so that no invalidation they make is missed. */
        mc_bus_options bo;
        mc_bus_options_init(&bo);
        bo.address = hc.redis_address;
        bo.stream = hc.redis_stream;
        bo.maxlen = hc.redis_maxlen;
        bo.instance = hc.instance_name;
        bo.registry = reg;
        bo.announce_interval_ms = (unsigned)(hc.redis_announce_interval_ns / 1000000);
        bo.log = mc_logger_bus_fn;
        bo.log_ud = &logger;
        bo.queue_limit = hc.redis_queue_limit;
        bo.backoff_min_ms = (unsigned)(hc.redis_reconnect_min_ns / 1000000);
        bo.backoff_max_ms = (unsigned)(hc.redis_reconnect_max_ns / 1000000);
        bo.max_staleness_ms = (unsigned)(hc.max_staleness_ns / 1000000);
        bo.resume = mc_host_snapshot_resume_position(snap);
        if (mc_bus_start(&bo, &bus, &err) != 0) {
            status = fail(&err);
            goto out;
        }
        hlog(MC_LOG_INFO, "invalidation bus: redis %s, stream %s, instance %s", hc.redis_address, hc.redis_stream,
             hc.instance_name);
    }
    mc_host_options ho;
    mc_host_options_init(&ho);
    ho.registry = reg;
    ho.bus = bus;
    ho.snapshot = snap;
    ho.log = mc_logger_host_fn;
    ho.log_ud = &logger;
    if ((rc = mc_host_create(&ho, &host)) != 0) {
        err.code = rc;
        snprintf(err.message, sizeof err.message, "%s", mc_strerror(rc));
        status = fail(&err);
        goto out;
    }
    /* The token before the modules: a bad file is found without running any module code. */
    if (hc.admin_token_file && !(token = read_token(&hc, &err))) {
        status = fail(&err);
        goto out;
    }
    if (mc_host_load_modules(host, hc.modules, &err) != 0) {
        status = fail(&err);
        goto out;
    }
    if (check) {
        printf("%s: configuration and %zu module(s) OK\n", path, mc_host_module_count(host));
        goto out;
    }
    /* The modules' functions are registered: their key shapes go beside the stream now, not
     * an announcement interval later (mcctl --redis checks key lengths against them). */
    mc_bus_announce(bus);
    /* The saved entries, replayed against the stream, before anything is served. */
    if (snap)
        mc_host_snapshot_restore(snap, bus);
    mc_http_options http;
    mc_http_options_init(&http);
    http.listen = hc.listen;
    http.admin_token = token;
    http.threads = hc.server_threads;
    http.handler_threads = hc.server_handler_threads;
    http.max_connections = hc.max_connections;
    http.max_connections_per_address = hc.max_connections_per_address;
    http.request_header_timeout_ns = hc.request_header_timeout_ns;
    http.idle_timeout_ns = hc.idle_timeout_ns;
    raise_nofile(hc.max_connections ? hc.max_connections : 10000);
    mc_error herr = {0};
    if (mc_host_http_start_v2(host, &http, &herr) != 0) {
        if (hc.listen_node)
            mc_config_fail(hc.listen_node, &err, herr.code, "%s", herr.message);
        else
            err = herr;
        status = fail(&err);
        goto out;
    }
    mc_registry_start(reg);
    if (snap && (rc = mc_host_snapshot_start(snap, bus)) != 0)
        hlog(MC_LOG_ERROR, "snapshot writer not started: %s", mc_strerror(rc));
    for (;;) {
        int sig = 0;
        sigwait(&sigs, &sig);
        if (sig == SIGHUP) {
            reload_factors(path, reg);
            continue;
        }
        hlog(MC_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        if (snap) {
            /* After the last request, before the modules' functions go: the final snapshot. */
            mc_host_http_stop(host);
            mc_host_snapshot_stop(snap);
            mc_host_snapshot_write(snap, bus);
        }
        break;
    }
out:
    mc_host_snapshot_stop(snap); /* no periodic write while the modules go */
    /* Server first (requests in progress finish), then modules in reverse order; the bus after
     * them (their fini may still invalidate), the registry last (the bus applies to it). */
    mc_host_destroy(host);
    mc_bus_stop(bus);
    mc_host_snapshot_destroy(snap);
    mc_registry_destroy(reg);
    free(token);
    mc_config_free(doc);
    return status;
}
