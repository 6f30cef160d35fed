#!/usr/bin/env bash
# Peers, side by side (issue 12's proof; docs/benchmarks.md "Peers, side by
# side"): runs Tidemark and a peer on the same PostgreSQL and the same data,
# on this one machine, in alternating rounds, and prints the medians as a
# markdown table.
#
#   scripts/bench-peers.sh [reads|pull|push|stream|all]     # default: all
#
#   reads   nested read, 16 clients: Tidemark's workOrders(first: 100) with
#           site and checklist vs PostGraphile 4's allWorkOrders on
#           Tidemark's tables (loadtest/peers/postgraphile)
#   pull    paged read, one client, pages of 1000: Tidemark's pull vs
#           PostGraphile's allWorkOrders by cursor
#   push    100-row batches from 4 clients into one tenant: tidemark bench
#           sync's push phase vs pgbench inserting 100-row statements into a
#           copy of work_orders (loadtest/peers/pgbench)
#   stream  subscribers of one tenant: Tidemark vs a plain gqlgen server with
#           an in-memory broadcast (loadtest/peers/gqlgenbase), both driven
#           by tidemark bench stream; a fresh server process for every run
#
# It starts its own PostgreSQL (a temporary initdb cluster with PostgreSQL's
# defaults, fsync on, as Tidemark's embedded one), migrates it, builds
# Tidemark and the gqlgen baseline, and installs PostGraphile with `npm ci`
# when loadtest/peers/postgraphile/node_modules is missing. On a machine
# without PostgreSQL or Node.js it installs Debian's packages (as root).
#
# Settings (environment), with their defaults:
#   PEERS_ROUNDS (3)                  alternating rounds; the table shows medians
#   PEERS_OUT                         also append the table to this file
#   PEERS_DIR (a new temporary folder; removed at the end unless set)
#   PEERS_PORT (18500)                PostgreSQL; Tidemark +1, PostGraphile +2, baseline +3
#   PEERS_WORK_ORDERS (10000)         work orders seeded for the nested read (tidemark bench read's seeding)
#   PEERS_READ_CLIENTS (16), PEERS_READ_DURATION (20s)
#   PEERS_PULL_DOCS (100000)          work orders of the tenant the paged reads walk
#   PEERS_PUSH_DOCS (100000)          rows per Tidemark push run
#   PEERS_PGBENCH_SECONDS (10)        length of a pgbench run
#   PEERS_PUSH_WARMUP (1)             1: one uncounted push run of each side first; 0: none
#   PEERS_STREAM_CASES ("1000:5 5000:5 15000:1")   subscribers:changes per second
#   PEERS_STREAM_DURATION (20s)
#   PEERS_POSTGRAPHILE_WORKERS (2)    PostGraphile's --cluster-workers (Tidemark uses both cores too)
#   PEERS_PG_BIN                      PostgreSQL's bin folder (default: the newest /usr/lib/postgresql/*/bin)
#
# Each process may open 20,000 files (ulimit -n 20000): 15k subscribers are
# 15k sockets in the load generator and 15k in the server.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
case "$what" in
  reads | pull | push | stream | all) ;;
  *) echo "usage: $0 [reads|pull|push|stream|all]" >&2; exit 2 ;;
esac

rounds=${PEERS_ROUNDS:-3}
out=${PEERS_OUT:-}
port=${PEERS_PORT:-18500}
pg_port=$port tm_port=$((port + 1)) pgl_port=$((port + 2)) base_port=$((port + 3))
work_orders=${PEERS_WORK_ORDERS:-10000}
read_clients=${PEERS_READ_CLIENTS:-16}
read_duration=${PEERS_READ_DURATION:-20s}
pull_docs=${PEERS_PULL_DOCS:-100000}
push_docs=${PEERS_PUSH_DOCS:-100000}
pgbench_seconds=${PEERS_PGBENCH_SECONDS:-10}
push_warmup=${PEERS_PUSH_WARMUP:-1}
stream_cases=${PEERS_STREAM_CASES:-"1000:5 5000:5 15000:1"}
stream_duration=${PEERS_STREAM_DURATION:-20s}
pgl_workers=${PEERS_POSTGRAPHILE_WORKERS:-2}
secret=peers-side-by-side-secret-0123456789abcdef
keep=${PEERS_DIR:+yes}
dir=${PEERS_DIR:-$(mktemp -d /tmp/tidemark-peers-XXXXXX)}
mkdir -p "$dir"
chmod 755 "$dir" # PostgreSQL runs as "postgres" when this runs as root
log() { echo "peers: $*" >&2; }

