#!/bin/sh
# Every C block of README.md and docs/*.md compiles with -std=c11 -Wall -Wextra -Werror.
#
# The line just before each ```c fence states how its block is compiled:
#   <!-- compile: file -->           a whole translation unit, as it is
#   <!-- compile: module GET PATH => BODY -->
#                                    a whole module: built as a shared object against the
#                                    build's libmodcache-host, loaded by mchost (--check, then
#                                    served), and GET PATH must answer BODY
#   <!-- compile: excerpt FILE -->   lines quoted from FILE (a line "..." stands for lines left
#                                    out; each run must appear in FILE in order, verbatim), and
#                                    FILE itself compiles with the same flags
#   <!-- compile: top | GIVEN -->    file-scope code; after a line "...", the rest is the body
#                                    of a function
#   <!-- compile: body | GIVEN -->   statements: the body of a function
# `top` and `body` blocks are wrapped in the stated wrapper: <modcache.h> and the C11 headers
# stdbool, stddef, stdint, stdio, stdlib and string, then GIVEN (declarations the text assumes,
# such as `void *db;`), then the block. A block without such a line fails the check.
set -u
source_dir=$1
build_dir=$2
mchost=$3
cc=${CC:-cc}
work=$(mktemp -d)
host_pid=
trap '[ -z "$host_pid" ] || kill "$host_pid" 2>/dev/null; rm -rf "$work"' EXIT
flags="-std=c11 -Wall -Wextra -Werror -I$source_dir/include"
status=0
fail() { echo "FAIL: $*"; status=1; }

# Split every block into $work/<n>.c with $work/<n>.meta: "<file>:<line>\t<annotation>".
n=0
for md in "$source_dir/README.md" "$source_dir"/docs/*.md; do
  awk -v out="$work" -v md="${md#$source_dir/}" -v start="$n" '
    BEGIN { n = start }
    /^```c$/ { n++; on = 1; ann = prev; sub(/^<!-- compile: */, "", ann); sub(/ *-->$/, "", ann);
               if (prev !~ /^<!-- compile: /) ann = "";
               printf "%s:%d\t%s\n", md, FNR, ann > (out "/" n ".meta"); printf "" > (out "/" n ".c"); next }
    /^```/ && on { on = 0; next }
    on { print >> (out "/" n ".c") }
    { prev = $0 }
    END { print n > (out "/count") }' "$md"
  n=$(cat "$work/count")
done
[ "$n" -gt 0 ] || { echo "no C blocks found"; exit 1; }

prelude() {
  printf '#include <modcache.h>\n#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n'
  printf '#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n'
}

# The module of a `module` block under mchost: --check, then one GET while it serves.
serve_module() { # so request(GET PATH => BODY) where
  so=$1 spec=$2 where=$3
  path=$(printf '%s' "$spec" | sed -n 's/^GET \([^ ]*\) => .*/\1/p')
  want=$(printf '%s' "$spec" | sed -n 's/^GET [^ ]* => //p')
  printf 'server:\n  listen: 127.0.0.1:0\nmodules:\n  - module: %s\n' "$so" > "$work/host.yaml"
  "$mchost" --check -c "$work/host.yaml" > "$work/check.log" 2>&1 || { cat "$work/check.log"; fail "$where: mchost --check"; return; }
  "$mchost" -c "$work/host.yaml" > "$work/host.log" 2>&1 &
  host_pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/.*serving HTTP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/host.log")
    [ -n "$port" ] && break
    kill -0 "$host_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    cat "$work/host.log"; fail "$where: mchost did not serve the module"
  else
    got=$(bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET %s HTTP/1.0\r\n\r\n" "$2" >&3 && cat <&3' sh "$port" "$path" | sed '1,/^\r*$/d')
    [ "$got" = "$want" ] && echo "ok: $where: GET $path => $got" || fail "$where: GET $path answered '$got', want '$want'"
  fi
  kill "$host_pid"; wait "$host_pid" || fail "$where: mchost did not stop cleanly"; host_pid=
}

i=0
while [ "$i" -lt "$n" ]; do
  i=$((i + 1))
  where=$(cut -f1 "$work/$i.meta")
  ann=$(cut -f2- "$work/$i.meta")
  mode=${ann%% *}
  arg=${ann#"$mode"}; arg=${arg# }
  given=
  case "$ann" in *'|'*) given=${ann#*|}; arg=${arg%%|*} ;; esac
  src="$work/$i.c"
  case "$mode" in
    file)
      $cc $flags -c -o "$work/$i.o" "$src" || fail "$where: does not compile" ;;
    module)
      if $cc $flags -fPIC -shared -fvisibility=hidden -o "$work/$i.so" "$src" -L"$build_dir" -lmodcache-host -lmodcache \
           -Wl,-rpath,"$build_dir"; then
        serve_module "$work/$i.so" "$arg" "$where"
      else
        fail "$where: the module does not build"
      fi ;;
    excerpt)
      file="$source_dir/${arg% }"
      [ -f "$file" ] || { fail "$where: no file $arg"; continue; }
      # Each run of lines between "..." must occur in the file, in order.
      if ! awk -v f="$file" '
          BEGIN { while ((getline l < f) > 0) src[++ns] = l; pos = 1 }
          { lines[++nl] = $0 }
          END {
            r = 0
            for (k = 1; k <= nl + 1; k++) {
              if (k > nl || lines[k] ~ /^[ \t]*\.\.\.[ \t]*$/) {
                if (r > 0) {
                  found = 0
                  for (s = pos; s + r - 1 <= ns && !found; s++) {
                    ok = 1
                    for (j = 0; j < r && ok; j++) if (src[s + j] != run[j]) ok = 0
                    if (ok) { found = 1; pos = s + r }
                  }
                  if (!found) { print "not in the file, in order: " run[0]; exit 1 }
                }
                r = 0
              } else run[r++] = lines[k]
            }
          }' "$src"; then
        fail "$where: the excerpt differs from $arg"
      else
        dir=$(dirname "$file")
        $cc $flags -D_GNU_SOURCE -fsyntax-only -I"$dir" "$file" || fail "$where: $arg does not compile"
      fi ;;
    top)
      { prelude; printf '%s\n' "$given"
        awk 'BEGIN { body = 0 } /^[ \t]*\.\.\.[ \t]*$/ && !body { body = 1; print "void mc_doc_block(void);\nvoid mc_doc_block(void)\n{"; next } { print } END { if (body) print "}" }' "$src"
      } > "$work/$i.wrapped.c"
      $cc $flags -c -o "$work/$i.o" "$work/$i.wrapped.c" || fail "$where: does not compile in the top-level wrapper" ;;
    body)
      { prelude; printf '%s\n' "$given"; printf 'void mc_doc_block(void);\nvoid mc_doc_block(void)\n{\n'; cat "$src"; printf '}\n'; } > "$work/$i.wrapped.c"
      $cc $flags -c -o "$work/$i.o" "$work/$i.wrapped.c" || fail "$where: does not compile in the function-body wrapper" ;;
    *)
      fail "$where: no <!-- compile: ... --> line before the block" ; continue ;;
  esac
  [ "$status" -eq 0 ] && echo "ok: $where ($mode)"
done
echo "$n C block(s) checked"
exit $status
