# docs/doxygen_filter.awk: Doxygen's INPUT_FILTER for include/: reads the headers' plain C
# comments as documentation, for Doxygen only (the headers keep their /* */ comments).
#
# - The file's first comment documents the file.
# - A comment directly above a declaration (only #if, #ifdef or #ifndef lines between)
#   documents it. Declarations that follow it with no blank line and no comment of their own
#   share it: they become one member group (the Doxyfile sets DISTRIBUTE_GROUP_DOC), except a
#   struct, union or enum definition, which Doxygen documents on its own.
# - A comment after code on the same line documents that member (/**< */).
# - Other comments (section rules, prose followed by a blank line) stay plain; a section rule
#   that opens a documenting comment ("---- title ----") becomes its first sentence.
# - Comment text outside double quotes is escaped where Doxygen would read commands or markup
#   (\ @ < > & % # *), and "e.g. " or "i.e. " do not end a brief description.
# - Lines indented further than the text before them (examples, not list items) are shown
#   verbatim.
# - Forward declarations (struct x;) between a comment and its declaration are moved above
#   the comment, so that the comment reaches the declaration it was written for.
# Lines are never added or removed, so Doxygen's warnings name the header's own line numbers.
# With -v debug=1, each member group is listed on stderr.

{ L[NR] = $0 }

END {
    n = NR
    hoist_forward_declarations()
    find_comments()
    for (i = 1; i <= n; i++)
        if (cs[i])
            classify(i)
    for (i = 1; i <= n; i++)
        if (cs[i] && kind[i] != "")
            find_verbatim(i)
    for (i = 1; i <= n; i++)
        print render(i)
}

# Replace every occurrence of `from` (a plain string) in t by `to`.
function replace_all(t, from, to,    out, p) {
    out = ""
    while ((p = index(t, from)) > 0) {
        out = out substr(t, 1, p - 1) to
        t = substr(t, p + length(from))
    }
    return out t
}

# Escape comment text outside double quotes and `code spans`: Doxygen shows those as written,
# and reads \ @ < > & % # * elsewhere as commands or markup. `inq` (in quotes) and `inb` (in
# backticks) carry an open span from one line of a comment to the next.
function escape(t,    out, p, b, c, seg) {
    out = ""
    while (t != "") {
        p = index(t, "\"")
        b = index(t, "`")
        if (p == 0 || (b > 0 && b < p))
            p = b
        seg = p ? substr(t, 1, p - 1) : t
        c = p ? substr(t, p, 1) : ""
        out = out (inq || inb ? seg : escape_plain(seg)) c
        t = p ? substr(t, p + 1) : ""
        if (c == "\"" && !inb)
            inq = !inq
        else if (c == "`" && !inq)
            inb = !inb
    }
    return out
}

# Escape one stretch of text outside quotes and code spans.
function escape_plain(t) {
    t = replace_all(t, "\\", "\\\\")
    t = replace_all(t, "@", "\\@")
    t = replace_all(t, "<", "\\<")
    t = replace_all(t, ">", "\\>")
    t = replace_all(t, "&", "\\&")
    t = replace_all(t, "%", "\\%")
    t = replace_all(t, "#", "\\#")
    t = replace_all(t, "*", "\\*")
    t = replace_all(t, "e.g. ", "e.g.\\ ")
    t = replace_all(t, "i.e. ", "i.e.\\ ")
    return t
}

# Move `struct x;` lines that follow a comment above it (see the notes at the top).
function hoist_forward_declarations(    i, e, k, j, tmp) {
    for (i = 1; i <= n; i++) {
        if (L[i] !~ /^[ \t]*\/\*/)
            continue
        for (e = i; e <= n && !index(substr(L[e], e == i ? index(L[e], "/*") + 2 : 1), "*/"); e++)
            ;
        k = 0
        while (e + k + 1 <= n && L[e + k + 1] ~ /^[ \t]*struct[ \t]+[A-Za-z_0-9]+[ \t]*;[ \t]*$/)
            k++
        if (k > 0) {
            for (j = 1; j <= k; j++)
                tmp[j] = L[e + j]
            for (j = e; j >= i; j--)
                L[j + k] = L[j]
            for (j = 1; j <= k; j++)
                L[i + j - 1] = tmp[j]
            i += k
        }
        i = e + k
    }
}

