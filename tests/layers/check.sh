#!/bin/sh
# Each layer compiles against an include root holding only its own folder, the core and the
# narrow headers other layers declare for it (CMakeLists.txt, MODCACHE_SEES_*). This compiles
# one-line sources the way each layer's sources are compiled and checks that a wrong-way
# include fails while the declared ones build, then that the build's check of includes that
# climb out of a layer's folder ran and refuses them.
set -u
cc=$1
build_dir=$2
source_dir=$3
cmake=${4:-cmake}
deps=$(pkg-config --cflags liburcu-memb libmicrohttpd hiredis yaml-0.1 2>/dev/null)
status=0
probe() { # layer header want(ok|refused)
  if printf '#include "%s"\n' "$2" | $cc -std=c11 -D_GNU_SOURCE -fsyntax-only -I"$source_dir/include" \
       -I"$build_dir/layers/$1" $deps -x c - 2>/dev/null; then got=ok; else got=refused; fi
  if [ "$got" = "$3" ]; then
    echo "ok: $1 including $2: $got"
  else
    echo "FAIL: $1 including $2: $got, want $3"
    status=1
  fi
}
probe host cached/cached_internal.h refused
probe host cache/cache_internal.h refused
probe host cache/table.h refused
probe host cached/cached_host.h ok
probe host key/keylist.h ok
probe host core/alloc.h ok
probe host host/host_internal.h ok
probe bus host/host_internal.h refused
probe bus cached/cached_internal.h refused
probe bus key/keylist.h ok
probe config host/host_internal.h refused
probe config cache/cache_internal.h refused
probe cached cache/cache_internal.h refused
probe cached cache/entry.h refused
probe cached host/host_internal.h refused
probe cached cache/cache_cached.h ok
probe cached cached/cached_internal.h ok
probe cached key/key_internal.h ok
probe host key/key_internal.h refused
probe cache cached/cached_internal.h refused
probe cache cache/cache_internal.h ok
probe key cache/cache_internal.h refused
probe core key/keylist.h refused

# The compiler also looks next to the including file, which the include root cannot stop: the
# build refuses an include that climbs out of a layer's folder (cmake/check_layer_includes.cmake,
# run before each layer compiles). It passed on every layer of this build, and it refuses the
# ways round the root.
for layer in core key cache cached config bus host; do
  if [ -f "$build_dir/layers/$layer.includes-checked" ]; then
    echo "ok: the build checked the includes of lib/$layer"
  else
    echo "FAIL: the build did not check the includes of lib/$layer"
    status=1
  fi
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/host"
climb() { # include want(ok|refused)
  printf '#include %s\n' "$1" > "$work/host/probe.c"
  if "$cmake" -DLAYER_DIR="$work/host" -P "$source_dir/cmake/check_layer_includes.cmake" >/dev/null 2>&1; then
    got=ok
  else
    got=refused
  fi
  if [ "$got" = "$2" ]; then
    echo "ok: lib/host/*.c including $1: $got by the build"
  else
    echo "FAIL: lib/host/*.c including $1: $got by the build, want $2"
    status=1
  fi
}
climb '"../cached/cached_internal.h"' refused
climb '"core/../cached/cached_internal.h"' refused
climb '"host/../cache/entry.h"' refused
climb "\"$source_dir/lib/cached/cached_internal.h\"" refused
climb "<$source_dir/lib/cache/cache_internal.h>" refused
climb '"cached/cached_host.h"' ok
climb '<stdio.h>' ok
exit $status
