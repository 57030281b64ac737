#!/bin/sh
# The mesh container: sshd (root's key from $MESH_SSH_PUBKEY) and the mesh agent as PID 1's
# main process, so `docker stop` (SIGTERM) makes it leave the cluster gracefully.
#   MESH_JOIN        join token (from `mesh invite`, or given by the docker plugin)
#   MESH_INIT        start a new cluster with this name when the data dir holds none
#   MESH_INVITES_DIR with MESH_INIT: write one join token per name in MESH_INVITE_FOR
#   MESH_JOIN_FILE   wait for a token in this file (compose: written by the first node)
set -eu
mkdir -p /root/.ssh /run/sshd /var/lib/mesh
chmod 700 /root/.ssh
if [ -n "${MESH_SSH_PUBKEY:-}" ]; then printf '%s\n' "$MESH_SSH_PUBKEY" >/root/.ssh/authorized_keys; fi
ssh-keygen -A >/dev/null 2>&1 || true
/usr/sbin/sshd -E /var/log/sshd.log || echo "sshd did not start (see /var/log/sshd.log)" >&2

name="${MESH_NAME:-$(hostname)}"
if [ -n "${MESH_JOIN_FILE:-}" ] && [ -z "${MESH_JOIN:-}" ] && [ ! -f /var/lib/mesh/cluster.json ]; then
  i=0
  while [ ! -s "$MESH_JOIN_FILE" ] && [ "$i" -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
  MESH_JOIN=$(cat "$MESH_JOIN_FILE")
  export MESH_JOIN
fi
if [ -n "${MESH_INIT:-}" ] && [ -n "${MESH_INVITES_DIR:-}" ]; then
  # the first node of a compose cluster: once its agent answers, hand out one token per node
  (
    i=0
    until mesh --data-dir /var/lib/mesh status >/dev/null 2>&1 || [ "$i" -ge 300 ]; do sleep 0.2; i=$((i + 1)); done
    for n in ${MESH_INVITE_FOR:-}; do mesh --data-dir /var/lib/mesh invite >"$MESH_INVITES_DIR/$n.tmp" 2>/dev/null && mv "$MESH_INVITES_DIR/$n.tmp" "$MESH_INVITES_DIR/$n"; done
  ) &
fi
set -- agent --name "$name" --listen "${MESH_LISTEN:-/ip4/0.0.0.0/tcp/4701}"
if [ -n "${MESH_INIT:-}" ]; then set -- "$@" --init "$MESH_INIT"; fi
exec mesh --data-dir /var/lib/mesh "$@"
