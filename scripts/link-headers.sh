#!/usr/bin/env bash
# bcc compiles against /lib/modules/$(uname -r)/{build,source}. Link them to
# Debian's kernel headers only when no working link exists: a node whose
# kernel ships its own headers (or that an operator wired by hand) keeps them.
# Headers of the running kernel's version are preferred; headers of another
# version are a last resort, with a warning. Overridable for tests:
# KVER, MODULES_DIR (default /lib/modules), SRC_DIR (default /usr/src).
set -euo pipefail
kver=${KVER:-$(uname -r)}
modules=${MODULES_DIR:-/lib/modules}/$kver
src=${SRC_DIR:-/usr/src}

works() {  # a header tree bcc can build against
  [ -f "$1/include/generated/autoconf.h" ] || [ -f "$1/Makefile" ]
}

if works "$modules/build"; then
  exit 0
fi
if [ -e "$modules/build" ] && [ ! -L "$modules/build" ]; then
  echo "setup: $modules/build exists but holds no kernel headers; left alone" >&2
  exit 1
fi
arch=$(ls -d "$src/linux-headers-$kver" 2>/dev/null || true)
common=""
if [ -z "$arch" ]; then
  arch=$(ls -d "$src"/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1 || true)
  common=$(ls -d "$src"/linux-headers-*-common 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$arch" ]; then
    echo "setup: no kernel headers under $src for $kver" >&2
    exit 1
  fi
  echo "setup: warning: no headers for kernel $kver; linking $arch (another kernel)" >&2
fi
mkdir -p "$modules"
ln -sfn "$arch" "$modules/build"
if [ -n "$common" ] && ! works "$modules/source"; then
  if [ -e "$modules/source" ] && [ ! -L "$modules/source" ]; then
    echo "setup: $modules/source exists and is not a link; left alone" >&2
  else
    ln -sfn "$common" "$modules/source"
  fi
fi
echo "setup: linked $modules/build -> $arch"
