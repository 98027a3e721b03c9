/* mcctl: the admin command-line client of modcache hosts. Parses the command line, prints help,
 * and runs one command (caches, invalidate, metrics) over HTTP or, for invalidate, via Redis. */
#include <curl/curl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcctl.h"

void mcctl_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mcctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------- help */

static const char exit_codes[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  any other failure (an unexpected answer from the host, a server error)\n"
    "  2  usage error\n"
    "  3  a KEY is not a valid JSON key tuple, or the host refused its length (nothing was\n"
    "     invalidated)\n"
    "  4  the host has no cache by that name (its HTTP 404 answer saying so)\n"
    "  5  no admin token, or the host refused it (HTTP 401), or its admin API is disabled (HTTP 403)\n"
    "  6  the host or Redis cannot be reached\n";

static const char global_help[] =
    "usage: mcctl [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Administers modcache hosts (mchost): lists their cached functions, invalidates entries and\n"
    "reads their metrics through a host's HTTP server, or publishes invalidations on the Redis\n"
    "stream every host of a fleet reads.\n"
    "\n"
    "Commands:\n"
    "  caches [--json]          the host's cached functions: entries, bound, hits, misses, hit\n"
    "                           ratio, loads, invalidations, memory (--json: the host's JSON as is)\n"
    "  invalidate NAME KEY...   drop entries of the cached function NAME; each KEY is a JSON tuple\n"
    "                           of its arguments, such as '[\"@alice:example.com\"]'\n"
    "  invalidate NAME --all    drop every entry of NAME\n"
    "  metrics                  the host's /metrics (Prometheus text format)\n"
    "  hosts --redis HOST:PORT  the live hosts reading the stream: last applied id, lag, last\n"
    "                           seen (--json: as JSON)\n"
    "\n"
    "Options (before or after the command):\n"
    "  --url URL          the host's HTTP server (default " MCCTL_DEFAULT_URL ")\n"
    "  --token-file FILE  the admin token: the first line of FILE, the file the host's\n"
    "                     server.admin_token_file names; without it, $MODCACHE_ADMIN_TOKEN\n"
    "  --redis HOST:PORT  invalidate through the fleet's Redis stream instead of one host, or\n"
    "                     list the hosts reading it (invalidate and hosts; no token needed)\n"
    "  --stream NAME      the stream, with --redis (default " MCCTL_DEFAULT_STREAM ")\n"
    "  --instance NAME    the instance name written with the message, with --redis (default\n"
    "                     " MCCTL_DEFAULT_INSTANCE ")\n"
    "  --timeout MS       how long to wait for the host or Redis (default 5000)\n"
    "  --version          print the version\n"
    "  -h, --help         this text; `mcctl COMMAND --help` describes a command\n"
    "\n";

static const char caches_help[] =
    "usage: mcctl [OPTIONS] caches [--json]\n"
    "\n"
    "Lists the host's registered cached functions, one line each, sorted by name:\n"
    "  NAME     the function's registered name\n"
    "  ENTRIES  entries held now; MAX: the entry bound (after cache factors)\n"
    "  HITS, MISSES, HIT%  lookups since the host started, and the share that hit\n"
    "  LOADS    calls of the loader; INVAL: invalidation calls\n"
    "  MEMORY   memory the entries take (K, M, G: binary units)\n"
    "--json prints the host's answer (GET /_modcache/admin/v1/caches) as is, with every counter.\n"
    "Needs the admin token (--token-file FILE or $MODCACHE_ADMIN_TOKEN); --url names the host.\n"
    "\n";

static const char invalidate_help[] =
    "usage: mcctl [OPTIONS] invalidate NAME KEY...\n"
    "       mcctl [OPTIONS] invalidate NAME --all\n"
    "\n"
    "Drops entries of the cached function NAME, so the next call loads them again.\n"
    "Each KEY is the function's arguments as a JSON array: strings, integers, doubles, true,\n"
    "false, null, and {\"hex\": \"00ff\"} for byte strings, e.g.\n"
    "  mcctl invalidate example_dept.get_department_for_user '[\"@alice:example.com\"]'\n"
    "Every KEY is checked before anything is sent: a bad one is shown with its position.\n"
    "A KEY names one entry when it has as many fields as the function's keys; on a function\n"
    "created with `tree`, a shorter KEY drops every entry under it (['@alice'] for all of\n"
    "@alice's fields). The host refuses a KEY of any other length (exit status 3) and then\n"
    "invalidates nothing; it answers how many entries it removed.\n"
    "--all drops every entry of NAME.\n"
    "\n"
    "By default the host at --url does it (POST /_modcache/admin/v1/caches/NAME/invalidate, with\n"
    "the admin token). With --redis HOST:PORT the invalidation goes on the stream (--stream) that\n"
    "every host reads, and each applies it; hosts keep the entries of names they do not know,\n"
    "and each refuses (and logs) a KEY of the wrong length for its function.\n"
    "It then says how many live hosts read that stream, and warns on stderr when none does (a\n"
    "wrong --stream, or no host running). --json prints the outcome as JSON: the host's answer\n"
    "over HTTP, or {\"published\": true, \"stream\": ..., \"live_hosts\": N, ...} with --redis.\n"
    "\n";

static const char hosts_help[] =
    "usage: mcctl --redis HOST:PORT [--stream NAME] hosts [--json]\n"
    "\n"
    "Lists the hosts reading the stream (default " MCCTL_DEFAULT_STREAM "), from the announcements\n"
    "each host renews beside it (every invalidation.redis.announce_interval, 5 s by default; one\n"
    "that stops announcing drops out after three intervals), one line each, by instance name:\n"
    "  INSTANCE     its invalidation.instance_name\n"
    "  LAST ID      the last stream id it applied\n"
    "  LAG          stream entries after that id when it announced (0: caught up)\n"
    "  BEHIND       how long the oldest entry it has not applied has waited\n"
    "  SEEN         how long ago it announced\n"
    "  LINK         up when both its connections to Redis were up\n"
    "  HOST, PID, VERSION  where it runs, and its libmodcache version\n"
    "--json prints {\"stream\": ..., \"hosts\": [...]} with the same fields.\n"
    "\n";

static const char metrics_help[] =
    "usage: mcctl [OPTIONS] metrics\n"
    "\n"
    "Prints the host's /metrics (Prometheus text format: hits, misses, evictions by reason,\n"
    "invalidations by source, entries, bytes, bound, memory, loads and load durations per cached\n"
    "function; docs/metrics.md lists every family). Needs no token.\n"
    "\n";

static void print_help(FILE *f, const char *text)
{
    fputs(text, f);
    fputs(exit_codes, f);
}

static const char *command_help(const char *command)
{
    if (!strcmp(command, "caches"))
        return caches_help;
    if (!strcmp(command, "invalidate"))
        return invalidate_help;
    if (!strcmp(command, "metrics"))
        return metrics_help;
    if (!strcmp(command, "hosts"))
        return hosts_help;
    return NULL;
}

/* ---------------------------------------------------------------- command line */

static int usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mcctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (command && command_help(command))
        fprintf(stderr, "; `mcctl %s --help` shows its usage\n", command);
    else
        fputs("; `mcctl --help` shows the usage\n", stderr);
    return MCCTL_USAGE;
}