# What a fresh machine lacks comes from Debian's packages.
need_apt=()
if [ -z "${PEERS_PG_BIN:-}" ] && ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then need_apt+=(postgresql postgresql-contrib); fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then need_apt+=(nodejs npm); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install ${need_apt[*]} first" >&2; exit 1; }
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
pg_bin=${PEERS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi

pids=()
pg_started=
cleanup() {
  for p in "${pids[@]}"; do stop "$p"; done
  if [ -n "$pg_started" ]; then "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  if [ -z "$keep" ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

# stop ends a server we started, and the worker processes it forked.
stop() {
  local p=$1
  kill -0 "$p" 2>/dev/null || return 0
  local kids
  kids=$(pgrep -P "$p" || true)
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  for k in $kids; do kill -TERM "$k" 2>/dev/null || true; done
}
forget() { local p=$1 keep_pids=(); for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep_pids+=("$q"); done; pids=("${keep_pids[@]}"); }

# wait_http URL PID NAME [POST body]: until URL answers 200, or the process exits.
wait_http() {
  local url=$1 pid=$2 name=$3 body=${4:-}
  for _ in $(seq 1 240); do
    if [ -n "$body" ]; then
      curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "$body" "$url" 2>/dev/null && return 0
    else
      curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then echo "$name exited; its log:" >&2; cat "$dir/$name.log" >&2; exit 1; fi
    sleep 0.5
  done
  echo "$name did not become ready; its log:" >&2; cat "$dir/$name.log" >&2; exit 1
}

# --- PostgreSQL, Tidemark and the peers ---------------------------------

start_postgres() {
  mkdir -p "$dir/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 >"$dir/initdb.log"
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  pg_started=yes
  "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres tidemark
  db_url="postgres://postgres@127.0.0.1:$pg_port/tidemark?sslmode=disable"
}

psql_do() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 "$db_url" "$@"; }

start_tidemark() {
  (
    ulimit -n 20000
    # The request limits are off: one address and one user send all the load.
    # No drain delay: nothing balances load in front of it, and each stream
    # run stops a server.
    exec env TIDEMARK_DATABASE_URL="$db_url" TIDEMARK_JWT_SECRET="$secret" TIDEMARK_ADDR="127.0.0.1:$tm_port" \
      TIDEMARK_LOG_LEVEL=warn TIDEMARK_DRAIN_DELAY=-1s TIDEMARK_RATE_PER_ADDRESS=-1 TIDEMARK_RATE_PER_USER=-1 TIDEMARK_PUSHES_IN_FLIGHT=-1 \
      TIDEMARK_WS_MAX_CONNECTIONS=-1 TIDEMARK_WS_MAX_CONNECTIONS_PER_ADDRESS=-1 TIDEMARK_WS_MAX_CONNECTIONS_PER_USER=-1 \
      TIDEMARK_WS_ACCEPT_RATE=-1 "$dir/tidemark" serve
  ) >"$dir/tidemark.log" 2>&1 &
  tm_pid=$!
  pids+=("$tm_pid")
  wait_http "http://127.0.0.1:$tm_port/readyz" "$tm_pid" tidemark
}

start_postgraphile() {
  if [ ! -d loadtest/peers/postgraphile/node_modules/postgraphile ]; then
    log "installing PostGraphile (npm ci)"
    (cd loadtest/peers/postgraphile && npm ci --no-audit --no-fund >&2)
  fi
  local workers=()
  if [ "$pgl_workers" -gt 1 ]; then workers=(--cluster-workers "$pgl_workers"); fi
  # Its working folder holds postgraphile.tags.json5, the virtual foreign keys.
  (
    cd loadtest/peers/postgraphile
    exec node node_modules/postgraphile/cli.js -c "$db_url" -s public -n 127.0.0.1 -p "$pgl_port" \
      --disable-query-log --disable-graphiql --disable-default-mutations "${workers[@]}"
  ) >"$dir/postgraphile.log" 2>&1 &
  pgl_pid=$!
  pids+=("$pgl_pid")
  wait_http "http://127.0.0.1:$pgl_port/graphql" "$pgl_pid" postgraphile '{"query":"{__typename}"}'
}

start_baseline() {
  (
    ulimit -n 20000
    exec "$dir/gqlgenbase" -addr "127.0.0.1:$base_port"
  ) >"$dir/gqlgenbase.log" 2>&1 &
  base_pid=$!
  pids+=("$base_pid")
  wait_http "http://127.0.0.1:$base_port/graphql" "$base_pid" gqlgenbase '{"query":"{subscribers}"}'
}

stop_server() { stop "$1"; forget "$1"; }

# --- figures ---------------------------------------------------------------

# median of the numbers given (the mean of the middle two for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "?"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
# field NAME LINE: the value of NAME=... in a `result` line.
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# ms DURATION: a Go duration (850µs, 21.5ms, 1.08s, 1m2s) in milliseconds.
ms() {
  echo "$1" | awk '{
    s=$1; t=0
    while (match(s, /^[0-9.]+(µs|us|ms|ns|h|m|s)/)) {
      tok=substr(s, 1, RLENGTH); s=substr(s, RLENGTH+1)
      n=tok; sub(/[a-zµ]+$/, "", n); u=substr(tok, length(n)+1)
      if (u=="ns") t+=n/1e6; else if (u=="µs"||u=="us") t+=n/1e3; else if (u=="ms") t+=n
      else if (u=="s") t+=n*1e3; else if (u=="m") t+=n*6e4; else if (u=="h") t+=n*3.6e6
    }
    printf "%.1f", t }'
}
round() { printf '%.0f' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a/b; else print "?" }'; }

