/* Does the admin API's token check leak where a wrong token differs? Times the whole request
 * path (without sockets) for the right token and wrong ones differing at the first or the last
 * byte, interleaved so that machine noise hits each alike, and reports medians and ratios. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modcache.h>

#include "host/host_internal.h"

#include "bench_time.h"

#define TOKEN "k7Qx2mP9vR4sT8wY1zB5nC3dF6gH0jL"

int main(int argc, char **argv)
{
    int rounds = argc > 1 && !strcmp(argv[1], "--quick") ? 20000 : 200000;
    mc_host *host;
    if (mc_host_create(NULL, &host) != 0)
        return 1;
    /* Same alignment for every header text: string scans cost differ with alignment otherwise. */
    static _Alignas(64) char first[128], last[128], right[128], shorter[128], middle[128];
    snprintf(right, sizeof right, "Authorization: Bearer %s\n", TOKEN);
    snprintf(first, sizeof first, "Authorization: Bearer X%s\n", TOKEN + 1);
    snprintf(last, sizeof last, "Authorization: Bearer %.*sX\n", (int)strlen(TOKEN) - 1, TOKEN);
    snprintf(middle, sizeof middle, "Authorization: Bearer %.*sX%s\n", 15, TOKEN, TOKEN + 16);
    snprintf(shorter, sizeof shorter, "Authorization: Bearer %.*s\n", (int)strlen(TOKEN) - 1, TOKEN);
    const struct {
        const char *name, *headers;
        int want;
    } cases[] = {{"right token", right, 200},       {"wrong first byte", first, 401},
                 {"wrong last byte", last, 401},    {"wrong middle byte", middle, 401},    {"one byte shorter", shorter, 401},
                 {"no Authorization", "", 401}};
    enum { N = sizeof cases / sizeof cases[0] };
    uint64_t *t[N];
    for (int c = 0; c < N; c++)
        t[c] = malloc((size_t)rounds * sizeof *t[c]);
    for (int i = 0; i < rounds; i++) {
        for (int j = 0; j < N; j++) {
            int c = (i + j) % N; /* each case in every position: no order effects */
            char *out = NULL;
            uint64_t t0 = now_ns();
            int status = mc__http_inject(host, TOKEN, 0, "GET", "/_modcache/admin/v1/caches", "", cases[c].headers,
                                         NULL, 0, &out, NULL);
            t[c][i] = now_ns() - t0;
            free(out);
            if (status != cases[c].want) {
                fprintf(stderr, "%s: status %d, expected %d\n", cases[c].name, status, cases[c].want);
                return 1;
            }
        }
    }
    printf("Admin API token check, %d interleaved requests per case (no sockets):\n", rounds);
    uint64_t med[N];
    for (int c = 0; c < N; c++) {
        qsort(t[c], (size_t)rounds, sizeof *t[c], cmp_u64);
        med[c] = t[c][rounds / 2];
        printf("  %-18s p50 %6" PRIu64 " ns   p90 %6" PRIu64 " ns\n", cases[c].name, med[c],
               t[c][(size_t)rounds * 9 / 10]);
        free(t[c]);
    }
    printf("  wrong first byte / wrong last byte: %.3f (1.000 means no difference)\n",
           (double)med[1] / (double)med[2]);
    mc_host_destroy(host);
    return 0;
}
