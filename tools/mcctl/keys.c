/* mcctl's KEY arguments: each is checked with the library's own parser before anything is sent,
 * so a typo is shown where it is, and hosts and the stream only ever see canonical keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcctl.h"

/* Show the key with a caret under byte `off`. Columns count code points, so a caret lines up
 * under non-ASCII text too; control characters are shown as spaces to keep one line. */
static void show_position(const char *text, size_t off)
{
    size_t len = strlen(text), col = 0;
    if (len > 200)
        return; /* a caret under a wrapped line helps nobody; the offset is in the message */
    fputs("  ", stderr);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        fputc(c < 0x20 || c == 0x7F ? ' ' : c, stderr);
        if (i < off && (c & 0xC0) != 0x80)
            col++;
    }
    fputs("\n  ", stderr);
    for (size_t i = 0; i < col; i++)
        fputc(' ', stderr);
    fputs("^\n", stderr);
}

int mcctl_keys_parse(const char *const *texts, size_t n, mcctl_keys *out)
{
    out->n = 0;
    out->json = calloc(n ? n : 1, sizeof *out->json);
    out->fields = calloc(n ? n : 1, sizeof *out->fields);
    if (!out->json || !out->fields) {
        mcctl_keys_free(out);
        mcctl_say("out of memory");
        return MCCTL_FAIL;
    }
    unsigned char key[MC_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t klen = 0;
        mc_error err = {0};
        int rc = mc_key_from_json(texts[i], strlen(texts[i]), key, sizeof key, &klen, &err);
        if (rc != 0) {
            mcctl_say("KEY %zu is not a valid key: %s", i + 1, err.message[0] ? err.message : mc_strerror(rc));
            size_t off;
            const char *at = strstr(err.message, "at offset ");
            if (rc == MC_EPARSE && at && sscanf(at, "at offset %zu", &off) == 1)
                show_position(texts[i], off);
            mcctl_say("nothing was sent. Each KEY is a JSON array of the function's arguments, "
                      "e.g. '[\"@alice:example.com\", 42]' (bytes: {\"hex\": \"00ff\"})");
            mcctl_keys_free(out);
            return MCCTL_BAD_KEY;
        }
        int fields = mc_key_count(key, klen);
        if (fields == 0) {
            /* No function has keys of no fields: refused here, whatever the host would say. */
            mcctl_say("KEY %zu is empty: a KEY names at least the first of the function's arguments", i + 1);
            mcctl_say("nothing was sent. Each KEY is a JSON array of the function's arguments, "
                      "e.g. '[\"@alice:example.com\", 42]' (bytes: {\"hex\": \"00ff\"})");
            mcctl_keys_free(out);
            return MCCTL_BAD_KEY;
        }
        /* Canonical form: what the host and the stream parse back to the same bytes. */
        char small[256];
        size_t jlen = 0;
        rc = mc_key_to_json(key, klen, small, sizeof small, &jlen);
        char *copy = NULL;
        if (rc == 0) {
            copy = strdup(small);
        } else if (rc == MC_ERANGE && (copy = malloc(jlen + 1))) {
            if (mc_key_to_json(key, klen, copy, jlen + 1, &jlen) != 0) {
                free(copy);
                copy = NULL;
            }
        }
        if (!copy) {
            mcctl_say("KEY %zu: cannot print it back as JSON (%s)", i + 1, mc_strerror(rc == 0 || rc == MC_ERANGE ? MC_ENOMEM : rc));
            mcctl_keys_free(out);
            return MCCTL_FAIL;
        }
        out->fields[out->n] = (size_t)fields;
        out->json[out->n++] = copy;
    }
    return MCCTL_OK;
}

void mcctl_keys_free(mcctl_keys *keys)
{
    for (size_t i = 0; keys->json && i < keys->n; i++)
        free(keys->json[i]);
    free(keys->json);
    free(keys->fields);
    keys->json = NULL;
    keys->fields = NULL;
    keys->n = 0;
}