rows=()
add_row() { rows+=("| $1 | $2 | $3 | $4 |"); }

tm=("$dir/tidemark")
bench_flags=(--url "http://127.0.0.1:$tm_port/graphql" --jwt-secret "$secret")

# --- the pairs ---------------------------------------------------------------

# each_round PEER FN: calls `FN SIDE ROUND` for tidemark and PEER in every
# round, the side that goes first alternating, so that neither always runs
# on the warmer cache. FN appends its figures to its caller's arrays.
each_round() {
  local peer=$1 fn=$2 r
  for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 0 ]; then "$fn" "$peer" "$r"; "$fn" tidemark "$r"; else "$fn" tidemark "$r"; "$fn" "$peer" "$r"; fi
  done
}

url_of() { if [ "$1" = postgraphile ]; then echo "http://127.0.0.1:$pgl_port/graphql"; else echo "http://127.0.0.1:$tm_port/graphql"; fi; }

read_once() {
  local res
  res=$("${tm[@]}" bench peer read --target "$1" --url "$(url_of "$1")" --jwt-secret "$secret" --tenant "$tenant" \
    --clients "$read_clients" --duration "$read_duration" | tee -a /dev/stderr | grep '^result ')
  rps[$1]+=" $(field rps "$res")" p50[$1]+=" $(field p50_ms "$res")" p95[$1]+=" $(field p95_ms "$res")" p99[$1]+=" $(field p99_ms "$res")"
}

