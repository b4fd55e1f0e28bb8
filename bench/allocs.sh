#!/usr/bin/env bash
# Heap allocations and context switches per proxied request, counted in the release binary.
#
#   bench/allocs.sh [SECONDS] [BINARY]     (defaults: 5 s; target/release/loadbalancer, built)
#
# Puts uprobes on the allocator's entry points (mimalloc's, or libc's malloc for a build without
# it; perf probe, needs root) and counts, with
# perf stat attached to the balancer, how often they run while wrk sends SECONDS of requests at
# 8 connections through it to three nginx `return 200` backends; divides by the requests wrk
# completed. Once with rate limiting on (limits nobody reaches) and once off. The counts do not
# depend on the machine's speed the way requests/s do, so two builds can be compared in one
# sitting: pass another binary as BINARY. The probes slow every allocation down, so the
# requests/s printed here are not throughput figures.
# Installs wrk, nginx and perf (Debian's linux-perf) if they are missing. Traffic stays on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
BIN=${2:-}

source bench/common.sh
need_tools wrk nginx
command -v perf >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
}

if [ -z "$BIN" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/loadbalancer
fi
make_workspace

# Rust's allocations go to mimalloc (linked into the binary) when it is the global allocator,
# else to libc's malloc. The probes get their own names and are removed on exit.
symbols=$(nm "$BIN" 2>/dev/null || true)
if grep -q ' T mi_malloc_aligned$' <<<"$symbols"; then
  where=$BIN; alloc_fns=(mi_malloc_aligned mi_zalloc_aligned); realloc_fn=mi_realloc_aligned
else
  where=$(ldd "$BIN" | awk '/libc\.so/ {print $3}'); alloc_fns=(malloc calloc); realloc_fn=realloc
fi
remove_probes() { perf probe -q -d 'lballoc:*' 2>/dev/null || true; }
trap 'remove_probes; cleanup_workspace' EXIT
remove_probes
perf probe -q -x "$where" --add "lballoc:heap_alloc=${alloc_fns[0]}" \
  && perf probe -q -x "$where" --add "lballoc:heap_zalloc=${alloc_fns[1]}" \
  && perf probe -q -x "$where" --add "lballoc:heap_realloc=$realloc_fn" || {
  echo "could not put uprobes on ${alloc_fns[*]} in $where (root and perf probe are needed)" >&2
  exit 1
}
echo "counting calls to ${alloc_fns[*]} and $realloc_fn in $where"

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
for port in 19001 19002 19003; do wait_port "$port"; done
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"

printf '%-22s %10s %12s %12s %12s\n' "rate limiting" "requests" "allocs/req" "reallocs/req" "cswitch/req"
for enabled in true false; do
  dir=$work/lb-$enabled
  mkdir -p "$dir"
  write_balancer_settings "$dir/Settings.toml" 18095 "$enabled"
  (cd "$dir" && RUST_LOG=warn exec "$BIN" --settings Settings.toml --backends ../config.json \
    2> log) & lb=$!
  wait_port 18095
  wrk -t2 -c8 -d1s http://127.0.0.1:18095/ > /dev/null # warm the connection pools
  perf stat -x, -e lballoc:heap_alloc,lballoc:heap_zalloc,lballoc:heap_realloc,context-switches -p "$lb" \
    -o "$dir/stat.csv" & stat=$!
  out=$(wrk -t2 -c8 -d"${SECS}s" http://127.0.0.1:18095/)
  kill -INT "$stat"
  wait "$stat" || true
  kill -TERM "$lb"
  wait "$lb" || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  count() { awk -F, -v e="$1" '$3 == e {print $1}' "$dir/stat.csv"; }
  allocs=$(( $(count lballoc:heap_alloc) + $(count lballoc:heap_zalloc) ))
  awk -v on="$enabled" -v r="$requests" -v m="$allocs" \
    -v re="$(count lballoc:heap_realloc)" -v cs="$(count context-switches)" \
    'BEGIN { printf "%-22s %10d %12.2f %12.2f %12.2f\n", (on == "true" ? "on" : "off"), r, m / r, re / r, cs / r }'
done
