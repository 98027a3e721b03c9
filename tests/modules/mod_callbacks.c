/* A test module using callback categories: a "spam checker" whose check_event denies events
 * containing CB_WORD, and an "audit" notification; it also probes the API's refusals. */
#include <modcache/module.h>
#include <stdio.h>
#include <string.h>

static mc_api *the_api;
static int seen;

static int check_event(void *ud, const char *event)
{
    (void)ud;
    seen++;
    mc_api_log(the_api, MC_LOG_DEBUG, "checked %s", event);
    return strstr(event, CB_WORD) ? 2 : 0; /* 2: deny */
}

static int audit(void *ud, const char *event)
{
    (void)ud;
    mc_api_log(the_api, MC_LOG_INFO, "audit %s", event);
    return 0;
}

static int init(mc_api *api, void *parsed, void **state, mc_error *err)
{
    (void)parsed;
    (void)err;
    *state = NULL;
    the_api = api;
    mc_callback_entry bad_name[] = {{"check_evnt", (mc_callback_fn)check_event, NULL}};
    mc_callback_entry good[] = {{"check_event", (mc_callback_fn)check_event, &seen}};
    mc_callback_entry notes[] = {{"on_event", (mc_callback_fn)audit, NULL}};
    mc_api_log(api, MC_LOG_INFO, "unknown-category=%s",
               mc_err_name(mc_api_register_callbacks(api, "no_such_category", good, 1)));
    mc_api_log(api, MC_LOG_INFO, "unknown-name=%s",
               mc_err_name(mc_api_register_callbacks(api, "spam_checker", bad_name, 1)));
    int rc = mc_api_register_callbacks(api, "spam_checker", good, 1);
    if (rc == 0)
        rc = mc_api_register_callbacks(api, "audit", notes, 1);
    return rc;
}

static void fini(void *state)
{
    (void)state;
    mc_callback_entry good[] = {{"check_event", (mc_callback_fn)check_event, NULL}};
    mc_api_log(the_api, MC_LOG_INFO, "late=%s",
               mc_err_name(mc_api_register_callbacks(the_api, "spam_checker", good, 1)));
}

MC_MODULE(MOD_NAME, NULL, init, fini, NULL);
