/* host:port strings as the configuration writes them (the HTTP listen address, the Redis
 * address): one parser, so that --check, start-up and the tools agree on what is valid. */
#ifndef MC_CORE_ADDR_H
#define MC_CORE_ADDR_H

#include "core/internal_api.h"

#include <stdbool.h>
#include <stddef.h>

/* Split "host:port" into host (NUL-terminated, at most hostcap - 1 bytes) and port. The port is
 * ASCII digits only, 1 to 65535 (0 too when allow_zero); without ":port", default_port is used
 * when it is not 0, otherwise the string is refused. "[v6]:port" is accepted with the brackets
 * removed. Returns 0, or -1 with *why set to a static explanation. */
MC_INTERNAL int mc__hostport_split(const char *s, unsigned default_port, bool allow_zero, char *host, size_t hostcap,
                       unsigned *port, const char **why);

/* True when `host` is a plausible DNS name or IP literal: letters, digits, '-', '.', and ':'
 * for IPv6 literals; not empty. */
MC_INTERNAL bool mc__host_name_ok(const char *host);

#endif
