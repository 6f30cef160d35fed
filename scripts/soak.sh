#!/usr/bin/env bash
# Soak: runs a dev-mode Tidemark (embedded PostgreSQL, fresh data folder)
# under a modest mixed load (pushes, pulls, streams, reads) for a long time
# and samples its resident memory, Go heap, goroutines and open files every
# 10 s, then prints a summary (start, end, min, max, slope) and the samples.
#
#   scripts/soak.sh                  # 30 minutes
#   SOAK_DURATION=2h scripts/soak.sh
#
# Settings (environment): SOAK_DURATION (30m), SOAK_PUSHERS (2),
# SOAK_PULLERS (2), SOAK_STREAMS (10), SOAK_READERS (1), SOAK_PORT (18480),
# SOAK_DEBUG_PORT (18481), SOAK_DIR (a new temporary folder; removed at the
# end unless set). The server's log is $SOAK_DIR/server.log.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${SOAK_DURATION:-30m}
port=${SOAK_PORT:-18480}
debug_port=${SOAK_DEBUG_PORT:-18481}
keep=${SOAK_DIR:+yes}
dir=${SOAK_DIR:-$(mktemp -d /tmp/tidemark-soak-XXXXXX)}
mkdir -p "$dir"
# When run as root, PostgreSQL runs as "postgres", who must reach the folder.
chmod 755 "$dir"

go build -o "$dir/tidemark" ./cmd/tidemark

server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  if [ -z "$keep" ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

# Dev mode (no secret): the bench signs its tokens with the data folder's
# dev secret. The rate limits are off: one address sends all the load.
TIDEMARK_DATA_DIR="$dir/data" TIDEMARK_ADDR="127.0.0.1:$port" TIDEMARK_DEBUG_ADDR="127.0.0.1:$debug_port" \
  TIDEMARK_RATE_PER_ADDRESS=-1 TIDEMARK_RATE_PER_USER=-1 TIDEMARK_PUSHES_IN_FLIGHT=-1 \
  TIDEMARK_LOG_LEVEL=warn \
  "$dir/tidemark" serve >"$dir/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited; its log:" >&2; cat "$dir/server.log" >&2; exit 1
  fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null

echo "soak: server pid $server_pid on 127.0.0.1:$port, debug 127.0.0.1:$debug_port, folder $dir, $duration"
"$dir/tidemark" bench soak \
  --url "http://127.0.0.1:$port/graphql" --data-dir "$dir/data" \
  --duration "$duration" \
  --pushers "${SOAK_PUSHERS:-2}" --pullers "${SOAK_PULLERS:-2}" \
  --streams "${SOAK_STREAMS:-10}" --readers "${SOAK_READERS:-1}" \
  --server-pid "$server_pid" --debug-url "http://127.0.0.1:$debug_port"