run_reads() {
  local tenant
  tenant="peers-read-$(date +%s)"
  log "nested read: seeding $work_orders work orders into tenant $tenant"
  "${tm[@]}" bench peer seed "${bench_flags[@]}" --tenant "$tenant" --work-orders "$work_orders" >&2
  psql_do -c "VACUUM ANALYZE" # both read the same tables with fresh statistics
  local -A rps=() p50=() p95=() p99=()
  each_round postgraphile read_once
  local tr pr
  # shellcheck disable=SC2086 # each entry is a list of figures
  tr=$(median ${rps[tidemark]}) pr=$(median ${rps[postgraphile]})
  # shellcheck disable=SC2086
  add_row "nested read \`workOrders(first:100){title site{name} checklist{label done}}\`, $read_clients clients, $work_orders work orders" \
    "$(round "$tr") req/s, p50 / p95 / p99 $(median ${p50[tidemark]}) / $(median ${p95[tidemark]}) / $(median ${p99[tidemark]}) ms" \
    "PostGraphile $pgl_version ($pgl_workers workers): $(round "$pr") req/s, p50 / p95 / p99 $(median ${p50[postgraphile]}) / $(median ${p95[postgraphile]}) / $(median ${p99[postgraphile]}) ms" \
    "$(ratio "$tr" "$pr")"
}

pull_once() {
  local res
  res=$("${tm[@]}" bench peer pull --target "$1" --url "$(url_of "$1")" --jwt-secret "$secret" --tenant "$tenant" \
    --limit 1000 --expect "$pull_docs" | tee -a /dev/stderr | grep '^result ')
  docs_per_s[$1]+=" $(field docs_per_s "$res")"
}

run_pull() {
  local tenant
  tenant="peers-pull-$(date +%s)"
  log "paged read: pushing $pull_docs work orders into tenant $tenant"
  "${tm[@]}" bench sync "${bench_flags[@]}" --tenant "$tenant" --docs "$pull_docs" >&2
  psql_do -c "VACUUM ANALYZE"
  local -A docs_per_s=()
  each_round postgraphile pull_once
  local tm_med pg_med
  # shellcheck disable=SC2086
  tm_med=$(median ${docs_per_s[tidemark]}) pg_med=$(median ${docs_per_s[postgraphile]})
  add_row "paged read, pages of 1000, one client, $pull_docs work orders" "pull: $(round "$tm_med") docs/s" \
    "PostGraphile allWorkOrders by cursor: $(round "$pg_med") docs/s" "$(ratio "$tm_med" "$pg_med")"
}

