#!/bin/sh
# The slave path: run the agent on an existing machine over SSH. The remote needs `mesh` on
# its PATH (npm install -g, or the docker image) and keeps its data in ~/.mesh-slave.
set -eu
ssh_() {
  ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o ConnectTimeout=15 \
    -p "$MESH_SLAVE_PORT" "$MESH_SLAVE_USER@$MESH_SLAVE_HOST" sh -s
}
case "$1" in
start)
  # the token goes on stdin, never on a command line another user could read
  printf 'set -eu\ncommand -v mesh >/dev/null || { echo "mesh is not installed on %s: install it first (npm install -g mesh)" >&2; exit 3; }\nmkdir -p "$HOME/.mesh-slave"\nMESH_JOIN=%s setsid mesh --data-dir "$HOME/.mesh-slave" agent --name %s </dev/null >"$HOME/.mesh-slave/agent.log" 2>&1 &\necho $! >"$HOME/.mesh-slave/pid"\n' \
    "$MESH_SLAVE_HOST" "$MESH_JOIN_TOKEN" "$MESH_INSTANCE_ID" | ssh_
  ;;
stale)
  # stale when the host answers and its agent is gone (an unreachable host is not proof)
  printf 'pid=$(cat "$HOME/.mesh-slave/pid" 2>/dev/null) || exit 0\nkill -0 "$pid" 2>/dev/null && exit 1\nexit 0\n' | ssh_
  ;;
stop)
  printf 'pid=$(cat "$HOME/.mesh-slave/pid" 2>/dev/null) || exit 0\nkill -TERM "$pid" 2>/dev/null || true\nrm -f "$HOME/.mesh-slave/pid"\n' | ssh_ || {
    echo "could not reach $MESH_SLAVE_HOST to stop its agent" >&2
    exit 1
  }
  ;;
esac
