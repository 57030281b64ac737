#!/usr/bin/env bash
# Build an image equivalent to docker/Dockerfile without any registry: a root filesystem
# assembled from this machine's Node runtime, sshd and a few tools (each with the libraries
# `ldd` lists), this project's dist/, plugins/ and node_modules (without dev-only packages),
# then `docker import`. Used by the system tests and the spawn benchmark.
#   npm run build && docker/build-offline.sh [TAG]      (default mesh:offline)
set -euo pipefail
tag="${1:-mesh:offline}"
root="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$root/dist/src/cli/main.js" ] || { echo "no build in $root/dist: run npm run build first" >&2; exit 2; }
command -v docker >/dev/null || { echo "docker is not installed" >&2; exit 2; }
work="$(mktemp -d /tmp/mesh-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
fs="$work/rootfs"
mkdir -p "$fs"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,lib,lib64,etc/ssh,root,run/sshd,tmp,var/lib/mesh,var/log,var/empty,opt/mesh,proc,sys,dev}
chmod 1777 "$fs/tmp"

copy_bin() { # copy a program and the libraries it links to, at the same paths
  local p; p="$(command -v "$1" || true)"
  [ -n "$p" ] || { echo "missing on this machine: $1" >&2; exit 2; }
  p="$(readlink -f "$p")"
  mkdir -p "$fs$(dirname "$p")"; cp -n "$p" "$fs$p"
  if [ "$(readlink -f "$(command -v "$1")")" != "$(command -v "$1")" ]; then
    mkdir -p "$fs$(dirname "$(command -v "$1")")"; ln -sf "$p" "$fs$(command -v "$1")" 2>/dev/null || true
  fi
  ldd "$p" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$lib" ] || continue
    mkdir -p "$fs$(dirname "$lib")"; cp -nL "$lib" "$fs$lib"
  done
}
for b in node sh dash bash cat mkdir chmod rm mv ls sleep hostname ssh-keygen id env grep touch ps awk head timeout test; do
  case "$(command -v "$b" || true)" in /*) copy_bin "$b" ;; esac
done
copy_bin /usr/sbin/sshd
# the login shell and the tools must be where scripts look for them
[ -e "$fs/bin/sh" ] || ln -s "$(readlink -f "$(command -v sh)")" "$fs/bin/sh"
# name service: files only (glibc's nss_files, when it is a separate library)
for l in /lib/x86_64-linux-gnu/libnss_files.so.2 /usr/lib/x86_64-linux-gnu/libnss_files.so.2; do
  [ -e "$l" ] && { mkdir -p "$fs$(dirname "$l")"; cp -nL "$l" "$fs$l"; }
done
cat >"$fs/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
P
printf 'root:x:0:\nnogroup:x:65534:\n' >"$fs/etc/group"
printf 'root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n' >"$fs/etc/shadow"
chmod 600 "$fs/etc/shadow"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$fs/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' >"$fs/etc/hosts"
cat >"$fs/etc/ssh/sshd_config" <<'C'
Port 22
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys
PidFile /run/sshd.pid
C
# the project: build, built-in plugins, runtime dependencies
cp "$root/package.json" "$fs/opt/mesh/"
cp -r "$root/dist" "$root/plugins" "$fs/opt/mesh/"
[ -d "$root/protocols" ] && cp -r "$root/protocols" "$fs/opt/mesh/"
mkdir -p "$fs/opt/mesh/node_modules"
cp -a "$(readlink -f "$root/node_modules")/." "$fs/opt/mesh/node_modules/"
for dev in @biomejs typescript mocha fast-check protons @types .cache; do rm -rf "$fs/opt/mesh/node_modules/$dev"; done
cp "$root/docker/entrypoint.sh" "$fs/usr/local/bin/mesh-entrypoint"
printf '#!/bin/sh\nexec /usr/bin/node /opt/mesh/dist/src/cli/main.js "$@"\n' >"$fs/usr/local/bin/mesh"
chmod +x "$fs/usr/local/bin/mesh" "$fs/usr/local/bin/mesh-entrypoint"
tar -C "$fs" -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/bin/mesh-entrypoint"]' \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
  -c 'ENV HOME=/root' \
  -c 'ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1' \
  -c 'LABEL mesh.offline=1' \
  - "$tag" >/dev/null
echo "$tag"
