/* Runs the mchost program as a process: serves a module over loopback, answers the admin API
 * and metrics, reloads cache factors on SIGHUP, stops cleanly on SIGTERM; --check and errors. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proc.h"

static char dir[] = "/tmp/mchost-test-XXXXXX";
static char cfg_path[256], tok_path[256];
static mct_proc proc; /* the mchost being run; its output (stdout and stderr) in proc.log */

static void write_file(const char *path, const char *text) { assert_int_equal(mct_write_file(path, text), 0); }

static void write_config(double factor)
{
    char text[1024];
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n  admin_token_file: %s\n"
             "caches:\n  global_factor: %.1f\n"
             "modules:\n  - module: %s/mod_good.so\n    config: {ttl: 2h}\n",
             tok_path, factor, MODULE_DIR);
    write_file(cfg_path, text);
}

static bool wait_for(int fd, const char *needle)
{
    (void)fd;
    return mct_wait_for(&proc, 0, needle, 10000);
}

static int get(unsigned port, const char *path, const char *headers, char *out, size_t cap)
{
    return mct_http(port, "GET", path, headers, NULL, out, cap);
}

static pid_t spawn(const char *const *args, int *errfd)
{
    free(proc.log); /* the previous run's output */
    assert_int_equal(mct_spawn(&proc, args, NULL), 0);
    *errfd = proc.outfd;
    return proc.pid;
}

static int finish(pid_t pid, int errfd)
{
    (void)pid;
    (void)errfd;
    return mct_finish(&proc, 0);
}

static void test_serve_reload_stop(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(cfg_path, sizeof cfg_path, "%s/host.yaml", dir);
    snprintf(tok_path, sizeof tok_path, "%s/admin.token", dir);
    write_file(tok_path, "t0ken-for-mchost-tests\n");
    assert_int_equal(chmod(tok_path, 0600), 0);
    write_config(2.0);
    int errfd;
    pid_t pid = spawn((const char *[]){MCHOST, "-c", cfg_path, NULL}, &errfd);
    assert_true(wait_for(errfd, "serving HTTP on 127.0.0.1:"));
    unsigned port = 0;
    sscanf(strstr(proc.log, "serving HTTP on 127.0.0.1:") + strlen("serving HTTP on 127.0.0.1:"), "%u", &port);
    assert_true(port > 0);
    assert_non_null(strstr(proc.log, "[mod_good] init ttl_ms=7200000"));

    static char out[65536];
    assert_int_equal(get(port, "/metrics", NULL, out, sizeof out), 200);
    assert_non_null(strstr(out, "modcache_cache_max_entries{cache=\"mod_good.lookup\"} 20\n")); /* 10 x 2.0 */
    assert_int_equal(get(port, "/_modcache/admin/v1/caches", NULL, out, sizeof out), 401);
    assert_int_equal(get(port, "/_modcache/admin/v1/caches", "Authorization: Bearer t0ken-for-mchost-tests\r\n", out, sizeof out), 200);
    assert_non_null(strstr(out, "\"name\": \"mod_good.lookup\""));

    /* SIGHUP applies the file's new factor. */
    write_config(3.0);
    kill(pid, SIGHUP);
    assert_true(wait_for(errfd, "cache factors reloaded"));
    assert_int_equal(get(port, "/metrics", NULL, out, sizeof out), 200);
    assert_non_null(strstr(out, "modcache_cache_max_entries{cache=\"mod_good.lookup\"} 30\n"));

    kill(pid, SIGTERM);
    assert_int_equal(finish(pid, errfd), 0);
    assert_non_null(strstr(proc.log, "SIGTERM: shutting down"));
    assert_non_null(strstr(proc.log, "[mod_good] fini"));
}

/* mchost raises its open-files limit for max_connections (default 10,000) up to the hard limit;
 * when the hard limit is lower it says so, and the server lowers its connection limit to fit. */