/* The value of an option given as "--name VALUE" or "--name=VALUE"; NULL when not this option.
 * *missing is set when the option is there without a value. */
static const char *option_value(const char *name, int argc, char **argv, int *i, bool *missing)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool parse_ms(const char *s, unsigned *out)
{
    unsigned long v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 3600000)
            return false;
    }
    if (v == 0)
        return false;
    *out = (unsigned)v;
    return true;
}

/* "host:port" with a port in 1..65535. */
static bool address_ok(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        return false;
    unsigned long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (unsigned long)(*p - '0');
        if (port > 65535)
            return false;
    }
    return port > 0;
}

typedef struct {
    bool help, version;
} flags;

static int parse(int argc, char **argv, mcctl_args *a, const char **pos, flags *fl)
{
    bool rest = false; /* after "--": everything is an argument */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v;
        bool missing = false;
        if (rest || arg[0] != '-' || !arg[1]) {
            if (!a->command)
                a->command = arg;
            else
                pos[a->npos++] = arg;
            continue;
        }
        if (!strcmp(arg, "--")) {
            rest = true;
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fl->help = true;
        } else if (!strcmp(arg, "--version")) {
            fl->version = true;
        } else if (!strcmp(arg, "--json")) {
            a->json = true;
        } else if (!strcmp(arg, "--all")) {
            a->all = true;
        } else if ((v = option_value("--url", argc, argv, &i, &missing))) {
            a->url = v;
        } else if ((v = option_value("--token-file", argc, argv, &i, &missing))) {
            a->token_file = v;
        } else if ((v = option_value("--redis", argc, argv, &i, &missing))) {
            a->redis = v;
        } else if ((v = option_value("--stream", argc, argv, &i, &missing))) {
            a->stream = v;
        } else if ((v = option_value("--instance", argc, argv, &i, &missing))) {
            a->instance = v;
        } else if ((v = option_value("--timeout", argc, argv, &i, &missing))) {
            if (!parse_ms(v, &a->timeout_ms))
                return usage_error(NULL, "--timeout %s: expected milliseconds, from 1 to 3600000", v);
        } else if (missing) {
            return usage_error(NULL, "%s needs a value", arg);
        } else {
            return usage_error(a->command, "unknown option %s", arg);
        }
    }
    return MCCTL_OK;
}

