#!/usr/bin/env bash
# Validates the deployment artefacts offline (no Docker engine, no cluster needed):
#   - docker-compose.yml loaded the way Docker Compose loads it (compose-go: interpolation from
#     .env.example, the compose-spec JSON schema, the model checks), with and without the
#     simulator profile: scripts/compose-check;
#   - k8s/: every overlay rendered with kustomize and each object validated against the
#     Kubernetes OpenAPI schemas with kubernetes-validate --strict (unknown fields are errors);
#   - packaging/prometheus/prometheus.yml with promtool;
#   - the Grafana dashboard and provisioning against packaging/grafana/schemas, the Dockerfiles'
#     structure and the compose wiring: scripts/validate_deploy.py.
# Tools are installed once into $EDGEWATCH_CACHE_DIR/tools (default /var/cache/edgewatch/tools):
# a Python virtualenv from PyPI, kustomize and compose-check built from Go modules.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGEWATCH_CACHE_DIR:-/var/cache/edgewatch}
TOOLS=$CACHE/tools
VENV=$TOOLS/venv
KUBERNETES_VERSION=1.31.0
KUSTOMIZE_VERSION=v5.5.0
PY_PACKAGES=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.4 dockerfile-parse==2.0.1)
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"
cd "$ROOT"

log() { printf '[validate-deploy] %s\n' "$*" >&2; }
die() { printf '[validate-deploy] error: %s\n' "$*" >&2; exit 1; }

install_tools() {
  mkdir -p "$TOOLS/bin"
  local want stamp=$VENV/.packages
  want="${PY_PACKAGES[*]}"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
      [ "$(id -u)" = 0 ] || die "python3-venv is missing (apt-get install python3-venv)"
      log "installing python3-venv (apt-get)"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
    fi
    log "creating the validation virtualenv (first time only)"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}" >&2
    echo "$want" >"$stamp"
  fi
  command -v go >/dev/null || die "Go is needed to build kustomize and compose-check (go 1.24 or newer)"
  local gopath=$CACHE/go
  if [ "$(cat "$TOOLS/bin/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
    log "building kustomize $KUSTOMIZE_VERSION (first time only)"
    GOPATH=$gopath GOFLAGS=-modcacherw GOBIN=$TOOLS/bin go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
    echo "$KUSTOMIZE_VERSION" >"$TOOLS/bin/kustomize.version"
  fi
  local src=$ROOT/scripts/compose-check sum
  sum=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
  if [ "$(cat "$TOOLS/bin/compose-check.stamp" 2>/dev/null)" != "$sum" ]; then
    log "building compose-check (first time only)"
    (cd "$src" && GOPATH=$gopath GOFLAGS=-modcacherw go build -o "$TOOLS/bin/compose-check" .) >&2
    echo "$sum" >"$TOOLS/bin/compose-check.stamp"
  fi
}

install_tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "docker-compose.yml against the compose-spec schema (compose-go)"
"$TOOLS/bin/compose-check" -f docker-compose.yml --env-file .env.example -q
"$TOOLS/bin/compose-check" -f docker-compose.yml --env-file .env.example --profile simulator -q
echo "ok   compose: docker-compose.yml (default and simulator profiles)"

for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  log "k8s overlay $name: kustomize build, kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
  "$TOOLS/bin/kustomize" build "$overlay" >"$work/$name.yaml"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$work/$name.yaml" >&2 \
    || die "k8s overlay $name does not validate (see above)"
  echo "ok   k8s: overlay $name ($(grep -c '^kind:' "$work/$name.yaml") objects)"
done

if command -v promtool >/dev/null; then
  promtool check config --syntax-only packaging/prometheus/prometheus.yml >&2
  echo "ok   prometheus: promtool check config"
else
  die "promtool is missing (apt-get install prometheus; scripts/services.sh installs it)"
fi

"$VENV/bin/python" scripts/validate_deploy.py
