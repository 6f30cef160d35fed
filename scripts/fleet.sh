#!/usr/bin/env bash
# Device fleet: runs a dev-mode Tidemark (embedded PostgreSQL, fresh data
# folder, default sync rules) and `tidemark bench fleet` against it, split
# over FLEET_PROCESSES processes that share one run, then prints each
# process's report (and its JSON, $FLEET_DIR/fleet-N.json). It exits
# non-zero when any process's devices did not converge.
#
#   scripts/fleet.sh                                   # 10,000 devices, 2 minutes
#   FLEET_DEVICES=500 FLEET_DURATION=20s FLEET_RAMP=5s scripts/fleet.sh
#
# Settings (environment): FLEET_DEVICES (10000, in all), FLEET_PROCESSES (1;
# the devices are split evenly, a multiple of 2 each), FLEET_TENANTS (100),
# FLEET_DURATION (120s), FLEET_RAMP (60s), FLEET_ARGS (more `bench fleet`
# flags; default "--online-mean 60s --offline-mean 30s --edit-rate 0.02
# --poll-every 30s", the pace of docs/benchmarks.md's 10k run), FLEET_PORT (18590),
# FLEET_DIR (a new temporary folder; removed at the end unless set). The
# server's log is $FLEET_DIR/server.log.
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${FLEET_DEVICES:-10000}
processes=${FLEET_PROCESSES:-1}
port=${FLEET_PORT:-18590}
keep=${FLEET_DIR:+yes}
dir=${FLEET_DIR:-$(mktemp -d /tmp/tidemark-fleet-XXXXXX)}
mkdir -p "$dir"
# When run as root, PostgreSQL runs as "postgres", who must reach the folder.
chmod 755 "$dir"
if (( devices % processes != 0 || (devices / processes) % 2 != 0 )); then
  echo "FLEET_DEVICES must split into FLEET_PROCESSES even shares" >&2; exit 2
fi
per=$((devices / processes))
# Each streaming device is a websocket in the fleet and in the server.
ulimit -n 20000

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

# The rate limits and websocket caps are off: one address is the whole fleet.
TIDEMARK_DATA_DIR="$dir/data" TIDEMARK_ADDR="127.0.0.1:$port" TIDEMARK_LOG_LEVEL=warn \
  TIDEMARK_RATE_PER_ADDRESS=-1 TIDEMARK_RATE_PER_USER=-1 TIDEMARK_PUSHES_IN_FLIGHT=-1 \
  TIDEMARK_WS_MAX_CONNECTIONS=-1 TIDEMARK_WS_MAX_CONNECTIONS_PER_ADDRESS=-1 TIDEMARK_WS_ACCEPT_RATE=-1 \
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

run_id=$(date +%s)
echo "fleet: server pid $server_pid on 127.0.0.1:$port, folder $dir; $devices devices in $processes process(es), run $run_id"
pids=()
for ((i = 0; i < processes; i++)); do
  # shellcheck disable=SC2086 # FLEET_ARGS is a list of flags
  "$dir/tidemark" bench fleet --url "http://127.0.0.1:$port/graphql" --data-dir "$dir/data" \
    --devices "$per" --processes "$processes" --process-index "$i" --run-id "$run_id" \
    --tenants "${FLEET_TENANTS:-100}" --duration "${FLEET_DURATION:-120s}" --ramp "${FLEET_RAMP:-60s}" \
    ${FLEET_ARGS:---online-mean 60s --offline-mean 30s --edit-rate 0.02 --poll-every 30s} --json "$dir/fleet-$i.json" >"$dir/fleet-$i.txt" 2> >(if ((i == 0)); then cat >&2; else cat >/dev/null; fi) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for ((i = 0; i < processes; i++)); do
  echo "--- process $i"
  cat "$dir/fleet-$i.txt"
done
exit $status
