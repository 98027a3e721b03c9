/* A test module with a web resource: echoes method, path, query, a header and the body; PUT and
 * GET only. It also probes the path rules, logging what the API answered. */
#define _POSIX_C_SOURCE 200809L
#include <modcache/module.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void echo(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "PUT") != 0) {
        mc_http_method_not_allowed(resp, "GET, PUT");
        return;
    }
    size_t pl = strlen(req->path);
    if (pl >= 5 && !strcmp(req->path + pl - 5, "/slow"))
        nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL); /* a request still in progress */
    const char *x = mc_http_header(req, "X-Test");
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s %s ?%s x=%s body=%.*s", req->method, req->path, req->query,
                     x ? x : "-", (int)req->body_len, req->body);
    if (mc_http_header(req, "X-Raw") && n > 0 && (size_t)n < sizeof buf) /* the path as sent */
        n += snprintf(buf + n, sizeof buf - (size_t)n, " raw=%s", mc_http_raw_path(req));
    mc_http_add_header(resp, "Content-Type", "text/plain");
    mc_http_set_body(resp, buf, n < 0 ? 0 : (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    const char *probes[] = {"/_matrix/client/v3/x", "/_matrix", "/_modcache/admin/x", "/metrics", "relative",
                            "/a//b", "/a/../b", "/a/"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
        mc_api_log(api, MC_LOG_INFO, "probe %s=%s", probes[i],
                   mc_err_name(mc_api_register_web_resource(api, probes[i], echo, NULL)));
    int rc = mc_api_register_web_resource(api, "/_modcache/client/web/v1", echo, NULL);
    mc_api_log(api, MC_LOG_INFO, "register=%s", mc_err_name(rc));
    return 0; /* a taken path is logged, not fatal */
}

MC_MODULE(MOD_NAME, NULL, init, NULL, NULL);
