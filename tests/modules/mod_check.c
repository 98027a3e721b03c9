/* A test module registering a request check: refuses paths containing CHECK_WORD (and, for the
 * first variant, requests carrying "X-Block: 1"), logging every request it sees. */
#define _POSIX_C_SOURCE 200809L
#include <modcache/module.h>
#include <stdio.h>
#include <string.h>

static mc_api *the_api;

static int check(void *ud, const mc_http_request *req, mc_http_response *resp)
{
    (void)ud;
    mc_api_log(the_api, MC_LOG_INFO, "saw %s", req->path);
#ifdef CHECK_HEADER
    const char *h = mc_http_header(req, "X-Block");
    if (h && !strcmp(h, "1"))
        return 403;
#endif
    if (strstr(req->path, "broken"))
        return MC_EIO;
    if (!strstr(req->path, CHECK_WORD))
        return 0;
#ifdef CHECK_BODY
    const char *body = "{\"error\": \"blocked by " MOD_NAME "\"}";
    mc_http_set_body(resp, body, strlen(body));
    mc_http_add_header(resp, "Content-Type", "application/json");
#else
    (void)resp;
#endif
    return CHECK_STATUS;
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    the_api = api;
    *state = NULL;
    mc_callback_entry e = {MC_CALLBACK_CHECK_REQUEST, (mc_callback_fn)check, NULL};
    return mc_api_register_callbacks(api, MC_CATEGORY_HTTP, &e, 1);
}

MC_MODULE(MOD_NAME, NULL, init, NULL, NULL);
