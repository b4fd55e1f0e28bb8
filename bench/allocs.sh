#!/usr/bin/env bash
# Heap allocations and context switches per proxied request, counted in the release binary.
#
#   bench/allocs.sh [SECONDS] [BINARY]     (defaults: 5 s; target/release/loadbalancer, built)
#
# Puts uprobes on libc's malloc and realloc (perf probe; needs root) and counts, with
# perf stat attached to the balancer, how often they run while wrk sends SECONDS of requests at
# 8 connections through it to three nginx `return 200` backends; divides by the requests wrk
# completed. Once with rate limiting on (limits nobody reaches) and once off. The counts do not
# depend on the machine's speed the way requests/s do, so two builds can be compared in one
# sitting: pass another binary as BINARY. The probes slow every allocation down, so the
# requests/s printed here are not throughput figures.
# Installs wrk, nginx and perf from Debian if they are missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
BIN=${2:-}

source bench/common.sh
need_tools wrk nginx perf

if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/loadbalancer
fi
make_workspace

libc=$(ldd "$BIN" | awk '/libc\.so/ {print $3}')
for fn in malloc realloc; do
  perf probe -q -x "$libc" --add "$fn" 2>/dev/null || true
done
perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc' || {
  echo "could not put a uprobe on malloc in $libc (root and perf probe are needed)" >&2
  exit 1
}

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
for port in 19001 19002 19003; do wait_port "$port"; done
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"

printf '%-22s %10s %12s %12s %12s\n' "rate limiting" "requests" "malloc/req" "realloc/req" "cswitch/req"
for enabled in true false; do
  dir=$work/lb-$enabled
  mkdir -p "$dir"
  write_balancer_settings "$dir/Settings.toml" 18095 "$enabled"
  (cd "$dir" && RUST_LOG=warn exec "$BIN" --settings Settings.toml --backends ../config.json \
    2> log) & lb=$!
  wait_port 18095
  wrk -t2 -c8 -d1s http://127.0.0.1:18095/ > /dev/null # warm the connection pools
  perf stat -x, -e probe_libc:malloc,probe_libc:realloc,context-switches -p "$lb" \
    -o "$dir/stat.csv" & stat=$!
  out=$(wrk -t2 -c8 -d"${SECS}s" http://127.0.0.1:18095/)
  kill -INT "$stat"
  wait "$stat" || true
  kill -TERM "$lb"
  wait "$lb" || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  count() { awk -F, -v e="$1" '$3 == e {print $1}' "$dir/stat.csv"; }
  awk -v on="$enabled" -v r="$requests" -v m="$(count probe_libc:malloc)" \
    -v re="$(count probe_libc:realloc)" -v cs="$(count context-switches)" \
    'BEGIN { printf "%-22s %10d %12.2f %12.2f %12.2f\n", (on == "true" ? "on" : "off"), r, m / r, re / r, cs / r }'
done
