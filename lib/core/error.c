/* Error names and messages, and the library version.
 * The tables follow the MC_E* enum in modcache/common.h; codes are stable. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} mc__errors[] = {
    {MC_OK, "MC_OK", "success"},
    {MC_EINVAL, "MC_EINVAL", "invalid argument"},
    {MC_ENOMEM, "MC_ENOMEM", "out of memory"},
    {MC_ENOENT, "MC_ENOENT", "no such key"},
    {MC_EEXIST, "MC_EEXIST", "key already present"},
    {MC_E2BIG, "MC_E2BIG", "key or value too large"},
    {MC_ERANGE, "MC_ERANGE", "output buffer too small"},
    {MC_EPARSE, "MC_EPARSE", "malformed input"},
    {MC_EBUSY, "MC_EBUSY", "resource busy"},
    {MC_ETIMEDOUT, "MC_ETIMEDOUT", "timed out"},
    {MC_ECANCELED, "MC_ECANCELED", "operation canceled"},
    {MC_EIO, "MC_EIO", "input/output error"},
    {MC_ENOTSUP, "MC_ENOTSUP", "operation not supported"},
};

const char *mc_strerror(int code)
{
    for (size_t i = 0; i < sizeof mc__errors / sizeof mc__errors[0]; i++)
        if (mc__errors[i].code == code)
            return mc__errors[i].text;
    return "unknown error";
}

const char *mc_err_name(int code)
{
    for (size_t i = 0; i < sizeof mc__errors / sizeof mc__errors[0]; i++)
        if (mc__errors[i].code == code)
            return mc__errors[i].name;
    return "MC_E?";
}

const char *mc_version(void) { return MC_VERSION_STRING; }

int mc_version_number(void) { return MC_VERSION_NUMBER; }

int mc__error_set(mc_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
