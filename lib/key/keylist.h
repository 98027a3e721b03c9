/* A JSON array of keys in text form ([["@alice"], ["@bob", 2]]), walked element by element
 * without parsing the keys themselves: the admin API and the invalidation bus carry such lists. */
#ifndef MC_KEY_KEYLIST_H
#define MC_KEY_KEYLIST_H

#include <stddef.h>

/* Find the next element of the array starting at text[0] (after optional whitespace), within
 * len bytes. Start with *pos = 0. Returns 1 with *item / *item_len set to the element's text (an
 * array, unchecked inside beyond string and bracket balance), 0 at the end of the array (*pos
 * is then just past its closing bracket: the caller judges what follows), or MC_EPARSE when the
 * text is not an array of arrays (*pos is then the byte offset of the fault). */
int mc__keylist_next(const char *text, size_t len, size_t *pos, const char **item, size_t *item_len);

#endif
