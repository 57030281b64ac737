#!/bin/sh
# Stop the instance's agent (SIGTERM: it leaves the cluster gracefully), then remove its dir.
pid=$(cat "$MESH_INSTANCE_DIR/pid" 2>/dev/null) || pid=''
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -rf "$MESH_INSTANCE_DIR"
