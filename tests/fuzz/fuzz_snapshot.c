/* Fuzz target for the snapshot reader (mc_snapshot_parse) and restore: any bytes are refused
 * with a fault and a message, or accepted and restored into persistent functions without a
 * fault of memory; the bus position decoder on the origin; and written back, an accepted
 * snapshot's restored entries read again as an accepted snapshot. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "modcache.h"

static mc_registry *reg;
static mc_cached *plain, *iter, *other;
static char path[64];

static int loader(void *self, const mc_arg *args, size_t nargs, mc_load *load)
{
    (void)self;
    (void)args;
    (void)nargs;
    return mc_load_set_copy(load, "x", 1);
}

static mc_cached *make(const char *name, bool iterable, bool persist)
{
    mc_cached_options o;
    mc_cached_options_init(&o);
    o.name = name;
    o.max_entries = 64;
    o.registry = reg;
    o.iterable = iterable;
    o.persist = persist;
    mc_cached *f = NULL;
    if (mc_cached_create(&o, loader, NULL, &f) != 0)
        abort();
    return f;
}

static void init(void)
{
    mc_cache_config cfg;
    mc_cache_config_init(&cfg);
    cfg.expire_caches = true;
    cfg.cache_entry_ttl_ns = 3600ull * 1000000000u;
    if (mc_registry_create(&cfg, &reg) != 0)
        abort();
    plain = make("f.a", false, true);
    iter = make("f.i", true, true);
    other = make("f.n", false, false);
    snprintf(path, sizeof path, "/tmp/mc-fuzz-snapshot-%d", (int)getpid());
}

/* The input whole (first byte 0), or (first byte 1) as a body wrapped in a valid header and
 * trailer, so that the record parser is reached past the checksum. */
static unsigned char *wrap(const uint8_t *data, size_t size, size_t *len)
{
    unsigned char *b = malloc(24 + size + 24);
    if (!b)
        abort();
    memcpy(b, "MCSNAPSH", 8);
    memset(b + 8, 0, 16);
    b[8] = MC_SNAPSHOT_VERSION;
    memcpy(b + 24, data, size);
    uint64_t body = size, sum = XXH3_64bits(b, 24 + size);
    for (int i = 0; i < 8; i++) {
        b[24 + size + i] = (unsigned char)(body >> (8 * i));
        b[24 + size + 8 + i] = (unsigned char)(sum >> (8 * i));
    }
    memcpy(b + 24 + size + 16, "MCSNEND\n", 8);
    *len = 24 + size + 24;
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reg)
        init();
    if (size == 0)
        return 0;
    unsigned char *buf = NULL;
    size_t len = size - 1;
    const unsigned char *in = data + 1;
    if (data[0] & 1) {
        buf = wrap(data + 1, size - 1, &len);
        in = buf;
    }
    mc_snapshot *snap = NULL;
    mc_snapshot_fault fault = MC_SNAPSHOT_OK;
    mc_error err = {0};
    int rc = mc_snapshot_parse(in, len, &snap, &fault, &err);
    if (rc != 0) {
        if (snap || rc != MC_EPARSE || fault == MC_SNAPSHOT_OK || !err.message[0])
            abort();
        free(buf);
        return 0;
    }
    size_t olen;
    const void *origin = mc_snapshot_origin(snap, &olen);
    mc_bus_position pos;
    if (mc_bus_position_decode(origin, olen, &pos) == 0) {
        char text[400];
        int n = mc_bus_position_encode(&pos, text, sizeof text);
        mc_bus_position again;
        if (n < 0 || mc_bus_position_decode(text, (size_t)n, &again) != 0 || strcmp(again.stream, pos.stream) ||
            strcmp(again.last_id, pos.last_id) || again.entries_added != pos.entries_added)
            abort();
    }
    uint64_t total = 0;
    for (size_t i = 0; i < mc_snapshot_function_count(snap); i++) {
        if (!mc_snapshot_function_name(snap, i))
            abort();
        total += mc_snapshot_function_entries(snap, i);
    }
    mc_snapshot_restore_stats rs;
    if (mc_snapshot_restore(snap, reg, &rs) != 0)
        abort();
    if (rs.restored + rs.expired + rs.present + rs.failed > total)
        abort();
    mc_snapshot_free(snap);
    /* What was restored is written and read back. */
    mc_snapshot_write_stats ws;
    if (mc_snapshot_write(reg, NULL, 0, path, &ws, &err) != 0)
        abort();
    if (mc_snapshot_read(path, &snap, &fault, &err) != 0)
        abort();
    mc_snapshot_free(snap);
    unlink(path);
    mc_cached_invalidate_all(plain);
    mc_cached_invalidate_all(iter);
    free(buf);
    return 0;
}
