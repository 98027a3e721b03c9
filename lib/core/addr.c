/* host:port parsing (addr.h). Ports are ASCII digits only: strtoul would accept a sign,
 * spaces and, through the locale, nothing else, but "+80" or " 80" are not ports. */
#include "core/addr.h"

#include <string.h>

static int mc__port(const char *p, bool allow_zero, unsigned *out, const char **why)
{
    if (!*p) {
        *why = "expected a port after ':'";
        return -1;
    }
    unsigned long v = 0;
    for (const char *c = p; *c; c++) {
        if (*c < '0' || *c > '9') {
            *why = "the port must be ASCII digits";
            return -1;
        }
        v = v * 10 + (unsigned long)(*c - '0');
        if (v > 65535) {
            *why = "the port must be from 1 to 65535";
            return -1;
        }
    }
    if (v == 0 && !allow_zero) {
        *why = "the port must be from 1 to 65535";
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

bool mc__host_name_ok(const char *host)
{
    if (!host || !*host)
        return false;
    for (const char *c = host; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                  *c == '-' || *c == '.' || *c == ':';
        if (!ok)
            return false;
    }
    return true;
}

int mc__hostport_split(const char *s, unsigned default_port, bool allow_zero, char *host, size_t hostcap,
                       unsigned *port, const char **why)
{
    const char *hs = s, *he, *ps = NULL;
    if (!s || !*s) {
        *why = "expected host:port";
        return -1;
    }
    if (*s == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (!he) {
            *why = "missing ']' after an IPv6 address";
            return -1;
        }
        if (he[1] == ':')
            ps = he + 2;
        else if (he[1]) {
            *why = "expected ':' and a port after ']'";
            return -1;
        }
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            *why = "an IPv6 address must be written [address]:port";
            return -1;
        }
        he = colon ? colon : s + strlen(s);
        ps = colon ? colon + 1 : NULL;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0) {
        *why = "expected a host before the port";
        return -1;
    }
    if (hl >= hostcap) {
        *why = "the host name is too long";
        return -1;
    }
    memcpy(host, hs, hl);
    host[hl] = 0;
    if (!mc__host_name_ok(host)) {
        *why = "the host has characters other than letters, digits, '-', '.' and ':'";
        return -1;
    }
    if (!ps) {
        if (!default_port) {
            *why = "expected host:port";
            return -1;
        }
        *port = default_port;
        return 0;
    }
    return mc__port(ps, allow_zero, port, why);
}
