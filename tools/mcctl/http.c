/* mcctl's side of HTTP: one libcurl request per command to the host's admin API or /metrics,
 * the admin token, and what to tell the user when the host does not answer or says no. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcctl.h"

/* Far above any real answer (a few hundred bytes per cache); stops a wrong --url from
 * filling memory. */
#define MCCTL_MAX_ANSWER ((size_t)64 << 20)

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    mcctl_response *r = ud;
    size_t n = size * nmemb;
    if (n > MCCTL_MAX_ANSWER - r->len)
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    char *b = realloc(r->body, r->len + n + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, data, n);
    r->body = b;
    r->len += n;
    b[r->len] = 0;
    return n;
}

void mcctl_response_free(mcctl_response *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static const char *base_url(const mcctl_args *a) { return a->url ? a->url : MCCTL_DEFAULT_URL; }

int mcctl_http(const mcctl_args *a, const char *method, const char *path, const char *token,
               const char *body, mcctl_response *out)
{
    memset(out, 0, sizeof *out);
    const char *base = base_url(a);
    size_t blen = strlen(base);
    while (blen && base[blen - 1] == '/')
        blen--;
    size_t ulen = blen + strlen(path) + 1;
    char *url = malloc(ulen);
    char *auth = token ? malloc(strlen(token) + 32) : NULL;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = NULL, *h;
    int status = MCCTL_FAIL;
    if (!url || (token && !auth) || !c) {
        mcctl_say("out of memory");
        goto out;
    }
    snprintf(url, ulen, "%.*s%s", (int)blen, base, path);
    if (token) {
        sprintf(auth, "Authorization: Bearer %s", token);
        if (!(h = curl_slist_append(headers, auth)))
            goto oom;
        headers = h;
    }
    if (body) {
        if (!(h = curl_slist_append(headers, "Content-Type: application/json")))
            goto oom;
        headers = h;
    }
    /* No "Expect: 100-continue" round trip: the bodies are small. */
    if (!(h = curl_slist_append(headers, "Expect:")))
        goto oom;
    headers = h;

    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mcctl/" MC_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    /* --timeout bounds the whole exchange; no signals, so it is safe beside other threads. */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    switch (rc) {
    case CURLE_OK:
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        if (!out->body && !(out->body = calloc(1, 1)))
            goto oom;
        status = MCCTL_OK;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        mcctl_say("no answer from %s within %u ms; is the host overloaded? (--timeout MS waits longer)", url,
                  a->timeout_ms);
        status = MCCTL_UNREACHABLE;
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        mcctl_say("cannot reach the host at %.*s: %s; is mchost running there? (--url URL names it)", (int)blen,
                  base, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        status = MCCTL_UNREACHABLE;
        break;
    case CURLE_WRITE_ERROR:
        mcctl_say("the answer from %s is over %zu MiB, or memory ran out; is --url a modcache host?", url,
                  MCCTL_MAX_ANSWER >> 20);
        break;
    default:
        mcctl_say("request to %s failed: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        break;
    }
    goto out;
oom:
    mcctl_say("out of memory");
    status = MCCTL_FAIL;
out:
    if (status != MCCTL_OK)
        mcctl_response_free(out);
    curl_slist_free_all(headers);
    if (c)
        curl_easy_cleanup(c);
    if (auth) {
        memset(auth, 0, strlen(auth)); /* the token does not outlive the request in our memory */
        free(auth);
    }
    free(url);
    return status;
}

/* Trailing whitespace off; a token must then be non-empty and fit in a header line. */
static int clean_token(char *t, const char *from)
{
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\r' || t[n - 1] == '\n' ||
                 t[n - 1] == '\v' || t[n - 1] == '\f'))
        t[--n] = 0;
    if (n == 0) {
        mcctl_say("%s is empty; it should hold the token of the host's server.admin_token_file", from);
        return MCCTL_AUTH;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || t[i] == 0x7F) {
            mcctl_say("%s holds a control character; a token is one line of printable text", from);
            return MCCTL_AUTH;
        }
    return MCCTL_OK;
}

int mcctl_token(const mcctl_args *a, char **out)
{
    *out = NULL;
    char from[320];
    char *t = NULL;
    if (a->token_file) {
        snprintf(from, sizeof from, "the token file %s", a->token_file);
        FILE *f = fopen(a->token_file, "r");
        if (!f) {
            mcctl_say("cannot read %s: %s; --token-file names the host's admin token file", from, strerror(errno));
            return MCCTL_AUTH;
        }
        size_t cap = 0;
        ssize_t got = getline(&t, &cap, f);
        int read_errno = ferror(f) ? errno : 0;
        fclose(f);
        if (got < 0) {
            free(t);
            if (read_errno) { /* a directory, say: not an empty file */
                mcctl_say("cannot read %s: %s; --token-file names the host's admin token file", from,
                          strerror(read_errno));
                return MCCTL_AUTH;
            }
            if (!(t = strdup(""))) {
                mcctl_say("out of memory");
                return MCCTL_FAIL;
            }
        }
    } else {
        const char *env = getenv("MODCACHE_ADMIN_TOKEN");
        if (!env || !env[0]) {
            mcctl_say("no admin token: pass --token-file FILE (the file the host's server.admin_token_file "
                      "names) or set MODCACHE_ADMIN_TOKEN");
            return MCCTL_AUTH;
        }
        snprintf(from, sizeof from, "MODCACHE_ADMIN_TOKEN");
        if (!(t = strdup(env))) {
            mcctl_say("out of memory");
            return MCCTL_FAIL;
        }
    }
    int rc = clean_token(t, from);
    if (rc != MCCTL_OK) {
        free(t);
        return rc;
    }
    *out = t;
    return MCCTL_OK;
}

/* The host's own words: its JSON "error", else the start of the body, printable only. */
static void host_words(const mcctl_response *r, char *buf, size_t cap)
{
    char *e = mcctl_json_error_text(r->body, r->len);
    const char *src = e ? e : r->body;
    size_t n = 0;
    for (size_t i = 0; src && src[i] && n + 1 < cap && i < 200; i++) {
        unsigned char c = (unsigned char)src[i];
        buf[n++] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
    }
    while (n && buf[n - 1] == ' ')
        n--;
    buf[n] = 0;
    free(e);
}

int mcctl_http_refused(const mcctl_args *a, const mcctl_response *r)
{
    char words[256];
    host_words(r, words, sizeof words);
    if (r->status == 401) {
        mcctl_say("the host refused the admin token (HTTP 401%s%s); use the token in its server.admin_token_file, "
                  "with --token-file FILE or MODCACHE_ADMIN_TOKEN",
                  words[0] ? ": " : "", words);
        return MCCTL_AUTH;
    }
    if (r->status == 403) {
        mcctl_say("the host's admin API is disabled (HTTP 403%s%s); set server.admin_token_file in its "
                  "configuration and restart it",
                  words[0] ? ": " : "", words);
        return MCCTL_AUTH;
    }
    mcctl_say("unexpected answer from %s: HTTP %ld%s%s", base_url(a), r->status, words[0] ? ": " : "", words);
    return MCCTL_FAIL;
}
