/* Tests of the error model and version: every code has a name and a message, unknown codes
 * are reported as such, and the linked version matches the header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "modcache.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_names),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
