/* Log lines with an RFC 3339 timestamp (UTC, milliseconds), level and component, as text or
 * JSON, each written with a single write(2) so that concurrent lines stay whole. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "modcache/log.h"

static const char *const mc__levels[] = {"debug", "info", "warn", "error"};

const char *mc_log_level_name(mc_log_level level) { return mc__levels[(unsigned)level & 3]; }

void mc_logger_init(mc_logger *lg)
{
    if (!lg)
        return;
    lg->fd = 2;
    lg->min_level = MC_LOG_INFO;
    lg->format = MC_LOG_TEXT;
}

int mc_log_level_parse(const char *name, mc_log_level *out)
{
    if (!name || !out)
        return MC_EINVAL;
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(name, mc__levels[i])) {
            *out = (mc_log_level)i;
            return 0;
        }
    if (!strcasecmp(name, "warning")) {
        *out = MC_LOG_WARN;
        return 0;
    }
    return MC_EINVAL;
}

int mc_log_format_parse(const char *name, mc_log_format *out)
{
    if (!name || !out)
        return MC_EINVAL;
    if (!strcasecmp(name, "text"))
        *out = MC_LOG_TEXT;
    else if (!strcasecmp(name, "json"))
        *out = MC_LOG_JSON;
    else
        return MC_EINVAL;
    return 0;
}

/* Appends that stop at the buffer's end, leaving room for the final "\n". */
typedef struct {
    char *s;
    size_t len, cap;
} mc__line;

/* All or nothing, so that an escape sequence is never cut in half. */
static void mc__put(mc__line *l, const char *p, size_t n)
{
    if (l->len + n + 2 > l->cap) { /* room for the newline and the NUL */
        l->cap = l->len + 2; /* full: nothing after this either */
        return;
    }
    memcpy(l->s + l->len, p, n);
    l->len += n;
}

static void mc__puts(mc__line *l, const char *p) { mc__put(l, p, strlen(p)); }

/* A JSON string's contents: quotes, backslashes and control characters escaped; other bytes
 * as they are (messages are UTF-8 or ASCII). */
static void mc__put_json(mc__line *l, const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            mc__put(l, esc, 2);
        } else if (c == '\n') {
            mc__put(l, "\\n", 2);
        } else if (c == '\t') {
            mc__put(l, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            mc__put(l, esc, 6);
        } else {
            mc__put(l, p, 1);
        }
    }
}

/* A text line stays one line: newlines and other control bytes in the message become spaces. */
static void mc__put_text(mc__line *l, const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        mc__put(l, c < 0x20 || c == 0x7f ? " " : p, 1);
    }
}

size_t mc_log_format_line(char *buf, size_t cap, mc_log_format format, mc_log_level level, const char *component,
                          const char *message, const struct timespec *when)
{
    if (!buf || cap < 8)
        return 0;
    struct timespec now;
    if (!when) {
        clock_gettime(CLOCK_REALTIME, &now);
        when = &now;
    }
    struct tm tm;
    time_t secs = when->tv_sec;
    gmtime_r(&secs, &tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(when->tv_nsec / 1000000));
    const char *lv = mc_log_level_name(level);
    if (!component)
        component = "host";
    if (!message)
        message = "";
    mc__line l = {buf, 0, cap};
    if (format == MC_LOG_JSON) {
        mc__puts(&l, "{\"time\":\"");
        mc__puts(&l, ts);
        mc__puts(&l, "\",\"level\":\"");
        mc__puts(&l, lv);
        mc__puts(&l, "\",\"component\":\"");
        mc__put_json(&l, component);
        mc__puts(&l, "\",\"message\":\"");
        /* A message cut short still closes its object, so that every line parses. */
        l.cap = cap - 2;
        mc__put_json(&l, message);
        l.cap = cap;
        mc__puts(&l, "\"}");
    } else {
        mc__puts(&l, ts);
        mc__puts(&l, " ");
        mc__puts(&l, lv);
        mc__puts(&l, " [");
        mc__put_text(&l, component);
        mc__puts(&l, "] ");
        mc__put_text(&l, message);
    }
    buf[l.len++] = '\n';
    buf[l.len] = 0;
    return l.len;
}

void mc_logger_write(const mc_logger *lg, mc_log_level level, const char *component, const char *message)
{
    mc_logger def;
    if (!lg) {
        mc_logger_init(&def);
        lg = &def;
    }
    if (level < lg->min_level)
        return;
    char buf[2048];
    size_t n = mc_log_format_line(buf, sizeof buf, lg->format, level, component, message, NULL);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(lg->fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report a failing log */
        off += (size_t)w;
    }
}

void mc_logger_host_fn(void *ud, mc_log_level level, const char *module, const char *message)
{
    mc_logger_write(ud, level, module, message);
}

void mc_logger_bus_fn(void *ud, int level, const char *message)
{
    mc_logger_write(ud, (mc_log_level)(level & 3), "bus", message);
}
