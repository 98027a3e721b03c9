/* Request paths normalised before routing and request checks, as nginx does: percent-escapes
 * decoded, "." and ".." segments resolved, repeated '/' merged; a path that climbs above the
 * root, holds an encoded NUL or a malformed escape is refused. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "host/host_internal.h"

static int mc__hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mc__http_path_normalize(const char *raw, size_t len, char **out)
{
    *out = NULL;
    /* An absolute-form target (RFC 9112 3.2.2): the path starts after the authority. */
    if ((len >= 7 && !strncasecmp(raw, "http://", 7)) || (len >= 8 && !strncasecmp(raw, "https://", 8))) {
        const char *a = memchr(raw, ':', len) + 3;
        const char *p = memchr(a, '/', len - (size_t)(a - raw));
        if (!p)
            return (*out = strdup("/")) ? 0 : MC_ENOMEM;
        len -= (size_t)(p - raw);
        raw = p;
    }
    if (len == 0 || raw[0] != '/')
        return MC_EINVAL;
    /* Decoded first, so that "%2e%2e" and "..%2f" are dot segments and separators like the
     * characters they encode: a check that reads the path sees what routing sees. */
    char *d = malloc(len + 1);
    if (!d)
        return MC_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (c == '%') {
            int h = i + 1 < len ? mc__hex(raw[i + 1]) : -1, l = i + 2 < len ? mc__hex(raw[i + 2]) : -1;
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(d);
                return MC_EINVAL;
            }
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == 0) {
            free(d);
            return MC_EINVAL;
        }
        d[n++] = c;
    }
    d[n] = 0;
    /* Segments resolved in place: `o` is the output length; each ".." drops back to the '/'
     * before the last output segment. */
    size_t o = 0;
    bool trailing = false;
    for (size_t i = 0; i < n;) {
        while (i < n && d[i] == '/')
            i++;
        size_t start = i;
        while (i < n && d[i] != '/')
            i++;
        size_t sl = i - start;
        trailing = i < n || sl == 0; /* a '/' after this segment, or the path ends on '/' */
        if (sl == 0)
            break;
        if (sl == 1 && d[start] == '.') {
            trailing = true;
            continue;
        }
        if (sl == 2 && d[start] == '.' && d[start + 1] == '.') {
            if (o == 0) {
                free(d);
                return MC_EINVAL; /* above the root */
            }
            while (o > 0 && d[o - 1] != '/')
                o--;
            o--; /* the '/' before the dropped segment */
            trailing = true;
            continue;
        }
        d[o++] = '/';
        memmove(d + o, d + start, sl);
        o += sl;
    }
    if (o == 0 || trailing)
        d[o++] = '/';
    d[o] = 0;
    *out = d;
    return 0;
}
