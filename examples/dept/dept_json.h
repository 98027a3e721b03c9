/* examples/dept/dept_json.h: the little JSON the example module speaks: writing escaped strings
 * into response bodies, and reading the PUT body {"department": "..."}.
 *
 * Pure functions on caller-owned buffers: thread-safe, nothing kept between calls. */
#ifndef DEPT_JSON_H
#define DEPT_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* A growable text buffer. Zero-initialise it; free(buf.s) when done. After an allocation
 * failure `failed` is set and further appends do nothing. */
typedef struct dept_buf {
    char *s;
    size_t len, cap;
    bool failed;
} dept_buf;

void dept_buf_add(dept_buf *b, const char *s, size_t n);
void dept_buf_adds(dept_buf *b, const char *s);
/* A JSON string literal (quotes included) for n bytes of UTF-8: quote, backslash and control
 * characters escaped. */
void dept_buf_json_string(dept_buf *b, const char *s, size_t n);

/* Whether n bytes are well-formed UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF). */
bool dept_utf8_valid(const char *s, size_t n);

/* Read a body that is exactly one object with one member, "department", whose value is a
 * non-empty string of at most cap - 1 bytes (after unescaping) without control characters.
 * Returns true with the value in out (NUL-terminated) and its length in *len; false with a
 * short reason in *why (a static string). */
bool dept_json_department(const char *body, size_t n, char *out, size_t cap, size_t *len,
                          const char **why);

#endif
