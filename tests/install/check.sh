#!/bin/sh
# Installs the built library into a scratch prefix, then builds and runs a small program
# against it both ways: CMake's find_package (shared and static) and pkg-config.
set -eu
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

cmake --install "$build_dir" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'libmodcache.so.2' -exec dirname {} \; | head -n 1)
test -n "$libdir" || { echo "no versioned shared library installed"; exit 1; }
test -f "$libdir/libmodcache.a" || { echo "no static library installed"; exit 1; }
test -f "$libdir/pkgconfig/modcache.pc" || { echo "no modcache.pc installed"; exit 1; }
test -f "$prefix/include/modcache.h" || { echo "no umbrella header installed"; exit 1; }

echo "== find_package(modcache)"
cmake -S "$source_dir/tests/install/consumer" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/consumer/consumer_shared"
"$work/consumer/consumer_static"
# The shared build must really load the installed shared object.
LD_LIBRARY_PATH="$libdir" ldd "$work/consumer/consumer_shared" | grep -q "$libdir/libmodcache.so.2"

echo "== pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$work/pc_shared" "$source_dir/tests/install/consumer/consumer.c" $(pkg-config --cflags --libs modcache)
LD_LIBRARY_PATH="$libdir" "$work/pc_shared"
cc -static-libgcc -o "$work/pc_static" "$source_dir/tests/install/consumer/consumer.c" \
  $(pkg-config --cflags modcache) "$libdir/libmodcache.a" $(pkg-config --static --libs-only-l modcache | sed 's/-lmodcache//')
"$work/pc_static"
echo "install check passed"
