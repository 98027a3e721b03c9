/* The admin token file: read whole and refused unless it is private to its owner and holds one
 * token of printable ASCII, so that a wrong file never becomes a short or cut token. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "modcache/host.h"

int mc_host_admin_token_read(const char *path, char **token, mc_error *err)
{
    if (!path || !token)
        return mc__error_set(err, MC_EINVAL, "invalid argument: NULL path or token");
    *token = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return mc__error_set(err, MC_EIO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mc__error_set(err, MC_EIO, "cannot read %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mc__error_set(err, MC_EINVAL, "%s is not a regular file", path);
    }
    if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
        close(fd);
        return mc__error_set(err, MC_EINVAL, "%s is readable or writable by group or others (mode %04o): chmod 600 %s",
                             path, (unsigned)(st.st_mode & 07777), path);
    }
    /* Read up to two bytes past the limit: a token of MC_ADMIN_TOKEN_MAX bytes and "\r\n". */
    char *buf = malloc(MC_ADMIN_TOKEN_MAX + 3);
    if (!buf) {
        close(fd);
        return mc__error_set(err, MC_ENOMEM, "out of memory");
    }
    size_t n = 0;
    while (n < MC_ADMIN_TOKEN_MAX + 3) {
        ssize_t got = read(fd, buf + n, MC_ADMIN_TOKEN_MAX + 3 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            close(fd);
            free(buf);
            return mc__error_set(err, MC_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    /* One trailing newline, as an editor or `echo` leaves it; nothing else is trimmed. */
    if (n && buf[n - 1] == '\n') {
        n--;
        if (n && buf[n - 1] == '\r')
            n--;
    }
    /* Bytes before length: a binary file is named as one, whatever its size. */
    int rc = 0;
    if (n == 0)
        rc = mc__error_set(err, MC_EINVAL, "%s is empty", path);
    else if (n > MC_ADMIN_TOKEN_MAX)
        rc = mc__error_set(err, MC_EINVAL, "%s: the token is longer than %d bytes", path, MC_ADMIN_TOKEN_MAX);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
            rc = mc__error_set(err, MC_EINVAL,
                               "%s: byte %zu of the token (0x%02x) is not printable ASCII (a token is one line of "
                               "characters from '!' to '~', no spaces)",
                               path, i + 1, (unsigned char)buf[i]);
    if (rc == 0 && n < MC_ADMIN_TOKEN_MIN)
        rc = mc__error_set(err, MC_EINVAL,
                           "%s: the token is %zu bytes, shorter than %d (make one with: head -c 32 /dev/urandom | base64)",
                           path, n, MC_ADMIN_TOKEN_MIN);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *token = buf;
    return 0;
}
