#!/usr/bin/env bash
# Fault tests at the issue's full size (issue 11, "Survive"), too long for
# CI: the tests of e2e/faults with
#   - PostgreSQL stopped for 30 s under pushes, pulls and streams
#     (TIDEMARK_FAULT_OUTAGE; CI: 5s) with 4 pushers and 20 streams
#     (TIDEMARK_FAULT_PUSHERS, TIDEMARK_FAULT_STREAMS; CI: 3 and 4),
#   - tidemark SIGKILLed mid-push 100 times (TIDEMARK_FAULT_KILLS; CI: 10),
#   - dev mode's embedded PostgreSQL killed under tidemark, and left behind
#     by a killed tidemark.
# Each test logs its figures (-v). Override the sizes through the same
# variables; TIDEMARK_FAULT_BINARY tests a built binary instead of building
# ./cmd/tidemark. Extra arguments go to go test (e.g. -run Outage).
#
#   scripts/faults.sh
#   TIDEMARK_FAULT_KILLS=300 scripts/faults.sh -run KilledMidPush
set -euo pipefail
cd "$(dirname "$0")/.."
export TIDEMARK_FAULT_OUTAGE=${TIDEMARK_FAULT_OUTAGE:-30s}
export TIDEMARK_FAULT_KILLS=${TIDEMARK_FAULT_KILLS:-100}
export TIDEMARK_FAULT_PUSHERS=${TIDEMARK_FAULT_PUSHERS:-4}
export TIDEMARK_FAULT_STREAMS=${TIDEMARK_FAULT_STREAMS:-20}
echo "faults: outage $TIDEMARK_FAULT_OUTAGE, kills $TIDEMARK_FAULT_KILLS, $TIDEMARK_FAULT_PUSHERS pushers and $TIDEMARK_FAULT_STREAMS streams in the outage"
# The servers' logs are printed only when a test fails; the figures are the
# tests' own log lines.
go test -count=1 -v -timeout 30m ./e2e/faults "$@" 2>&1 | grep -v '^        {"time"'
