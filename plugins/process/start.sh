#!/bin/sh
# Start a mesh agent in $MESH_INSTANCE_DIR/data that joins with the fresh token it was given.
# setsid: the agent gets its own session, so it outlives this command's process group.
set -eu
mkdir -p "$MESH_INSTANCE_DIR"
# the token goes in the environment (MESH_JOIN), not on a command line others can read
MESH_JOIN="$MESH_JOIN_TOKEN" setsid "$MESH_NODE" "$MESH_CLI" --data-dir "$MESH_INSTANCE_DIR/data" agent \
  --name "$MESH_INSTANCE_ID" \
  --listen "${MESH_PROCESS_LISTEN:-/ip4/127.0.0.1/tcp/0}" \
  </dev/null >"$MESH_INSTANCE_DIR/agent.log" 2>&1 &
echo $! >"$MESH_INSTANCE_DIR/pid"
