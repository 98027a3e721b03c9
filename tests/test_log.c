/* The host's log lines (modcache/log.h): RFC 3339 timestamps with milliseconds, level and
 * component, text and JSON, the minimum level, long and hostile messages. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <modcache.h>

/* 2026-12-02T01:20:33.123Z */
static const struct timespec when = {.tv_sec = 1796174433, .tv_nsec = 123999999};

static void test_text(void **state)
{
    (void)state;
    char buf[256];
    size_t n = mc_log_format_line(buf, sizeof buf, MC_LOG_TEXT, MC_LOG_INFO, NULL, "serving", &when);
    assert_string_equal(buf, "2026-12-02T01:20:33.123Z info [host] serving\n");
    assert_int_equal(n, strlen(buf));
    mc_log_format_line(buf, sizeof buf, MC_LOG_TEXT, MC_LOG_WARN, "example_dept", "two\nlines\tand tab", &when);
    assert_string_equal(buf, "2026-12-02T01:20:33.123Z warn [example_dept] two lines and tab\n");
    /* Now, when no time is given: the same shape. */
    mc_log_format_line(buf, sizeof buf, MC_LOG_TEXT, MC_LOG_ERROR, "bus", "x", NULL);
    assert_int_equal(strlen(buf), strlen("2026-12-02T01:20:33.123Z error [bus] x\n"));
    assert_true(buf[4] == '-' && buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z');
}

static void test_json(void **state)
{
    (void)state;
    char buf[256];
    mc_log_format_line(buf, sizeof buf, MC_LOG_JSON, MC_LOG_DEBUG, "mod\"x", "say \"hi\"\\ \n\x01", &when);
    assert_string_equal(buf, "{\"time\":\"2026-12-02T01:20:33.123Z\",\"level\":\"debug\",\"component\":\"mod\\\"x\","
                             "\"message\":\"say \\\"hi\\\"\\\\ \\n\\u0001\"}\n");
}

/* A message longer than a line: cut, with the newline kept and, in JSON, the object closed
 * and no escape cut in half. */
static void test_long(void **state)
{
    (void)state;
    char msg[5000], buf[300];
    for (size_t i = 0; i < sizeof msg - 1; i++)
        msg[i] = i % 7 ? 'a' : '"';
    msg[sizeof msg - 1] = 0;
    size_t n = mc_log_format_line(buf, sizeof buf, MC_LOG_TEXT, MC_LOG_INFO, "host", msg, &when);
    assert_true(n < sizeof buf && n > 200);
    assert_int_equal(buf[n - 1], '\n');
    assert_int_equal(strlen(buf), n);
    for (size_t cap = 100; cap < 300; cap++) {
        n = mc_log_format_line(buf, cap, MC_LOG_JSON, MC_LOG_INFO, "host", msg, &when);
        assert_true(n < cap);
        assert_string_equal(buf + n - 3, "\"}\n");
        /* the message's quotes are all escaped: count the backslashes before the closing quote */
        size_t bs = 0;
        for (size_t i = n - 4; buf[i] == '\\'; i--)
            bs++;
        assert_int_equal(bs % 2, 0);
    }
}

static void test_levels_and_fd(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    mc_logger lg;
    mc_logger_init(&lg);
    assert_int_equal(lg.fd, 2);
    assert_int_equal(lg.min_level, MC_LOG_INFO);
    assert_int_equal(lg.format, MC_LOG_TEXT);
    lg.fd = p[1];
    lg.min_level = MC_LOG_WARN;
    mc_logger_write(&lg, MC_LOG_INFO, "host", "dropped");
    mc_logger_write(&lg, MC_LOG_DEBUG, "host", "dropped too");
    mc_logger_host_fn(&lg, MC_LOG_WARN, NULL, "kept");
    mc_logger_bus_fn(&lg, 3, "link lost");
    lg.format = MC_LOG_JSON;
    mc_logger_write(&lg, MC_LOG_ERROR, "m", "j");
    close(p[1]);
    char out[1024] = {0};
    size_t len = 0;
    for (ssize_t r; (r = read(p[0], out + len, sizeof out - 1 - len)) > 0;)
        len += (size_t)r;
    close(p[0]);
    assert_null(strstr(out, "dropped"));
    char *l1 = strstr(out, " warn [host] kept\n");
    char *l2 = strstr(out, " error [bus] link lost\n");
    char *l3 = strstr(out, "\"level\":\"error\",\"component\":\"m\",\"message\":\"j\"}\n");
    assert_true(l1 && l2 && l3 && l1 < l2 && l2 < l3);
}

static void test_parse(void **state)
{
    (void)state;
    mc_log_level lv = MC_LOG_ERROR;
    assert_int_equal(mc_log_level_parse("debug", &lv), 0);
    assert_int_equal(lv, MC_LOG_DEBUG);
    assert_int_equal(mc_log_level_parse("WARNING", &lv), 0);
    assert_int_equal(lv, MC_LOG_WARN);
    assert_int_equal(mc_log_level_parse("verbose", &lv), MC_EINVAL);
    assert_int_equal(lv, MC_LOG_WARN);
    mc_log_format f = MC_LOG_TEXT;
    assert_int_equal(mc_log_format_parse("json", &f), 0);
    assert_int_equal(f, MC_LOG_JSON);
    assert_int_equal(mc_log_format_parse("xml", &f), MC_EINVAL);
    assert_string_equal(mc_log_level_name(MC_LOG_WARN), "warn");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),   cmocka_unit_test(test_json),  cmocka_unit_test(test_long),
        cmocka_unit_test(test_levels_and_fd), cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
