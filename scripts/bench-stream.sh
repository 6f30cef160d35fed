#!/usr/bin/env bash
# Stream fan-out and idle-connection memory, side by side for one or more
# builds of tidemark (docs/benchmarks.md, "Stream: shared fan-out and lean
# websockets"). Each build gets a fresh server (embedded PostgreSQL in a
# folder of its own, the connection limits off) for each measurement, and
# the builds alternate for ROUNDS rounds.
#
#   scripts/bench-stream.sh /tmp/tidemark-before /tmp/tidemark
#
# Environment (defaults in brackets):
#   ROUNDS [3]          rounds of every build
#   RUNS ["1000:5 5000:5 18000:1"]  fan-out runs, subscribers:pushes-per-second
#   DURATION [20s]      how long each fan-out run pushes
#   IDLE [18000]        idle connections for the memory run (0: none)
#   SETTLE [20s]        wait before reading the server's memory in the idle run
#   PORT [18431]        the server's port
#   OUT [/tmp/bench-stream]  logs and results
#   BENCH [the last build given]  the load generator, the same for every build
#                       (builds before it lack `bench stream --idle`)
#
# Needs `ulimit -n` of at least IDLE + 1000 (the load generator and the
# server each hold one socket per connection).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-"1000:5 5000:5 18000:1"}
DURATION=${DURATION:-20s}
IDLE=${IDLE:-18000}
SETTLE=${SETTLE:-20s}
PORT=${PORT:-18431}
OUT=${OUT:-/tmp/bench-stream}
mkdir -p "$OUT"
[ $# -ge 1 ] || { echo "usage: $0 TIDEMARK_BINARY..." >&2; exit 2; }
BENCH=${BENCH:-${!#}}

server_pid=""
start() { # binary, folder
	rm -rf "$2" && mkdir -p "$2"
	(cd "$2" && TIDEMARK_WS_MAX_CONNECTIONS=-1 TIDEMARK_WS_MAX_CONNECTIONS_PER_ADDRESS=-1 \
		TIDEMARK_WS_MAX_CONNECTIONS_PER_USER=-1 TIDEMARK_WS_ACCEPT_RATE=-1 \
		TIDEMARK_RATE_PER_ADDRESS=-1 TIDEMARK_RATE_PER_USER=-1 \
		exec "$1" serve --log-level warn --addr "127.0.0.1:$PORT" >server.log 2>&1) &
	server_pid=$!
	for _ in $(seq 120); do
		curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "server $1 did not become ready" >&2
	exit 1
}
stop() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
}
trap stop EXIT

for round in $(seq "$ROUNDS"); do
	for bin in "$@"; do
		name=$(basename "$bin")
		for run in $RUNS; do
			subs=${run%%:*} rate=${run##*:}
			start "$bin" "$OUT/data-$name"
			echo "== round $round $name: $subs subscribers at $rate/s" | tee -a "$OUT/results.txt"
			(cd "$OUT/data-$name" && "$BENCH" bench stream --url "http://127.0.0.1:$PORT/graphql" \
				--subscribers "$subs" --rate "$rate" --duration "$DURATION" --server-pid "$server_pid") 2>&1 | tee -a "$OUT/results.txt"
			stop
		done
		if [ "$IDLE" -gt 0 ]; then
			start "$bin" "$OUT/data-$name"
			echo "== round $round $name: $IDLE idle connections" | tee -a "$OUT/results.txt"
			(cd "$OUT/data-$name" && "$BENCH" bench stream --url "http://127.0.0.1:$PORT/graphql" \
				--idle "$IDLE" --settle "$SETTLE" --server-pid "$server_pid") 2>&1 | tee -a "$OUT/results.txt" || true
			stop
		fi
	done
done
