/* Runs the mchost program as a process: serves a module over loopback, answers the admin API
 * and metrics, reloads cache factors on SIGHUP, stops cleanly on SIGTERM; --check and errors. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static char dir[] = "/tmp/mchost-test-XXXXXX";
static char cfg_path[256], tok_path[256];
static char errbuf[65536];
static size_t errlen;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

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

/* Read the child's stderr until `needle` shows up (or 10 s pass). */
static bool wait_for(int fd, const char *needle)
{
    for (int i = 0; i < 200 && !strstr(errbuf, needle); i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) {
            ssize_t n = read(fd, errbuf + errlen, sizeof errbuf - 1 - errlen);
            if (n <= 0)
                break;
            errlen += (size_t)n;
            errbuf[errlen] = 0;
        }
    }
    return strstr(errbuf, needle) != NULL;
}

static int get(unsigned port, const char *path, const char *headers, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", path,
                     headers ? headers : "");
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = read(fd, out + got, cap - 1 - got)) > 0)
        got += (size_t)r;
    out[got] = 0;
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    return status;
}

static pid_t spawn(const char *const *args, int *errfd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execv(MCHOST, (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *errfd = p[0];
    errlen = 0;
    errbuf[0] = 0;
    return pid;
}

static int finish(pid_t pid, int errfd)
{
    int status;
    waitpid(pid, &status, 0);
    wait_for(errfd, "\x01"); /* drain what is left */
    close(errfd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
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
    sscanf(strstr(errbuf, "serving HTTP on 127.0.0.1:") + strlen("serving HTTP on 127.0.0.1:"), "%u", &port);
    assert_true(port > 0);
    assert_non_null(strstr(errbuf, "[mod_good] init ttl_ms=7200000"));

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
    assert_non_null(strstr(errbuf, "SIGTERM: shutting down"));
    assert_non_null(strstr(errbuf, "[mod_good] fini"));
}

static void test_check_and_errors(void **state)
{
    (void)state;
    int errfd;
    /* --check loads the modules and exits without serving. */
    pid_t pid = spawn((const char *[]){MCHOST, "--check", "-c", cfg_path, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 0);
    assert_null(strstr(errbuf, "serving HTTP"));
    assert_non_null(strstr(errbuf, "[mod_good] fini"));

    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    write_file(bad, "server:\n  listen: 127.0.0.1:0\nmodules:\n  - module: /nonexistent/x.so\n");
    pid = spawn((const char *[]){MCHOST, "--check", "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(errbuf, "mchost: modules[0].module: /nonexistent/x.so: cannot load"));
    assert_non_null(strstr(errbuf, "bad.yaml:4:13)"));

    write_file(bad, "sever: {}\n");
    pid = spawn((const char *[]){MCHOST, "-c", bad, NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(errbuf, "mchost: sever: unknown key"));

    pid = spawn((const char *[]){MCHOST, "--bogus", NULL}, &errfd);
    assert_int_equal(finish(pid, errfd), 2);
    assert_non_null(strstr(errbuf, "usage: mchost"));
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
