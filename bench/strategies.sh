#!/usr/bin/env bash
# What each balancing strategy costs next to round_robin, on the same build, head to head.
#
#   bench/strategies.sh [BINARY] [ROUNDS] [SECONDS]
#       (defaults: target/release/loadbalancer, 5 rounds of 5 s)
#
# For each of least_connections, power_of_two and consistent_hash, runs bench/ab.sh with
# A = the binary as configured (round_robin) and B = the same binary with
# LB__BACKENDS__STRATEGY set, rate limiting on, and prints the median B ÷ A at 64 connections
# and at 1. wrk sends every request from 127.0.0.1 without an API key, so consistent_hash puts
# them all on one backend: the figure is the cost of the pick, not of an uneven spread.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/loadbalancer}")
ROUNDS=${2:-5}
SECS=${3:-5}
[ -x "$BIN" ] || cargo build --release --quiet
wrappers=$(mktemp -d)
trap 'rm -rf "$wrappers"' EXIT
for strategy in least_connections power_of_two consistent_hash; do
  printf '#!/bin/sh\nLB__BACKENDS__STRATEGY=%s exec %q "$@"\n' "$strategy" "$BIN" > "$wrappers/$strategy"
  chmod +x "$wrappers/$strategy"
  echo "== $strategy ÷ round_robin"
  bench/ab.sh "$BIN" "$wrappers/$strategy" "$ROUNDS" "$SECS" on 2>/dev/null \
    | grep -E "connection|per round|median|^  [AB]:"
done