# Per line: com (inside a comment), cs (a comment starts the line; cend: its last line),
# trail (position of a comment after code), code (the line without its comment).
function find_comments(    i, s, p, open, first, start) {
    open = 0
    first = 0
    for (i = 1; i <= n; i++) {
        s = L[i]
        com[i] = 0; cs[i] = 0; trail[i] = 0; code[i] = ""; tcont[i] = 0
        if (open) {
            com[i] = 1
            tcont[i] = open == 2
            if (index(s, "*/")) {
                if (open == 1)
                    cend[start] = i
                open = 0
            }
            continue
        }
        if (s ~ /^[ \t]*\/\*/) {
            com[i] = 1
            cs[i] = 1
            start = i
            if (!first) {
                first = 1
                isfile[i] = 1
            }
            if (index(substr(s, index(s, "/*") + 2), "*/"))
                cend[i] = i
            else
                open = 1
            continue
        }
        if (s !~ /^[ \t]*$/)
            first = 1
        p = index(s, "/*")
        if (p) {
            code[i] = substr(s, 1, p - 1)
            trail[i] = p
            if (!index(substr(s, p + 2), "*/"))
                open = 2
        } else {
            code[i] = s
        }
    }
}

# Line i holds neither code nor comment.
function blank(i) { return !com[i] && code[i] ~ /^[ \t]*$/ }

# A line that can start a declaration: code that is neither a preprocessor line (other than
# #define) nor the closing brace of the enclosing struct or enum.
function decl_start(i) {
    if (i > n || com[i] || blank(i))
        return 0
    if (code[i] ~ /^[ \t]*#/)
        return code[i] ~ /^[ \t]*#[ \t]*define[ \t]/
    return code[i] !~ /^[ \t]*}/
}

# A struct, union or enum definition starts at line i: a compound, which Doxygen documents
# apart from member groups, so it never shares the comment of the declaration before it.
function compound(i) {
    return code[i] ~ /^[ \t]*(typedef[ \t]+)?(struct|union|enum)[^;]*[{]/
}

# Occurrences of the character ch in t.
function count(t, ch,    c, p) {
    c = 0
    while ((p = index(t, ch)) > 0) {
        c++
        t = substr(t, p + 1)
    }
    return c
}

# The last line of the declaration starting at line i.
function decl_end(i,    j, pd, bd) {
    if (code[i] ~ /^[ \t]*#/) {
        for (j = i; j < n && L[j] ~ /\\[ \t]*$/; j++)
            ;
        return j
    }
    pd = 0
    bd = 0
    for (j = i; j <= n; j++) {
        if (com[j] && !trail[j])
            continue
        pd += count(code[j], "(") - count(code[j], ")")
        bd += count(code[j], "{") - count(code[j], "}")
        if (pd <= 0 && bd <= 0 && code[j] ~ /[;},][ \t]*$/)
            return j
    }
    return n
}

