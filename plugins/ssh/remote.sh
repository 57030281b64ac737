#!/bin/sh
# The slave path: run the agent on an existing machine over SSH. The remote needs `mesh` on
# its PATH (the mesh-agent package installed with npm install -g, or the docker image;
# MESH_SLAVE_MESH overrides the command) and keeps its data in ~/.mesh-slave (MESH_SLAVE_DATA_DIR). Host keys are pinned on first use in
# the spawning agent's data dir (known_hosts).
set -eu
mesh_cmd="${MESH_SLAVE_MESH:-mesh}"
data="${MESH_SLAVE_DATA_DIR:-\$HOME/.mesh-slave}"
ssh_() {
  ssh ${MESH_SSH_IDENTITY:+-i "$MESH_SSH_IDENTITY"} -o BatchMode=yes -o StrictHostKeyChecking=accept-new \
    -o UserKnownHostsFile="$MESH_DATA_DIR/known_hosts" -o ConnectTimeout=15 \
    -p "$MESH_SLAVE_PORT" "$MESH_SLAVE_USER@$MESH_SLAVE_HOST" sh -s
}
case "$1" in
start)
  # the token goes on stdin, never on a command line another user could read
  printf 'set -eu\nset -- %s\ncommand -v "$1" >/dev/null || { echo "$1 is not on the PATH of %s: install mesh there first (in a mesh checkout: npm pack; copy mesh-agent-*.tgz there; npm install -g ./mesh-agent-*.tgz), or set MESH_SLAVE_MESH to its path" >&2; exit 3; }\nd=%s\nmkdir -p "$d"\nMESH_JOIN=%s setsid "$@" --data-dir "$d" agent --name %s --listen %s </dev/null >"$d/agent.log" 2>&1 &\necho $! >"$d/pid"\n' \
    "$mesh_cmd" "$MESH_SLAVE_HOST" "$data" "$MESH_JOIN_TOKEN" "$MESH_INSTANCE_ID" "${MESH_SLAVE_LISTEN:-/ip4/0.0.0.0/tcp/4701}" | ssh_
  ;;
stale)
  # stale when the host answers and its agent is gone (an unreachable host is not proof)
  printf 'd=%s\npid=$(cat "$d/pid" 2>/dev/null) || exit 0\nkill -0 "$pid" 2>/dev/null && exit 1\nexit 0\n' "$data" | ssh_
  ;;
stop)
  printf 'd=%s\npid=$(cat "$d/pid" 2>/dev/null) || exit 0\nkill -TERM "$pid" 2>/dev/null || true\nrm -f "$d/pid"\n' "$data" | ssh_ || {
    echo "could not reach $MESH_SLAVE_HOST to stop its agent" >&2
    exit 1
  }
  ;;
esac
