#!/usr/bin/env bash
# WebSocket echo round trips per second: directly to the echo backend, through this balancer's
# tunnel, and through nginx proxying WebSockets, in one run.
#
#   bench/websocket.sh [ROUNDS] [SECONDS] [CONNECTIONS] [BYTES]
#                                          (defaults: 5 rounds of 5 s, 64 connections, 64 bytes)
#   LB_BIN=target/pgo/bolt/loadbalancer bench/websocket.sh ...   (another build, e.g. bench/pgo.sh's)
#
# The echo backend and the load client are examples/ws_echo.rs (tungstenite, one thread each).
# Each connection sends a binary message, waits for its echo and sends the next. Every round,
# interleaved: direct, loadbalancer, nginx. Prints medians and the ratios to direct. Installs
# nginx from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}
CONNS=${3:-64}
BYTES=${4:-64}

source bench/common.sh
need_tools nginx
balancer_binary
cargo build --release --quiet --example ws_echo
make_workspace
echo_bin=$(realpath target/release/examples/ws_echo)

mkdir -p "$work/lb"
write_balancer_settings "$work/lb/Settings.toml" 18480 true
echo '{"backends": ["http://127.0.0.1:19101"]}' > "$work/config.json"
write_nginx_conf "$work/nginx" auto '
  server {
    listen 127.0.0.1:18481;
    location / {
      proxy_pass http://127.0.0.1:19101;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 300s;
    }
  }'
"$echo_bin" serve 127.0.0.1:19101 & pids+=($!)
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
(cd "$work/lb" && RUST_LOG=warn exec "$lb_bin" --settings Settings.toml --backends ../config.json 2> log) & pids+=($!)
for p in 19101 18480 18481; do wait_port "$p"; done

results=$work/results.tsv
: > "$results"
declare -A port=([direct]=19101 [loadbalancer]=18480 [nginx]=18481)
for round in $(seq 1 "$ROUNDS"); do
  for target in direct loadbalancer nginx; do
    rps=$("$echo_bin" load "ws://127.0.0.1:${port[$target]}/echo" "$CONNS" "$SECS" "$BYTES")
    printf '%s\t%s\t%s\n' "$round" "$target" "$rps" >> "$results"
  done
  echo "round $round done" >&2
done

python3 - "$results" "$CONNS" "$BYTES" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, target, rps = line.split()
    rows[target].append(float(rps))
print(f"WebSocket echo round trips/s, {sys.argv[2]} connections, {sys.argv[3]}-byte messages, "
      f"{len(rows['direct'])} rounds")
for target in ("direct", "loadbalancer", "nginx"):
    print(f"  {target:13} median {statistics.median(rows[target]):.0f}")
for target in ("loadbalancer", "nginx"):
    ratios = [a / b for a, b in zip(rows[target], rows["direct"])]
    print(f"  {target} ÷ direct per round: " + " ".join(f"{r:.3f}" for r in ratios)
          + f"; median {statistics.median(ratios):.3f}")
ratios = [a / b for a, b in zip(rows["loadbalancer"], rows["nginx"])]
print(f"  loadbalancer ÷ nginx median: {statistics.median(ratios):.3f}")
PY