static void test_open_files_limit(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 10512) {
        print_message("skipped: the hard open-files limit %llu is below 10512 (ulimit -Hn)\n",
                      (unsigned long long)rl.rlim_max);
        skip();
    }
    char cmd[700];
    int errfd;
    snprintf(cmd, sizeof cmd, "ulimit -S -n 200 && exec %s -c %s", MCHOST, cfg_path);
    pid_t pid = spawn((const char *[]){"/bin/sh", "-c", cmd, NULL}, &errfd);
    assert_true(wait_for(errfd, "serving HTTP on 127.0.0.1:"));
    assert_non_null(strstr(proc.log, "info [host] open-files limit raised from 200 to 10512"));
    assert_non_null(strstr(proc.log, "up to 10000 connections)"));
    kill(pid, SIGTERM);
    assert_int_equal(finish(pid, errfd), 0);

    snprintf(cmd, sizeof cmd, "ulimit -S -n 400 && ulimit -H -n 400 && exec %s -c %s", MCHOST, cfg_path);
    pid = spawn((const char *[]){"/bin/sh", "-c", cmd, NULL}, &errfd);
    assert_true(wait_for(errfd, "serving HTTP on 127.0.0.1:"));
    assert_non_null(strstr(proc.log, "warn [host] open-files limit 400 (hard limit 400) is below the 10512 that "
                                     "server.max_connections 10000 needs"));
    assert_non_null(strstr(proc.log, "max_connections 10000 lowered to "));
    unsigned lowered = 0;
    sscanf(strstr(proc.log, "max_connections 10000 lowered to ") + strlen("max_connections 10000 lowered to "), "%u",
           &lowered);
    assert_true(lowered > 0 && lowered < 400);
    char want[64];
    snprintf(want, sizeof want, "up to %u connections)", lowered);
    assert_non_null(strstr(proc.log, want));
    kill(pid, SIGTERM);
    assert_int_equal(finish(pid, errfd), 0);
}

/* True when every line of the captured output is a log line of the given format: RFC 3339 UTC
 * with milliseconds first (text), or the JSON object's "time"; *nlines counts them. */
static bool lines_timestamped(const char *log, bool json, size_t *nlines)
{
    *nlines = 0;
    for (const char *l = log; *l;) {
        const char *eol = strchr(l, '\n');
        if (!eol)
            break;
        /* start-up errors before the config is read, and --check's report on stdout */
        if (!strncmp(l, "mchost:", 7) || memmem(l, (size_t)(eol - l), ": configuration and ", 20)) {
            l = eol + 1;
            continue;
        }
        const char *ts = l;
        if (json) {
            if (strncmp(l, "{\"time\":\"", 9) != 0 || eol[-1] != '}' || !strstr(l, "\"component\":\""))
                return false;
            ts = l + 9;
        }
        int y, mo, d, h, mi, sec, ms;
        char z;
        if (sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &sec, &ms, &z) != 8 || z != 'Z' ||
            ts[23] != 'Z' || y < 2020 || mo < 1 || mo > 12)
            return false;
        (*nlines)++;
        l = eol + 1;
    }
    return true;
}

