#!/bin/sh
# The docker compute type. The image (docker/Dockerfile, or docker/build-offline.sh) runs
# docker/entrypoint.sh: sshd with $MESH_SSH_PUBKEY as root's authorized key, then
# `mesh agent --join $MESH_JOIN`. Containers carry the label mesh.instance.
set -eu
image="${MESH_DOCKER_IMAGE:-mesh:latest}"
id="${MESH_INSTANCE_ID:-}" # unset for `available`
case "$1" in
available)
  # say why not, with the exact fix: the spawn error shows these lines
  if ! out=$(docker info --format '{{.ServerVersion}}' 2>&1); then
    echo "no docker engine answers ($(echo "$out" | grep . | head -n 1)): start dockerd (systemctl start docker)" >&2
    exit 1
  fi
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    echo "the image $image is missing; build it in a mesh checkout: npm run build && docker build -f docker/Dockerfile -t $image ." >&2
    exit 1
  fi
  ;;
start)
  # the token travels in the environment of `docker run`, not on its command line
  MESH_JOIN="$MESH_JOIN_TOKEN" MESH_SSH_PUBKEY="${MESH_SSH_PUBKEY:-}" docker run -d \
    --name "$id" --hostname "$id" --label "mesh.instance=$id" --label "mesh.cluster=$MESH_CLUSTER" \
    --cap-add NET_ADMIN ${MESH_DOCKER_NETWORK:+--network "$MESH_DOCKER_NETWORK"} \
    -e MESH_JOIN -e MESH_SSH_PUBKEY -e MESH_NAME="$id" -e MESH_LOG_LEVEL="${MESH_LOG_LEVEL:-info}" \
    "$image" >/dev/null
  ;;
ip)
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id" | awk '{print $1}'
  ;;
stale)
  # stale: the container is gone or stopped
  state=$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null) || exit 0
  [ "$state" = true ] && exit 1
  exit 0
  ;;
clean)
  # a graceful stop first: the agent leaves the cluster on SIGTERM
  docker stop -t 10 "$id" >/dev/null 2>&1 || true
  docker rm -f "$id" >/dev/null 2>&1 || true
  if docker inspect "$id" >/dev/null 2>&1; then
    echo "container $id is still there" >&2
    exit 1
  fi
  ;;
esac
