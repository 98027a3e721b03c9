/* The module fuzz_admin_http loads: a web resource whose answer the request steers (status,
 * body, headers) and a request check that refuses with whatever status a header names. */
#include <modcache/host.h> /* MC_CALLBACK_PENDING */
#include <modcache/module.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET and PUT answer; "status=<n>" in the query sets the status (refused outside 100..599);
 * the X-Fuzz header comes back as a response header (refused when it holds a newline). */
static void resource(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "PUT") != 0) {
        mc_http_method_not_allowed(resp, "GET, PUT");
        return;
    }
    const char *st = strstr(req->query, "status=");
    if (st)
        mc_http_set_status(resp, (unsigned)strtoul(st + 7, NULL, 10));
    /* Both values are used after both lookups: each must stay valid for the whole call. */
    const char *x = mc_http_header(req, "X-Fuzz");
    const char *y = mc_http_header(req, "X-Fuzz-Second");
    if (x)
        mc_http_add_header(resp, "X-Fuzz", x);
    if (y)
        mc_http_add_header(resp, "X-Fuzz-Second", y);
    char head[512];
    int n = snprintf(head, sizeof head, "%s %s ?%s\n", req->method, req->path, req->query);
    size_t hl = n < 0 ? 0 : (size_t)n < sizeof head ? (size_t)n : sizeof head - 1;
    char *body = malloc(hl + req->body_len + 1);
    if (!body)
        return;
    memcpy(body, head, hl);
    if (req->body_len)
        memcpy(body + hl, req->body, req->body_len);
    mc_http_set_body(resp, body, hl + req->body_len);
    free(body);
}

/* "X-Refuse: <n>" refuses with n (any integer: the host must turn what is not an HTTP error
 * status into 500); "X-Refuse-Body" also sets the refusal's body. */
static int check(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    /* Each header value is used before the next lookup: on injected requests a lookup
     * replaces the value the previous one returned. */
    const char *v = mc_http_header(req, "X-Refuse");
    if (!v)
        return 0;
    long n = strtol(v, NULL, 10);
    /* MC_CALLBACK_PENDING would mean "completes later", which this check never does. */
    if (n >= MC_CALLBACK_PENDING || n < -MC_CALLBACK_PENDING)
        n = 599;
    const char *b = mc_http_header(req, "X-Refuse-Body");
    if (b)
        mc_http_set_body(resp, b, strlen(b));
    return (int)n;
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    int rc = mc_api_register_web_resource(api, "/_modcache/client/fuzz", resource, NULL);
    if (rc == 0)
        rc = mc_api_register_web_resource(api, "/_modcache/client/fuzz/v1/deeper", resource, NULL);
    const mc_callback_entry cb = {MC_CALLBACK_CHECK_REQUEST, (mc_callback_fn)check, NULL};
    if (rc == 0)
        rc = mc_api_register_callbacks(api, MC_CATEGORY_HTTP, &cb, 1);
    return rc;
}

MC_MODULE("fuzz", NULL, init, NULL, NULL);
