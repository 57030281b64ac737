#!/bin/sh
# exit 0 (stale) when the instance's agent no longer runs (a zombie counts as gone)
pid=$(cat "$MESH_INSTANCE_DIR/pid" 2>/dev/null) || exit 0
kill -0 "$pid" 2>/dev/null || exit 0
grep -q ') Z' "/proc/$pid/stat" 2>/dev/null && exit 0
exit 1