/* server.log_level, server.log_format and --log-level (which wins over the file). */
static void test_log_settings(void **state)
{
    (void)state;
    char cfg[300], text[1024];
    snprintf(cfg, sizeof cfg, "%s/log.yaml", dir);
    int errfd;
    size_t n;
    snprintf(text, sizeof text,
             "server:\n  listen: 127.0.0.1:0\n  log_format: json\n"
             "modules:\n  - module: %s/mod_good.so\n    config: {ttl: 2h}\n", MODULE_DIR);
    write_file(cfg, text);
    pid_t pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    if (!lines_timestamped(proc.log, true, &n))
        fail_msg("not all lines are timestamped JSON:\n%s", proc.log);
    if (n < 3)
        fail_msg("%zu lines:\n%s", n, proc.log);
    assert_non_null(strstr(proc.log, "\"level\":\"info\",\"component\":\"host\",\"message\":\"loaded module mod_good from "));
    assert_non_null(strstr(proc.log, "\"level\":\"info\",\"component\":\"mod_good\",\"message\":\"init ttl_ms=7200000"));
    /* warn and above: mod_good's fini warns about its late registration, nothing at info. */
    pid = spawn((const char *[]){MCHOST, "--check", "--log-level", "warn", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_null(strstr(proc.log, "\"level\":\"info\""));
    assert_non_null(strstr(proc.log, "\"level\":\"warn\",\"component\":\"mod_good\""));

    snprintf(text, sizeof text,
             "server:\n  log_level: error\n  log_format: text\n"
             "modules:\n  - module: %s/mod_good.so\n", MODULE_DIR);
    write_file(cfg, text);
    pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_null(strstr(proc.log, "[host]"));
    assert_null(strstr(proc.log, "[mod_good]"));
    pid = spawn((const char *[]){MCHOST, "--log-level", "debug", "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_true(lines_timestamped(proc.log, false, &n));
    assert_true(n >= 3);
    assert_non_null(strstr(proc.log, "Z info [host] loaded module mod_good from "));

    /* Unknown values are refused with their position; so is a bad --log-level. */
    write_file(cfg, "server:\n  log_level: loud\n");
    pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "server.log_level: loud: expected debug, info, warn or error"));
    assert_non_null(strstr(proc.log, "log.yaml:2:14)"));
    write_file(cfg, "server:\n  log_format: xml\n");
    pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "server.log_format: xml: expected text or json"));
    pid = spawn((const char *[]){MCHOST, "--log-level", "loud", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "mchost: --log-level loud"));

    /* A module's lines at each level: debug is off by default, on with --log-level debug (or
     * server.log_level: debug); warn keeps warn and error only. */
    snprintf(text, sizeof text, "server:\n  listen: 127.0.0.1:0\nmodules:\n  - module: %s/mod_log.so\n", MODULE_DIR);
    write_file(cfg, text);
    pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_true(lines_timestamped(proc.log, false, &n));
    assert_null(strstr(proc.log, "level-probe debug"));
    assert_non_null(strstr(proc.log, "Z info [mod_log] level-probe info\n"));
    assert_non_null(strstr(proc.log, "Z error [mod_log] level-probe error\n"));
    pid = spawn((const char *[]){MCHOST, "--check", "--log-level", "debug", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_true(lines_timestamped(proc.log, false, &n));
    assert_non_null(strstr(proc.log, "Z debug [mod_log] level-probe debug\n"));
    assert_non_null(strstr(proc.log, "Z info [mod_log] level-probe info\n"));
    snprintf(text, sizeof text, "server:\n  listen: 127.0.0.1:0\n  log_level: debug\n  log_format: json\n"
             "modules:\n  - module: %s/mod_log.so\n", MODULE_DIR);
    write_file(cfg, text);
    pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_true(lines_timestamped(proc.log, true, &n));
    assert_non_null(strstr(proc.log, "\"level\":\"debug\",\"component\":\"mod_log\",\"message\":\"level-probe debug\"}\n"));
    pid = spawn((const char *[]){MCHOST, "--check", "--log-level", "warn", "-c", cfg, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_null(strstr(proc.log, "level-probe debug"));
    assert_null(strstr(proc.log, "level-probe info"));
    assert_non_null(strstr(proc.log, "\"level\":\"warn\",\"component\":\"mod_log\",\"message\":\"level-probe warn\"}\n"));
    assert_non_null(strstr(proc.log, "\"level\":\"error\",\"component\":\"mod_log\",\"message\":\"level-probe error\"}\n"));
    unlink(cfg);
}

static void test_check_and_errors(void **state)
{
    (void)state;
    int errfd;
    /* --check loads the modules and exits without serving. */
    pid_t pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg_path, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_null(strstr(proc.log, "serving HTTP"));
    assert_non_null(strstr(proc.log, "[mod_good] fini"));

    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    write_file(bad, "server:\n  listen: 127.0.0.1:0\nmodules:\n  - module: /nonexistent/x.so\n");
    pid = spawn((const char *[]){MCHOST, "--check", "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "mchost: modules[0].module: /nonexistent/x.so: cannot load"));
    assert_non_null(strstr(proc.log, "bad.yaml:4:13)"));

    write_file(bad, "sever: {}\n");
    pid = spawn((const char *[]){MCHOST, "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "mchost: sever: unknown key"));

    /* --check checks what start-up checks, each fault with its file:line:column. */
    char text[1024], tok2[300];
    snprintf(tok2, sizeof tok2, "%s/other.token", dir);
    const struct {
        const char *yaml; /* %s: a token file path */
        const char *token; /* the token file's contents (NULL: no file) */
        mode_t mode;
        const char *want;
        const char *at; /* the position the message ends with (NULL: not checked) */
    } checks[] = {
        {"server:\n  listen: 127.0.0.1:99999\n", NULL, 0,
         "mchost: server.listen: 127.0.0.1:99999: the port must be from 1 to 65535 (", "bad.yaml:2:11)"},
        {"server:\n  listen: \"127.0.0.1:\uff18\uff10\uff10\uff18\"\n", NULL, 0, "the port must be ASCII digits (", "bad.yaml:2:11)"},
        {"server:\n  listen: localhost:8008\n", NULL, 0, "expected an IPv4 address such as 127.0.0.1", NULL},
        {"invalidation:\n  redis: {address: 'localhost:http'}\n", NULL, 0,
         "invalidation.redis.address: localhost:http: the port must be ASCII digits", NULL},
        {"invalidation:\n  backend: redis\n  redis: {address: 'redis:0'}\n", NULL, 0, "redis:0: the port must be from 1 to 65535", "bad.yaml:3:20)"},
        {"a: !!python/object:os.system x\n", NULL, 0, "bad.yaml:1:4: tag !!python/object:os.system is not allowed", NULL},
        {"server:\n  admin_token_file: %s\n", "t0ken-for-mchost-tests\n", 0644,
         "is readable or writable by group or others (mode 0644): chmod 600 ", NULL},
        {"server:\n  admin_token_file: %s\n", "t0ken-for-mchost-tests\n", 0660, "(mode 0660): chmod 600", NULL},
        {"server:\n  admin_token_file: %s\n", "t0ken-for-mchost-tests\n", 0602, "(mode 0602): chmod 600", NULL},
        {"server:\n  admin_token_file: %s\n", "k\n\x01\x02binary", 0600, "not printable ASCII", NULL},
        {"server:\n  admin_token_file: %s\n", "short\n", 0600, "shorter than 16", "bad.yaml:2:21)"},
        {"server:\n  admin_token_file: %s\n", "", 0600, "is empty", NULL},
        {"server:\n  admin_token_file: /nonexistent/admin.token\n", NULL, 0,
         "server.admin_token_file: cannot read /nonexistent/admin.token: No such file or directory (", "bad.yaml:2:21)"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        snprintf(text, sizeof text, checks[i].yaml, tok2);
        write_file(bad, text);
        if (checks[i].token) {
            write_file(tok2, checks[i].token);
            assert_int_equal(chmod(tok2, checks[i].mode), 0);
        }
        pid = spawn((const char *[]){MCHOST, "--check", "-c", bad, NULL}, &errfd);
        int st = finish(pid, errfd);
        if (st != 2 || !strstr(proc.log, checks[i].want) || (checks[i].at && !strstr(proc.log, checks[i].at)))
            fail_msg("check %zu: status %d, want 2 and '%s' in: %s", i, st, checks[i].want, proc.log);
        assert_null(strstr(proc.log, "OK"));
        unlink(tok2);
    }
    /* A bare Redis host means port 6379: accepted (--check never connects). */
    write_file(bad, "invalidation:\n  backend: redis\n  redis: {address: localhost}\n");
    pid = spawn((const char *[]){MCHOST, "--check", "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_non_null(strstr(proc.log, "configuration and 0 module(s) OK"));
    /* A 600-byte token is read whole (never cut), with its one trailing newline removed. */
    static char big[700];
    memset(big, 'T', 600);
    big[600] = '\n';
    big[601] = 0;
    write_file(tok2, big);
    assert_int_equal(chmod(tok2, 0600), 0);
    snprintf(text, sizeof text, "server:\n  admin_token_file: %s\n", tok2);
    write_file(bad, text);
    pid = spawn((const char *[]){MCHOST, "--check", "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    unlink(tok2);

    /* The listen port in use: the start-up error names the file's position too. */
    unsigned busy = mct_free_port();
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)busy)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1), 0);
    snprintf(text, sizeof text, "server:\n  listen: 127.0.0.1:%u\n", busy);
    write_file(bad, text);
    pid = spawn((const char *[]){MCHOST, "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "cannot listen"));
    assert_non_null(strstr(proc.log, "/bad.yaml:2:11)"));
    close(lfd);

    pid = spawn((const char *[]){MCHOST, "--bogus", NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(proc.log, "usage: mchost"));
    free(proc.log);
    proc.log = NULL;
    unlink(bad);
    unlink(cfg_path);
    unlink(tok_path);
    rmdir(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_reload_stop),
        cmocka_unit_test(test_open_files_limit),
        cmocka_unit_test(test_log_settings),
        cmocka_unit_test(test_check_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
