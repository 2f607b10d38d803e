#!/usr/bin/env bash
# Builds every container image of the distributed shape and tags it with the workspace version
# (root Cargo.toml, [workspace.package] version) and `latest`:
#
#   scripts/docker-build.sh                    build all: signing devices monitoring broker agent simulator
#   scripts/docker-build.sh signing devices    build some
#   REGISTRY=ghcr.io/acme scripts/docker-build.sh   prefix the names (default: edgewatch)
#   PUSH=1 scripts/docker-build.sh             push after building
#
# Needs a Docker engine with BuildKit (docker buildx) or podman with `docker` as an alias.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REGISTRY=${REGISTRY:-edgewatch}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$VERSION" ] || { echo "error: no [workspace.package] version in Cargo.toml" >&2; exit 1; }
command -v docker >/dev/null || { echo "error: docker is not installed (this script needs a Docker engine)" >&2; exit 1; }

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(signing devices monitoring broker agent simulator)
for image in "${images[@]}"; do
  file=packaging/docker/Dockerfile.$image
  [ -f "$file" ] || { echo "error: no $file (images: signing devices monitoring broker agent simulator)" >&2; exit 2; }
  echo "=== $REGISTRY/$image:$VERSION" >&2
  DOCKER_BUILDKIT=1 docker build -f "$file" --build-arg VERSION="$VERSION" \
    -t "$REGISTRY/$image:$VERSION" -t "$REGISTRY/$image:latest" .
  if [ "${PUSH:-0}" = 1 ]; then
    docker push "$REGISTRY/$image:$VERSION"
    docker push "$REGISTRY/$image:latest"
  fi
done
