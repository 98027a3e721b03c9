#!/bin/sh
# Installs the built libraries and programs into a scratch prefix, then uses them as a user
# outside the tree would, never with LD_LIBRARY_PATH: programs built with CMake's
# find_package (cache only, shared and static; the host) and with pkg-config, a module built
# with pkg-config and loaded by the installed mchost, which must start and serve by itself.
set -eu
build_dir=$1
source_dir=$2
work=$(mktemp -d)
host_pid=
trap '[ -z "$host_pid" ] || kill "$host_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
prefix="$work/prefix"
unset LD_LIBRARY_PATH || true
fail() { echo "install check: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$prefix" >/dev/null
base=$(find "$prefix" -name 'libmodcache.so.[0-9]*' ! -name '*.*.*.*' | head -n 1)
test -n "$base" || fail "no versioned libmodcache.so installed"
libdir=$(dirname "$base")
soname=$(basename "$base")
host_lib="$libdir/libmodcache-host.${soname#libmodcache.}"
test -f "$host_lib" || fail "no $host_lib installed"
for f in libmodcache.a libmodcache-host.a pkgconfig/modcache.pc pkgconfig/modcache-host.pc; do
  test -f "$libdir/$f" || fail "no $f installed"
done
test -f "$prefix/include/modcache.h" || fail "no umbrella header installed"

echo "== the layers as libraries"
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }
runpath() { readelf -d "$1" | sed -n 's/.*(RUNPATH).*\[\(.*\)\].*/\1/p'; }
if needed "$base" | grep -E 'libyaml|libmicrohttpd|libhiredis'; then
  fail "libmodcache needs the host's dependencies"
fi
needed "$host_lib" | grep -qx "$soname" || fail "libmodcache-host does not link $soname"
needed "$host_lib" | grep -q '^libmicrohttpd' || fail "libmodcache-host does not link libmicrohttpd"

echo "== RUNPATH"
rel=$(realpath --relative-to="$prefix/bin" "$libdir")
for p in mchost mcctl; do
  rp=$(runpath "$prefix/bin/$p")
  case ":$rp:" in *":\$ORIGIN/$rel:"*) ;; *) fail "$p: RUNPATH '$rp', want \$ORIGIN/$rel" ;; esac
done
case ":$(runpath "$host_lib"):" in *':$ORIGIN:'*) ;; *) fail "libmodcache-host: no \$ORIGIN RUNPATH" ;; esac

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
for m in modcache modcache-host; do
  for flag in $(pkg-config --cflags "$m"); do
    case "$flag" in
      -I*) [ "$(realpath "${flag#-I}")" = "$(realpath "$prefix/include")" ] || fail "$m: Cflags $flag" ;;
      *) fail "$m: Cflags carry $flag, which a user's compile does not need" ;;
    esac
  done
done
pkg-config --libs modcache | grep -q -- '-lmodcache' || fail "modcache: Libs"
if pkg-config --libs modcache-host | grep -qE -- '-lyaml|-lmicrohttpd|-lhiredis'; then
  fail "modcache-host: the host's dependencies in Libs (they belong in Libs.private)"
fi
pkg-config --static --libs modcache-host | grep -q -- '-lmicrohttpd' || fail "modcache-host: no -lmicrohttpd for static links"

echo "== find_package(modcache)"
cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
"$work/consumer/consumer_shared"
"$work/consumer/consumer_static"
"$work/consumer/consumer_host"
# The shared builds really load the installed shared objects; the cache-only one nothing else.
ldd "$work/consumer/consumer_shared" | grep -q "$libdir/$soname" || fail "consumer_shared does not load $libdir/$soname"
if ldd "$work/consumer/consumer_shared" | grep -E 'libmodcache-host|libyaml|libmicrohttpd|libhiredis'; then
  fail "a cache-only program loads the host's libraries"
fi
ldd "$work/consumer/consumer_host" | grep -q "$host_lib" || fail "consumer_host does not load $host_lib"

echo "== find_package(modcache) with only the cache layer's dependencies installed"
# pkg-config sees the .pc files of xxhash, liburcu and jemalloc alone, as on a machine without
# the host's development packages: programs that cache, and ones linking the shared host, build;
# asking for modcache::host_static there fails at configure time.
pcdir="$work/pc-cache-only"
mkdir "$pcdir"
for m in libxxhash liburcu-memb jemalloc; do
  cp "$(pkg-config --variable=pcfiledir "$m")/$m.pc" "$pcdir/" || fail "no $m.pc to copy"
done
PKG_CONFIG_LIBDIR="$pcdir" cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer-cache-only" \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null || fail "find_package(modcache) needs the host's dependencies"
PKG_CONFIG_LIBDIR="$pcdir" cmake --build "$work/consumer-cache-only" >/dev/null || fail "cache-only consumer build"
"$work/consumer-cache-only/consumer_shared"
"$work/consumer-cache-only/consumer_static"
"$work/consumer-cache-only/consumer_host"
if PKG_CONFIG_LIBDIR="$pcdir" cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer-host-static" \
     -DCMAKE_PREFIX_PATH="$prefix" -DCONSUMER_COMPONENTS=host_static >/dev/null 2>&1; then
  fail "find_package(modcache COMPONENTS host_static) passed without the host's dependencies"
fi
cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer-host-static" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCONSUMER_COMPONENTS=host_static >/dev/null || fail "find_package(modcache COMPONENTS host_static)"

echo "== pkg-config builds"
cc -std=c11 -Wall -Wextra -Werror -o "$work/pc_shared" "$source_dir/tests/install/consumer/consumer.c" \
  $(pkg-config --cflags --libs modcache) -Wl,-rpath,"$libdir"
"$work/pc_shared"
cc -static-libgcc -o "$work/pc_static" "$source_dir/tests/install/consumer/consumer.c" \
  $(pkg-config --cflags modcache) "$libdir/libmodcache.a" $(pkg-config --static --libs-only-l modcache | sed 's/-lmodcache//')
"$work/pc_static"
cc -std=c11 -Wall -Wextra -Werror -fPIC -shared -o "$work/installed.so" "$source_dir/tests/install/consumer/module.c" \
  $(pkg-config --cflags --libs modcache-host)

echo "== the installed mchost"
cat > "$work/host.yaml" <<YAML
server:
  listen: 127.0.0.1:0
modules:
  - module: $work/installed.so
YAML
"$prefix/bin/mchost" --check -c "$work/host.yaml" || fail "mchost --check exited $?"
: > "$work/host.log" # before the background start: the first sed below may run before the child opens it
"$prefix/bin/mchost" -c "$work/host.yaml" > "$work/host.log" 2>&1 &
host_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving HTTP on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/host.log")
  [ -n "$port" ] && break
  kill -0 "$host_pid" 2>/dev/null || { cat "$work/host.log"; fail "mchost exited"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/host.log"; fail "mchost did not start serving"; }
"$prefix/bin/mcctl" --url "http://127.0.0.1:$port" metrics > "$work/metrics.txt" || fail "mcctl metrics"
grep -q 'modcache_cache_entries{cache="installed.lookup"} 0' "$work/metrics.txt" || fail "no installed.lookup in the metrics"
if command -v curl >/dev/null 2>&1; then
  [ "$(curl -fsS "http://127.0.0.1:$port/_modcache/client/installed")" = installed ] || fail "module resource"
fi
kill "$host_pid"
wait "$host_pid" || fail "mchost did not stop cleanly"
host_pid=
echo "install check passed"