/* What parse cannot see alone: options that belong to other commands, counts of arguments. */
static int check(const mcctl_args *a)
{
    const char *c = a->command;
    if (a->url && (strncasecmp(a->url, "http://", 7) != 0 || !a->url[7]) &&
        (strncasecmp(a->url, "https://", 8) != 0 || !a->url[8]))
        return usage_error(NULL, "--url %s: expected http://HOST:PORT or https://HOST:PORT", a->url);
    if (a->redis && !address_ok(a->redis))
        return usage_error(NULL, "--redis %s: expected HOST:PORT, such as 127.0.0.1:6379", a->redis);
    if (a->redis && a->url)
        return usage_error(NULL, "--url names one host and --redis every host: give one of them");
    if (!a->redis && (a->stream || a->instance))
        return usage_error(NULL, "%s applies with --redis only", a->stream ? "--stream" : "--instance");
    if (a->stream && !a->stream[0])
        return usage_error(NULL, "--stream needs a name");
    if (a->instance && !a->instance[0])
        return usage_error(NULL, "--instance needs a name");
    bool inv = !strcmp(c, "invalidate"), hosts = !strcmp(c, "hosts");
    if (a->redis && !inv && !hosts)
        return usage_error(c, "--redis works with invalidate and hosts only; %s asks one host (--url)", c);
    if (hosts && !a->redis)
        return usage_error(c, "hosts reads the fleet's announcements in Redis: give --redis HOST:PORT");
    if (a->json && strcmp(c, "caches") != 0 && !inv && !hosts)
        return usage_error(c, "--json belongs to caches, hosts and invalidate");
    if (a->all && !inv)
        return usage_error(c, "--all belongs to invalidate");
    if (!inv) {
        if (a->npos)
            return usage_error(c, "%s takes no arguments (got %s)", c, a->pos[0]);
        return MCCTL_OK;
    }
    if (a->npos == 0)
        return usage_error(c, "invalidate needs the cached function's NAME, then KEYs or --all");
    if (!a->pos[0][0])
        return usage_error(c, "the cached function's NAME is empty");
    if (a->all && a->npos > 1)
        return usage_error(c, "give KEYs or --all, not both");
    if (!a->all && a->npos == 1)
        return usage_error(c, "invalidate %s needs at least one KEY such as '[\"@alice:example.com\"]', or --all",
                           a->pos[0]);
    return MCCTL_OK;
}

static int run(const mcctl_args *a)
{
    if (!strcmp(a->command, "hosts"))
        return mcctl_cmd_hosts(a);
    if (strcmp(a->command, "invalidate") != 0) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            mcctl_say("cannot initialise libcurl");
            return MCCTL_FAIL;
        }
        int rc = !strcmp(a->command, "caches") ? mcctl_cmd_caches(a) : mcctl_cmd_metrics(a);
        curl_global_cleanup();
        return rc;
    }
    mcctl_keys keys = {0};
    int rc = mcctl_keys_parse(a->pos + 1, a->npos - 1, &keys);
    if (rc != MCCTL_OK)
        return rc;
    if (a->redis) {
        rc = mcctl_cmd_invalidate_redis(a, &keys);
    } else if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        mcctl_say("cannot initialise libcurl");
        rc = MCCTL_FAIL;
    } else {
        rc = mcctl_cmd_invalidate(a, &keys);
        curl_global_cleanup();
    }
    mcctl_keys_free(&keys);
    return rc;
}

int main(int argc, char **argv)
{
    /* A closed output pipe or a dropped connection is an error to report, not a silent death. */
    signal(SIGPIPE, SIG_IGN);

    mcctl_args a = {.timeout_ms = MCCTL_DEFAULT_TIMEOUT_MS};
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) {
        mcctl_say("out of memory");
        return MCCTL_FAIL;
    }
    a.pos = pos;
    flags fl = {false, false};
    int rc = parse(argc, argv, &a, pos, &fl);
    if (rc != MCCTL_OK)
        goto out;
    if (a.command && !strcmp(a.command, "help")) { /* "mcctl help [COMMAND]" reads naturally too */
        fl.help = true;
        a.command = a.npos ? a.pos[0] : NULL;
    }
    if (fl.version) {
        printf("mcctl %s (libmodcache %s)\n", MC_VERSION_STRING, mc_version());
        goto out;
    }
    if (a.command && !command_help(a.command)) {
        rc = usage_error(NULL, "unknown command %s (commands: caches, invalidate, metrics, hosts)", a.command);
        goto out;
    }
    if (fl.help) {
        print_help(stdout, a.command ? command_help(a.command) : global_help);
        goto out;
    }
    if (!a.command) {
        rc = usage_error(NULL, "no command given (caches, invalidate, metrics or hosts)");
        goto out;
    }
    if ((rc = check(&a)) == MCCTL_OK)
        rc = run(&a);
out:
    free(pos);
    if (fflush(stdout) != 0 && rc == MCCTL_OK) {
        mcctl_say("cannot write the output");
        rc = MCCTL_FAIL;
    }
    return rc;
}
