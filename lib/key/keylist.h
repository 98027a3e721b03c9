/* A JSON array of keys in text form ([["@alice"], ["@bob", 2]]), walked element by element
 * without parsing the keys themselves: the admin API and the invalidation bus carry such lists. */
#ifndef MC_KEY_KEYLIST_H
#define MC_KEY_KEYLIST_H

#include "core/internal_api.h"

#include <stddef.h>

/* Find the next element of the array starting at text[0] (after optional whitespace), within
 * len bytes. Start with *pos = 0. Returns 1 with *item / *item_len set to the element's text (an
 * array, unchecked inside beyond string and bracket balance), 0 at the end of the array (*pos
 * is then just past its closing bracket: the caller judges what follows), or MC_EPARSE when the
 * text is not an array of arrays (*pos is then the byte offset of the fault). */
MC_INTERNAL int mc__keylist_next(const char *text, size_t len, size_t *pos, const char **item, size_t *item_len);

/* A key list split into NUL-terminated keys (for mc_registry_invalidate and the bus). */
typedef struct mc__keylist {
    char *buf;         /* the keys' text, each NUL-terminated */
    const char **keys; /* n pointers into buf */
    size_t n;
} mc__keylist;

/* Split the array starting at text[0] into out (free with mc__keylist_free). *end (may be NULL)
 * gets the offset just past the closing bracket, or of the fault. Returns 0, MC_EPARSE (out
 * empty) or MC_ENOMEM. */
MC_INTERNAL int mc__keylist_split(const char *text, size_t len, mc__keylist *out, size_t *end);
MC_INTERNAL void mc__keylist_free(mc__keylist *kl);

#endif
