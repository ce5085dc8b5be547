#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine of this kind: Debian's bcc,
# bpftool and kernel headers wired for the running kernel, and a project venv
# in which `import bcc` works. Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
for pkg in python3-bpfcc python3-venv bpftool linux-headers-amd64 iproute2 iptables nftables curl iputils-ping util-linux git gnupg openssh-client; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

bash scripts/link-headers.sh

# bpffs is not mounted at boot on this machine kind.
grep -q " /sys/fs/bpf bpf " /proc/mounts || mount -t bpf bpf /sys/fs/bpf

# The venv's interpreter must be one every user can run (`--validate` needs
# no root): a pyenv under root's home (mode 700) is not. Debian's python3 is.
if [ -z "${PYTHON:-}" ] && [ -x /usr/bin/python3 ] \
   && /usr/bin/python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  PY=/usr/bin/python3
fi
if [ -x "$VENV/bin/python" ] && [ "$(id -u)" = 0 ] \
   && ! setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c 'exec "$0" -c ""' \
        "$(readlink -f "$VENV/bin/python")" 2>/dev/null; then
  # (through sh: setpriv's own exec still resolves the path with root's capabilities)
  echo "setup: rebuilding $VENV with $PY: its interpreter is not usable by other users"
  rm -rf "$VENV"
fi
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
