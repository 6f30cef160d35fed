#!/usr/bin/env bash
# Roll Tidemark out to one overlay with zero downtime:
#   1. run the migrate Job of the new image and wait for it to complete
#      (the old pods keep serving: they accept a newer schema);
#   2. apply everything else; the Deployment rolls one pod at a time
#      (maxSurge 1, maxUnavailable 0), each old pod draining on SIGTERM.
# A failed migration stops here, before any pod is replaced.
#
#   deploy/k8s/rollout.sh deploy/k8s/overlays/ap-southeast-2
set -euo pipefail
overlay=${1:?usage: rollout.sh OVERLAY_DIR}
manifests=$(mktemp)
trap 'rm -f "$manifests"' EXIT
kubectl kustomize "$overlay" >"$manifests"
ns=$(awk '/^  namespace: /{print $2; exit}' "$manifests")
ns=${ns:-default}

# Settings first (the Job reads them), then the Job of the new image. The
# Job's template cannot change in place: the previous run's Job goes.
kubectl apply -f "$manifests" -l 'app.kubernetes.io/component!=migrate,app.kubernetes.io/component!=server'
kubectl -n "$ns" delete job tidemark-migrate --ignore-not-found --wait=true
kubectl apply -f "$manifests" -l app.kubernetes.io/component=migrate
while :; do
  state=$(kubectl -n "$ns" get job tidemark-migrate -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
  case "$state" in
    *Complete*) break ;;
    *Failed*)
      echo "rollout.sh: tidemark migrate failed; nothing rolled out" >&2
      kubectl -n "$ns" logs job/tidemark-migrate >&2 || true
      exit 1 ;;
  esac
  sleep 5
done

kubectl apply -f "$manifests"
kubectl -n "$ns" rollout status deployment/tidemark --timeout=15m
