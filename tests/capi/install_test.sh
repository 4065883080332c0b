#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds small consumers against it: C through
# find_package(uvit) (uvit::uvit), C through pkg-config, and C++ through uvit::uvit_static.
# install_test.sh BUILD_DIR
set -uo pipefail
BUILD=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
P=$tmp/prefix
# A sanitized build's libuvit.so and libuvit.a call the sanitizer runtime, which clang links into
# executables only: the consumers are then built by the build's compilers with its sanitizers
# (docs/fuzzing.md). Plain builds use the system `cc` and CMake's defaults.
san=$(sed -n 's/^UVIT_SANITIZE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
CC=cc SAN=() CMAKE_SAN=()
case ${san:-OFF} in
  OFF|off|0|FALSE|false|NO|no) ;;
  *) CC=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
     [ "$san" = thread ] && SAN=(-fsanitize=thread) || SAN=(-fsanitize=address,undefined)
     SAN+=(-fsanitize-link-c++-runtime -lstdc++)  # UBSan's C++ part, in C links too
     CMAKE_SAN=(-DCMAKE_C_COMPILER="$CC"
                -DCMAKE_CXX_COMPILER="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")"
                -DCMAKE_EXE_LINKER_FLAGS="${SAN[*]}") ;;
esac
cmake --install "$BUILD" --prefix "$P" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
LIB=$(dirname "$(find "$P" -name 'libuvit.so.0' | head -1)")
[ -n "$LIB" ] && [ -d "$LIB" ] || { fail "no libuvit.so.0 under $P"; find "$P"; exit 1; }
for f in bin/uvit include/uvit.h include/uvit/pipeline.hpp; do [ -e "$P/$f" ] || fail "missing $f"; done
for f in libuvit.so libuvit.a pkgconfig/uvit.pc cmake/uvit/uvitConfig.cmake \
         cmake/uvit/uvitConfigVersion.cmake cmake/uvit/uvitTargets.cmake; do
  [ -e "$LIB/$f" ] || fail "missing lib/$f"
done
readelf -d "$LIB/libuvit.so.0" | grep -q 'SONAME.*\[libuvit.so.0\]' || fail "SONAME is not libuvit.so.0"
# Hidden visibility: the C API is all the library exports.
others=$(nm -D --defined-only "$LIB/libuvit.so.0" | awk '{print $3}' | grep -v '^uvit_' | grep -v '^_init$\|^_fini$' || true)
[ -z "$others" ] || fail "exports beyond uvit_*: $(echo "$others" | head -5 | tr '\n' ' ')"
nm -D --defined-only "$LIB/libuvit.so.0" | grep -q ' T uvit_generate$' || fail "uvit_generate not exported"
"$P/bin/uvit" --version >"$tmp/v" || fail "installed uvit --version"

cmake_consumer() {  # cmake_consumer DIR WHAT: configure, build and run DIR's `consumer`
  if cmake -S "$1" -B "$1/b" -G Ninja -DCMAKE_PREFIX_PATH="$P" "${CMAKE_SAN[@]}" >"$tmp/log" 2>&1 &&
     cmake --build "$1/b" >>"$tmp/log" 2>&1; then
    "$1/b/consumer" || fail "$2 run"
  else
    fail "$2 build"; cat "$tmp/log"
  fi
}

mkdir -p "$tmp/c"
cat >"$tmp/c/main.c" <<'CEOF'
#include <stdio.h>
#include <string.h>
#include <uvit.h>
int main(void) {
  uvit_ctx* ctx = NULL;
  uvit_status s = uvit_ctx_create(NULL, &ctx);
  printf("uvit %s (%s): %s: %s\n", uvit_version(), uvit_commit(), uvit_status_string(s), uvit_last_error());
  return s == UVIT_ERR_INVALID_ARGUMENT && ctx == NULL && strcmp(uvit_version(), "0.1.0") == 0 ? 0 : 1;
}
CEOF
cat >"$tmp/c/CMakeLists.txt" <<'CEOF'
cmake_minimum_required(VERSION 3.22)
project(consumer C)
find_package(uvit 0.1 REQUIRED)
add_executable(consumer main.c)
target_link_libraries(consumer PRIVATE uvit::uvit)
CEOF
cmake_consumer "$tmp/c" "find_package C consumer"
if PKG_CONFIG_PATH=$LIB/pkgconfig "$CC" -std=c99 -Wall -Werror "${SAN[@]}" "$tmp/c/main.c" -o "$tmp/c/pc" \
     $(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --cflags --libs uvit) 2>"$tmp/log"; then
  LD_LIBRARY_PATH=$LIB "$tmp/c/pc" || fail "pkg-config consumer run"
