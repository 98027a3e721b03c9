/* Runs the mchost program as a process: serves a module over loopback, answers the admin API
 * and metrics, reloads cache factors on SIGHUP, stops cleanly on SIGTERM; --check and errors. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    write_file(tok_path, "t0ken\n");
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
    assert_non_null(strstr(out, "modcache_cache_max_size{cache=\"mod_good.lookup\"} 20\n")); /* 10 x 2.0 */
    assert_int_equal(get(port, "/_modcache/admin/v1/caches", NULL, out, sizeof out), 401);
    assert_int_equal(get(port, "/_modcache/admin/v1/caches", "Authorization: Bearer t0ken\r\n", out, sizeof out), 200);
    assert_non_null(strstr(out, "\"name\": \"mod_good.lookup\""));

    /* SIGHUP applies the file's new factor. */
    write_config(3.0);
    kill(pid, SIGHUP);
    assert_true(wait_for(errfd, "cache factors reloaded"));
    assert_int_equal(get(port, "/metrics", NULL, out, sizeof out), 200);
    assert_non_null(strstr(out, "modcache_cache_max_size{cache=\"mod_good.lookup\"} 30\n"));

    kill(pid, SIGTERM);
    assert_int_equal(finish(pid, errfd), 0);
    assert_non_null(strstr(proc.log, "SIGTERM: shutting down"));
    assert_non_null(strstr(proc.log, "[mod_good] fini"));
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
        cmocka_unit_test(test_check_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
