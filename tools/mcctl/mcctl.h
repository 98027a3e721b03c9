/* mcctl's internal interface: exit codes, the parsed command line, and the pieces main.c puts
 * together (HTTP requests, the JSON scanner, the commands over HTTP and over Redis).
 *
 * mcctl is one thread (the bus it may start has its own, behind mc_bus_*): nothing here is meant
 * to be called from two threads at once. Ownership is stated per function; strings in
 * mcctl_args are borrowed from argv. Functions that can fail report on stderr themselves and
 * return an exit code, so callers only pass the code on. */
#ifndef MCCTL_H
#define MCCTL_H

#include <modcache.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes: stable, documented in `mcctl --help` and tools/README.md. */
enum {
    MCCTL_OK = 0,
    MCCTL_FAIL = 1,        /* an unexpected answer (5xx, malformed JSON), or any other failure */
    MCCTL_USAGE = 2,       /* the command line is wrong */
    MCCTL_BAD_KEY = 3,     /* a KEY is not a JSON key tuple (nothing was sent) */
    MCCTL_NO_CACHE = 4,    /* the host has no cache by that name */
    MCCTL_AUTH = 5,        /* no token, a refused token, or a disabled admin API */
    MCCTL_UNREACHABLE = 6, /* the host or Redis did not answer */
};

#define MCCTL_DEFAULT_URL "http://127.0.0.1:8008"
#define MCCTL_DEFAULT_STREAM "modcache:invalidations"
#define MCCTL_DEFAULT_INSTANCE "mcctl"
#define MCCTL_DEFAULT_TIMEOUT_MS 5000u

/* The command line, as main.c parsed it. Strings point into argv (never freed). */
typedef struct mcctl_args {
    const char *url;        /* NULL: MCCTL_DEFAULT_URL */
    const char *token_file; /* NULL: MODCACHE_ADMIN_TOKEN */
    const char *redis;      /* "host:port", or NULL for the HTTP path */
    const char *stream;
    const char *instance;
    unsigned timeout_ms;
    bool json;              /* caches, hosts and invalidate --json */
    bool all;               /* invalidate --all */
    const char *command;
    const char *const *pos; /* positional arguments after the command */
    size_t npos;
} mcctl_args;

/* Print "mcctl: <message>\n" on stderr. */
void mcctl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- keys (keys.c) */

/* The KEY arguments, checked with mc_key_from_json and rewritten in canonical compact JSON
 * (owned: mcctl_keys_free). */
typedef struct mcctl_keys {
    char **json;
    size_t *fields; /* each key's field count */
    size_t n;
} mcctl_keys;

/* Check every key; the first bad one is reported on stderr with its position in the text.
 * Returns MCCTL_OK, MCCTL_BAD_KEY or MCCTL_FAIL (out of memory). */
int mcctl_keys_parse(const char *const *texts, size_t n, mcctl_keys *out);
void mcctl_keys_free(mcctl_keys *keys);

/* ---------------------------------------------------------------- HTTP (http.c) */

typedef struct mcctl_response {
    long status;  /* the HTTP status, 0 when no answer came */
    char *body;   /* NUL-terminated (owned; mcctl_response_free) */
    size_t len;
} mcctl_response;

/* One request to the base URL (--url, its trailing slashes dropped) + path, within --timeout.
 * token: sent as a bearer token when not NULL (borrowed). body: a JSON document for POST, NULL
 * for GET (borrowed). On a transport failure, reports it on stderr and returns MCCTL_UNREACHABLE
 * or MCCTL_FAIL with *out empty; otherwise MCCTL_OK with the answer in *out (the caller frees it
 * with mcctl_response_free), whatever its status. Needs curl_global_init first. */
int mcctl_http(const mcctl_args *a, const char *method, const char *path, const char *token,
               const char *body, mcctl_response *out);
void mcctl_response_free(mcctl_response *r);

/* The admin token: the first line of --token-file (trailing whitespace removed), else
 * MODCACHE_ADMIN_TOKEN. Reports a missing or unusable token on stderr. Returns MCCTL_OK with a
 * string to free, or MCCTL_AUTH. */
int mcctl_token(const mcctl_args *a, char **out);

/* Report a status the command did not expect (401, 403, 5xx...) and return its exit code. */
int mcctl_http_refused(const mcctl_args *a, const mcctl_response *r);

/* ---------------------------------------------------------------- JSON (json.c) */

/* A cursor over JSON text (borrowed; not NUL-terminated necessarily). The scanner refuses
 * anything that is not JSON, never reads past `end`, and bounds its nesting; `why` says what
 * went wrong first, with the byte offset. */
typedef struct mcctl_json {
    const char *begin, *p, *end;
    int depth;
    char why[160];
} mcctl_json;

void mcctl_json_init(mcctl_json *j, const char *text, size_t len);
/* Skip whitespace and consume `c` if it comes next. */
bool mcctl_json_accept(mcctl_json *j, char c);
/* A string: decoded to UTF-8 into *out (malloc, NUL-terminated) when out is not NULL. */
bool mcctl_json_string(mcctl_json *j, char **out);
/* A non-negative integer literal that fits 64 bits. */
bool mcctl_json_uint(mcctl_json *j, uint64_t *out);
/* true or false. */
bool mcctl_json_bool(mcctl_json *j, bool *out);
/* Any value (nesting bounded). */
bool mcctl_json_skip(mcctl_json *j);
/* Only whitespace is left. */
bool mcctl_json_done(mcctl_json *j);

/* One cached function as GET /_modcache/admin/v1/caches describes it. */
typedef struct mcctl_cache_row {
    char *name;
    uint64_t entries, max_entries, bytes, memory, hits, misses, loads, load_errors, invalidations;
} mcctl_cache_row;

/* Parse the caches answer (text is borrowed; need not be NUL-terminated). Returns true with
 * *rows and *n (the caller frees them with mcctl_cache_rows_free), or false with `why` filled and
 * nothing to free. Unknown fields are skipped, so newer hosts stay readable. */
bool mcctl_caches_parse(const char *text, size_t len, mcctl_cache_row **rows, size_t *n, char *why,
                        size_t whycap);
void mcctl_cache_rows_free(mcctl_cache_row *rows, size_t n);

/* The "error" string of a host's JSON error answer, or NULL (malloc'd). */
char *mcctl_json_error_text(const char *text, size_t len);

/* ---------------------------------------------------------------- commands (commands.c, redis.c) */

int mcctl_cmd_caches(const mcctl_args *a);
int mcctl_cmd_metrics(const mcctl_args *a);
int mcctl_cmd_invalidate(const mcctl_args *a, const mcctl_keys *keys);
/* invalidate with --redis: publish on the stream instead of asking a host; then say how many
 * live hosts read that stream (a warning on stderr when none does). */
int mcctl_cmd_invalidate_redis(const mcctl_args *a, const mcctl_keys *keys);
/* hosts --redis: the live hosts reading the stream, from their announcements. */
int mcctl_cmd_hosts(const mcctl_args *a);

/* Print s as a JSON string (quotes included). */
void mcctl_print_json_string(const char *s);

#endif