push_once() {
  if [ "$1" = tidemark ]; then
    rows_per_s[$1]+=" $("${tm[@]}" bench sync "${bench_flags[@]}" --tenant "peers-push-$2-$(date +%s)" --docs "$push_docs" \
      --push-batch 100 --push-clients 4 | tee -a /dev/stderr | sed -n 's/^push: .* = \([0-9.]*\) rows\/s.*/\1/p')"
  else
    local tps
    tps=$("$pg_bin/pgbench" -n -c 4 -j 4 -T "$pgbench_seconds" -f loadtest/peers/pgbench/insert100.sql "$db_url" 2>&1 |
      tee -a /dev/stderr | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
    rows_per_s[$1]+=" $(awk -v t="$tps" 'BEGIN { printf "%.1f", t*100 }')"
  fi
}

run_push() {
  psql_do -f loadtest/peers/pgbench/setup.sql
  local -A rows_per_s=()
  if [ "$push_warmup" = 1 ]; then
    # A fresh cluster first creates (zero-fills and syncs) its WAL segments,
    # which slows whichever side writes first: one run of each, not counted.
    log "push: one warm-up run of each side, not counted"
    push_once tidemark 0 >/dev/null 2>&1
    push_once pgbench 0 >/dev/null 2>&1
    rows_per_s=()
  fi
  each_round pgbench push_once
  local tm_med pg_med
  # shellcheck disable=SC2086
  tm_med=$(median ${rows_per_s[tidemark]}) pg_med=$(median ${rows_per_s[pgbench]})
  add_row "push, 100-row batches, 4 clients, one tenant" "$(round "$tm_med") rows/s ($push_docs rows a run)" \
    "pgbench, 100-row INSERTs, 4 clients: $(round "$pg_med") rows/s (${pgbench_seconds}s a run)" \
    "$(awk -v a="$tm_med" -v b="$pg_med" 'BEGIN { printf "%.0f%%", 100*a/b }')"
}

# stream_once SIDE SUBS RATE: one stream run against a fresh server process;
# sets stream_result to "p50_ms p99_ms lost kib_per_conn".
stream_once() {
  local side=$1 subs=$2 rate=$3 url pid outp
  if [ "$side" = tidemark ]; then
    start_tidemark; pid=$tm_pid url="http://127.0.0.1:$tm_port/graphql"
  else
    start_baseline; pid=$base_pid url="http://127.0.0.1:$base_port/graphql"
  fi
  outp=$( (ulimit -n 20000; "${tm[@]}" bench stream --url "$url" --jwt-secret "$secret" --subscribers "$subs" --rate "$rate" \
    --duration "$stream_duration" --server-pid "$pid") 2>&1 | tee -a /dev/stderr)
  stop_server "$pid"
  local lat lost kib
  lat=$(echo "$outp" | sed -n 's/.*latency: p50 \([^ ]*\)  p95 [^ ]*  p99 \([^ ]*\) .*/\1 \2/p')
  lost=$(echo "$outp" | sed -n 's/.* documents delivered, \([0-9]*\) lost.*/\1/p')
  kib=$(echo "$outp" | sed -n 's/.*: \([0-9.-]*\) KiB per connection.*/\1/p')
  [ -n "$lat" ] || { echo "the $side stream run printed no latency" >&2; exit 1; }
  stream_result="$(ms "${lat% *}") $(ms "${lat#* }") ${lost:-?} ${kib:-?}"
}

sum() { printf '%s\n' "$@" | awk '{ t += $1 } END { print t + 0 }'; }

stream_round() {
  log "stream: $1, $subs subscribers at $rate/s, round $2"
  local f
  stream_once "$1" "$subs" "$rate"
  read -r -a f <<<"$stream_result"
  p50[$1]+=" ${f[0]}" p99[$1]+=" ${f[1]}" lost[$1]+=" ${f[2]}" kib[$1]+=" ${f[3]}"
}

run_stream() {
  local c subs rate
  for c in $stream_cases; do
    subs=${c%%:*} rate=${c##*:}
    local -A p50=() p99=() lost=() kib=()
    each_round baseline stream_round
    # shellcheck disable=SC2086
    add_row "stream, $subs subscribers of one tenant at $rate change(s)/s" \
      "p50 / p99 $(median ${p50[tidemark]}) / $(median ${p99[tidemark]}) ms, $(sum ${lost[tidemark]}) lost, $(median ${kib[tidemark]}) KiB per connection" \
      "plain gqlgen: p50 / p99 $(median ${p50[baseline]}) / $(median ${p99[baseline]}) ms, $(sum ${lost[baseline]}) lost, $(median ${kib[baseline]}) KiB per connection" \
      "p99 $(ratio "$(median ${p99[tidemark]})" "$(median ${p99[baseline]})") the baseline's"
  done
}

# --- run ---------------------------------------------------------------------

log "folder $dir; building"
go build -o "$dir/tidemark" ./cmd/tidemark
go build -o "$dir/gqlgenbase" ./loadtest/peers/gqlgenbase
start_postgres
TIDEMARK_DATABASE_URL="$db_url" "$dir/tidemark" migrate >"$dir/migrate.log" 2>&1 || { cat "$dir/migrate.log" >&2; exit 1; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
began=$(date -u +%FT%TZ)

if [[ $what == reads || $what == pull || $what == all ]]; then
  start_tidemark
  start_postgraphile
  pgl_version=$(node -p 'require("./loadtest/peers/postgraphile/node_modules/postgraphile/package.json").version')
  if [[ $what == reads || $what == all ]]; then run_reads; fi
  if [[ $what == pull || $what == all ]]; then run_pull; fi
  stop_server "$pgl_pid"
  stop_server "$tm_pid"
fi
if [[ $what == push || $what == all ]]; then
  start_tidemark
  run_push
  stop_server "$tm_pid"
fi
if [[ $what == stream || $what == all ]]; then run_stream; fi

table=$(
  echo "Side by side, $what: $began, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, medians of $rounds alternating rounds; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
  echo
  echo "| work | Tidemark | peer in the same run | Tidemark / peer |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
)
echo "$table"
if [ -n "$out" ]; then printf '\n%s\n' "$table" >>"$out"; fi