# Decide what the comment starting at line s documents: kind "file", "doc" (and group), or
# nothing (plain).
function classify(s,    e, d, first, last, j, members, names) {
    e = cend[s]
    if (isfile[s]) {
        kind[s] = "file"
        return
    }
    for (d = e + 1; d <= n && !com[d] && code[d] ~ /^[ \t]*#[ \t]*if/; d++)
        ;
    if (!decl_start(d))
        return
    kind[s] = "doc"
    last = decl_end(d)
    first = d
    members = 1
    names = code[d]
    for (j = last + 1; decl_start(j) && !trail[j] && !compound(j) && code[j] !~ /^[ \t]*#[ \t]*if/; j = last + 1) {
        last = decl_end(j)
        first = j
        members++
        names = names " | " code[j]
    }
    if (members > 1) {
        group[s] = 1
        # A comment after a #define would become part of the macro: close on the next line.
        if (code[first] ~ /^[ \t]*#/)
            close_before[last + 1] = 1
        else
            close_after[last] = 1
        if (debug)
            printf("%s:%d: group of %d, lines %d-%d: %s\n", FILENAME, s, members, d, last, names) > "/dev/stderr"
    }
}

# Spaces between a comment line's leading "*" (or the opening "/*") and its text.
function indent(i,    t) {
    t = L[i]
    if (cs[i])
        t = substr(t, index(t, "/*") + 2)
    else if (match(t, /^[ \t]*\*/))
        t = substr(t, RLENGTH + 1)
    match(t, /^ */)
    if (substr(t, RLENGTH + 1) ~ /^(\*\/)?[ \t]*$/)
        return -1
    return RLENGTH
}

# Line i's text starts a list item ("- " or "1. ").
function list_item(i,    t) {
    t = L[i]
    t = cs[i] ? substr(t, index(t, "/*") + 2) : t
    return t ~ /^[ \t]*\*?[ \t]*(- |[0-9]+\. )/
}

# Lines indented further than the text before them (an example block, not a list item's
# continuation) are shown as written: verb (inside), verb_open (after this line), verb_close.
function find_verbatim(s,    i, e, open) {
    e = cend[s]
    open = 0
    for (i = s + 1; i <= e; i++) {
        if (!open && indent(i) >= 3 && indent(i - 1) >= 0 && indent(i - 1) <= 1 && !list_item(i - 1)) {
            verb_open[i - 1] = 1
            open = 1
        } else if (open && indent(i) < 3) {
            verb_close[i - 1] = 1
            open = 0
        }
        verb[i] = open
    }
    if (open)
        verb_close[e] = 1
}

# Line i as Doxygen should read it.
function render(i,    s, out, j) {
    s = L[i]
    if (com[i]) {
        for (j = i; j > 0 && !cs[j] && !tcont[j]; j--)
            ;
        if (tcont[i])
            out = comment_text(s, 1)
        else if (kind[j] == "")
            out = s
        else if (verb[i])
            out = unstarred(s)
        else if (cs[i])
            out = comment_start(s, i, j)
        else
            out = comment_text(s, 1)
        if (verb_open[i])
            out = out " @verbatim"
        if (verb_close[i])
            out = before_end(out, " @endverbatim")
        if (cs[i] == 0 && !tcont[i] && kind[j] == "file" && i == cend[j])
            out = file_tag(out)
    } else if (trail[i]) {
        inq = inb = 0
        out = code[i] "/**<" comment_text(substr(s, trail[i] + 2))
    } else {
        out = s
    }
    if (close_after[i])
        out = out " /**@}*/"
    if (close_before[i])
        out = "/**@}*/ " out
    return out
}

# The first line of a documenting comment.
function comment_start(s, i, j,    p, out, rest) {
    p = index(s, "/*")
    inq = inb = 0
    rest = substr(s, p + 2)
    # A section rule that starts a doc comment ("---- title ----") becomes its first sentence.
    if (rest ~ /^ *--+ .*[^ -] *--+ *$/) {
        sub(/^ *--+ /, " ", rest)
        sub(/ *--+ *$/, ".", rest)
    }
    out = substr(s, 1, p - 1) (group[j] ? "/**@{*/ " : "") "/**" comment_text(rest)
    if (kind[j] == "file" && cend[j] == i)
        out = file_tag(out)
    return out
}

# Escape the text of a comment line, leaving its leading " * " (cont: a continuation line) and
# its closing */ (and what follows) alone.
function comment_text(t, cont,    q, lead) {
    lead = ""
    if (cont && match(t, /^[ \t]*\*/) && substr(t, RLENGTH + 1, 1) != "/") {
        lead = substr(t, 1, RLENGTH)
        t = substr(t, RLENGTH + 1)
    }
    q = index(t, "*/")
    if (q == 0)
        return lead escape(t)
    return lead escape(substr(t, 1, q - 1)) substr(t, q)
}

# A file comment ends with @file, which makes it the file's documentation.
function file_tag(t) {
    return before_end(t, " @file ")
}

# A verbatim line without its leading "*", which Doxygen would show.
function unstarred(t) {
    if (match(t, /^[ \t]*\*/) && substr(t, RLENGTH + 1, 1) != "/")
        return substr(t, 1, RLENGTH - 1) " " substr(t, RLENGTH + 1)
    return t
}

# t with `add` before its closing */, or at its end when it has none.
function before_end(t, add,    q) {
    q = index(t, "*/")
    if (q == 0)
        return t add
    return substr(t, 1, q - 1) add substr(t, q)
}
