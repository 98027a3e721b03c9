/* Tests of the error model and version: every code has a name and a message, unknown codes
 * are reported as such, and the linked version matches the header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "modcache.h"
#include "core/addr.h"
#include "core/ratelog.h"

static void test_error_names(void **state)
{
    (void)state;
    const int codes[] = {MC_OK, MC_EINVAL, MC_ENOMEM, MC_ENOENT, MC_EEXIST, MC_E2BIG, MC_ERANGE,
                         MC_EPARSE, MC_EBUSY, MC_ETIMEDOUT, MC_ECANCELED, MC_EIO, MC_ENOTSUP};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_string_not_equal(mc_strerror(codes[i]), "unknown error");
        assert_string_not_equal(mc_err_name(codes[i]), "MC_E?");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(mc_strerror(codes[i]), mc_strerror(codes[j]));
    }
    assert_string_equal(mc_err_name(MC_ENOENT), "MC_ENOENT");
    assert_string_equal(mc_strerror(12345), "unknown error");
    assert_string_equal(mc_err_name(-999), "MC_E?");
}

static void test_version(void **state)
{
    (void)state;
    assert_string_equal(mc_version(), MC_VERSION_STRING);
    assert_int_equal(mc_version_number(), MC_VERSION_NUMBER);
    assert_int_equal(MC_VERSION_NUMBER, MC_VERSION_MAJOR * 10000 + MC_VERSION_MINOR * 100 + MC_VERSION_PATCH);
}

/* A repeating fault: one line when it starts, a count per interval while it lasts, the total
 * when it ends; then a new episode starts afresh. */
static void test_ratelog(void **state)
{
    (void)state;
    mc__ratelog rl;
    mc__ratelog_init(&rl);
    const uint64_t s = 1000000000u;
    uint64_t n = 0, total = 0, dur = 0;
    assert_false(mc__ratelog_end(&rl, 0, 0, &total, &dur)); /* nothing happened */
    assert_int_equal(mc__ratelog_hit(&rl, 100 * s, 10 * s, &n), MC__RATELOG_START);
    for (int i = 1; i < 227; i++) /* 226 more within 5 s: silent */
        assert_int_equal(mc__ratelog_hit(&rl, 100 * s + (uint64_t)i * s / 50, 10 * s, &n), MC__RATELOG_QUIET);
    assert_int_equal(mc__ratelog_hit(&rl, 110 * s, 10 * s, &n), MC__RATELOG_COUNT);
    assert_int_equal(n, 227); /* the 226 and this one */
    assert_int_equal(mc__ratelog_hit(&rl, 111 * s, 10 * s, &n), MC__RATELOG_QUIET);
    assert_false(mc__ratelog_end(&rl, 112 * s, 5 * s, &total, &dur)); /* not quiet long enough */
    assert_true(mc__ratelog_end(&rl, 116 * s, 5 * s, &total, &dur));
    assert_int_equal(total, 229);
    assert_int_equal(dur, 11 * s);
    assert_false(mc__ratelog_end(&rl, 117 * s, 0, &total, &dur)); /* once */
    assert_int_equal(mc__ratelog_hit(&rl, 200 * s, 10 * s, &n), MC__RATELOG_START);
    assert_true(mc__ratelog_end(&rl, 200 * s, 0, &total, NULL));
    assert_int_equal(total, 1);
    mc__ratelog_destroy(&rl);
}

/* host:port as the configuration writes it. */
static void test_hostport(void **state)
{
    (void)state;
    char h[64];
    unsigned port = 0;
    const char *why = NULL;
    assert_int_equal(mc__hostport_split("127.0.0.1:8008", 0, false, h, sizeof h, &port, &why), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(port, 8008);
    assert_int_equal(mc__hostport_split("redis.internal", 6379, false, h, sizeof h, &port, &why), 0);
    assert_int_equal(port, 6379);
    assert_int_equal(mc__hostport_split("[::1]:6380", 0, false, h, sizeof h, &port, &why), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(mc__hostport_split("[::1]", 6379, false, h, sizeof h, &port, &why), 0);
    assert_int_equal(mc__hostport_split("127.0.0.1:0", 0, true, h, sizeof h, &port, &why), 0);
    assert_int_equal(port, 0);
    const char *bad[] = {"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999", "127.0.0.1:-1",
                         "127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:0x50", ":80", "a b:80", "[::1", "[::1]x",
                         "::1:80", "127.0.0.1:\xef\xbc\x98\xef\xbc\x90", "h\xc3\xa9:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (mc__hostport_split(bad[i], 0, false, h, sizeof h, &port, &why) != -1)
            fail_msg("'%s' accepted", bad[i]);
    assert_int_equal(mc__hostport_split("127.0.0.1:65535", 0, false, h, sizeof h, &port, &why), 0);
    assert_int_equal(mc__hostport_split("127.0.0.1:00080", 0, false, h, sizeof h, &port, &why), 0);
    assert_int_equal(port, 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_ratelog),
        cmocka_unit_test(test_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
