#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine of this kind: Debian's bcc,
# bpftool and kernel headers wired for the running kernel, and a project venv
# in which `import bcc` works. Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
for pkg in python3-bpfcc bpftool linux-headers-amd64 iproute2 iptables curl iputils-ping util-linux git gnupg openssh-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# bcc looks for headers under /lib/modules/$(uname -r)/{build,source}. This
# kernel ships none, so point them at Debian's split header trees.
kver=$(uname -r)
hdr_arch=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1)
hdr_common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1)
if [ -z "$hdr_arch" ] || [ -z "$hdr_common" ]; then
  echo "setup: Debian kernel headers not found under /usr/src" >&2; exit 1
fi
mkdir -p "/lib/modules/$kver"
[ "$(readlink "/lib/modules/$kver/build" || true)" = "$hdr_arch" ] || ln -sfn "$hdr_arch" "/lib/modules/$kver/build"
[ "$(readlink "/lib/modules/$kver/source" || true)" = "$hdr_common" ] || ln -sfn "$hdr_common" "/lib/modules/$kver/source"

# bpffs is not mounted at boot on this machine kind.
grep -q " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e '.[dev]'
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi

# Make Debian's bcc importable without the rest of Debian's site-packages.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$VENV/debian-bcc"
ln -sfn /usr/lib/python3/dist-packages/bcc "$VENV/debian-bcc/bcc"
echo "$(cd "$VENV/debian-bcc" && pwd)" > "$site/debian-bcc.pth"
"$VENV/bin/python" -c 'import bcc' || { echo "setup: bcc does not import from the venv" >&2; exit 1; }