else
  fail "pkg-config consumer build"; cat "$tmp/log"
fi
[ "$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --modversion uvit)" = 0.1.0 ] || fail "uvit.pc version"

mkdir -p "$tmp/cpp"
cat >"$tmp/cpp/main.cpp" <<'CEOF'
#include <cstdio>
#include "uvit/array.hpp"
#include "uvit/metadata.hpp"
int main() {
  const auto kv = uvit::parse_a1111_parameters("a cat\nSteps: 4, Sampler: ddim, Size: 8x6");
  std::printf("uvit %s: %zu fields\n", uvit::version_string(), kv.size());
  // An Array copies under C++17 too (Bytes' allocator rebinds to itself; docs/formats.md).
  const uvit::Array a(uvit::DType::F32, {2, 3});
  const uvit::Array b = a;
  return kv.size() == 6 && kv[5].second == "6" && b.nbytes() == 24 ? 0 : 1;
}
CEOF
cat >"$tmp/cpp/CMakeLists.txt" <<'CEOF'
cmake_minimum_required(VERSION 3.22)
project(consumer_cpp CXX)
set(CMAKE_CXX_STANDARD 17)  # the headers are C++17; the library is built as C++20
find_package(uvit 0.1 REQUIRED)
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE uvit::uvit_static)
CEOF
cmake_consumer "$tmp/cpp" "find_package C++ consumer"

# A program that links uvit::uvit_static and is installed elsewhere than P/bin finds the presets
# and the CLIP vocabulary of the prefix uvit was configured for (CMAKE_INSTALL_FULL_DATADIR/uvit,
# looked at last: docs/configs.md); before, only through its own folder's ../share/uvit or the
# source tree. It runs in a mount namespace where the source tree's configs/ and data/ are hidden
# and P/share stands at the configured data dir, without UVIT_CONFIG_DIR or UVIT_CLIP_VOCAB.
SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
DD=$(sed -n 's/^CMAKE_INSTALL_DATADIR:PATH=//p' "$BUILD/CMakeCache.txt")
[ -n "$DD" ] || DD=$(sed -n 's/^CMAKE_INSTALL_DATAROOTDIR:PATH=//p' "$BUILD/CMakeCache.txt")
DD=${DD:-share}
[[ $DD = /* ]] || DD=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")/$DD
mkdir -p "$tmp/st/elsewhere"
cat >"$tmp/st/main.cpp" <<'CEOF'
#include <cstdio>
#include <exception>
#include "uvit/clip.hpp"
#include "uvit/config.hpp"
int main() {
  try {
    const uvit::Config c = uvit::load_config("fmnist_uvit_tiny");
    std::printf("%s %d %s\n", c.config_name.c_str(), c.net.embed_dim,
                uvit::clip_vocab_path("").c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
CEOF
sed 's/project(consumer_cpp CXX)/project(consumer_static CXX)/' "$tmp/cpp/CMakeLists.txt" >"$tmp/st/CMakeLists.txt"
cmake_consumer "$tmp/st" "static-linked consumer of the presets"
cp "$tmp/st/b/consumer" "$tmp/st/elsewhere/tool"
# P's copy told from the source tree's: the program must print P's embed_dim.
sed -i 's/"embed_dim": 128/"embed_dim": 64/' "$P/share/uvit/configs/fmnist_uvit_tiny.json"
ns=(unshare -m)
[ "$(id -u)" = 0 ] || ns=(unshare -rm)
prefixed() {  # prefixed CMD...: CMD with P/share at the configured data dir, the source's hidden
  "${ns[@]}" bash -c 'mount -t tmpfs tmpfs "$0/configs" && mount -t tmpfs tmpfs "$0/data" &&
    mount --bind "$1" "$2" && shift 2 && exec env -u UVIT_CONFIG_DIR -u UVIT_CLIP_VOCAB "$@"' \
    "$SRC" "$P/share" "$DD" "$@"
}
if [ ! -d "$DD" ]; then
  echo "note: the configured data dir $DD is not a folder here; the static-linked preset check is skipped"
elif ! prefixed true 2>/dev/null; then
  echo "note: no mount namespace here (unshare -m); the static-linked preset check is skipped"
else
  want="fmnist_uvit_tiny 64 $DD/uvit/clip/bpe_simple_vocab_16e6.txt.gz"
  got=$(prefixed "$tmp/st/elsewhere/tool" 2>&1)
  [ "$got" = "$want" ] && echo "ok: a static-linked program elsewhere finds the prefix's presets" ||
    fail "static-linked program outside P/bin: got [$got], want [$want]"
fi
echo "install_test: $fails failure(s)"
exit $fails
