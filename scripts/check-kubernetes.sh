#!/usr/bin/env bash
# Validates the Kubernetes manifests (docker/kubernetes/) against the
# Kubernetes API schemas (kubernetes-validate, strict: unknown fields are
# errors) and the committed CRD schemas of KEDA and the Prometheus Operator,
# then breaks copies of them one way at a time to show the check rejects each.
# No cluster needed. Python packages come from PyPI, pinned in
# scripts/requirements-kubernetes.txt, into a venv cached outside the work
# tree (once: about 10 s).
#
#   scripts/check-kubernetes.sh                        # docker/kubernetes, Kubernetes 1.30 and the newest known
#   scripts/check-kubernetes.sh -k 1.33                # against one version
#   scripts/check-kubernetes.sh --dir path/to/overlay  # another directory of manifests
#
# DRIFTLINE_K8S_VENV overrides the venv directory.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=docker/kubernetes
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

requirements=scripts/requirements-kubernetes.txt
pins=$(sha256sum "$requirements" | cut -c1-12)
venv="${DRIFTLINE_K8S_VENV:-$HOME/.cache/driftline/kubernetes-venv-$pins}"
if [ ! -f "$venv/.installed" ]; then
    echo "installing the manifest validators into $venv (once)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    # --no-deps: the pinned list is the whole environment, nothing floats.
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        --only-binary :all: -r "$requirements" >&2
    touch "$venv/.installed"
fi

"$venv/bin/python" scripts/kubernetes_manifests.py check "$dir" "${args[@]}"
"$venv/bin/python" scripts/kubernetes_manifests.py self-test "$dir" "${args[@]}"
