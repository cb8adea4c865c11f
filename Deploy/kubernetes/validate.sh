#!/usr/bin/env bash
# Validates the manifests beside this file against Kubernetes' own schemas, offline: kubernetes-validate
# (PyPI; it ships the JSON schemas of Kubernetes 1.25 to 1.37), strict (an unknown field is an error),
# for the oldest and the newest version it knows. Installs it with pip when missing. CI runs this;
# Tests/DeployTests checks what a schema cannot (shards from JOB_COMPLETION_INDEX, SHARDS = completions).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v kubernetes-validate >/dev/null; then
  timeout 600 python3 -m pip install --quiet 'kubernetes-validate==1.37.0'
fi
for version in 1.25 1.37; do
  kubernetes-validate --strict --quiet --kubernetes-version "$version" "$here"/*.yaml
done
echo "kubernetes: the manifests of $here validate against Kubernetes 1.25 and 1.37 (strict)"
