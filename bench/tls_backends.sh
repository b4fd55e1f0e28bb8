#!/usr/bin/env bash
# HTTPS backends: the balancer and nginx, each proxying plain HTTP to three nginx backends that
# speak TLS, in one run; optionally an earlier build of the balancer beside them.
#
#   bench/tls_backends.sh [ROUNDS] [SECONDS]     (defaults: 5 rounds of 5 s per measurement)
#   LB_BIN=... bench/tls_backends.sh             (the build to measure; default target/release)
#   LB_BIN_BEFORE=... bench/tls_backends.sh      (an earlier build, measured beside it)
#
# Makes a CA and an EC P-256 certificate for 127.0.0.1 it signs, with openssl; the backends
# `return 200` over TLS 1.2/1.3. Both proxies verify the backends' certificate against the CA and keep their upstream
# connections alive (nginx: `keepalive 128`, `proxy_ssl_verify on` for the name `localhost`,
# since nginx 1.22 matches no IP address in a certificate); rate limiting is on in
# the balancer with limits nobody reaches. Every round, interleaved: wrk at 64 connections and
# at 1 connection against each proxy. Prints medians, ours ÷ nginx, and after ÷ before when
# LB_BIN_BEFORE is set. Installs wrk and nginx from Debian if missing. Traffic stays on
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}

source bench/common.sh
need_tools wrk nginx openssl curl
balancer_binary
make_workspace

write_signed_certificate "$work"
tls="ssl_certificate $work/server.crt; ssl_certificate_key $work/server.key; ssl_protocols TLSv1.2 TLSv1.3;"
write_nginx_conf "$work/nginx-backends" 1 "
  server { listen 127.0.0.1:19001 ssl; $tls location / { return 200 \"ok\n\"; } }
  server { listen 127.0.0.1:19002 ssl; $tls location / { return 200 \"ok\n\"; } }
  server { listen 127.0.0.1:19003 ssl; $tls location / { return 200 \"ok\n\"; } }"
write_nginx_conf "$work/nginx-proxy" auto "
  upstream pool {
    server 127.0.0.1:19001; server 127.0.0.1:19002; server 127.0.0.1:19003;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:18444;
    location / {
      proxy_pass https://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $work/ca.crt;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }"
echo '{"backends": ["https://127.0.0.1:19001", "https://127.0.0.1:19002", "https://127.0.0.1:19003"]}' \
  > "$work/config.json"
nginx -c "$work/nginx-backends/nginx.conf" & pids+=($!)
nginx -c "$work/nginx-proxy/nginx.conf" & pids+=($!)

declare -A port=([after]=18443 [nginx]=18444)
declare -A bin=([after]=$lb_bin)
if [ -n "${LB_BIN_BEFORE:-}" ]; then
  port[before]=18442
  bin[before]=$(realpath "$LB_BIN_BEFORE")
fi
for side in "${!bin[@]}"; do
  mkdir -p "$work/$side"
  write_balancer_settings "$work/$side/Settings.toml" "${port[$side]}" true
  printf '[backends]\nca_file = "../ca.crt"\n' >> "$work/$side/Settings.toml"
  (cd "$work/$side" && RUST_LOG=warn exec "${bin[$side]}" --settings Settings.toml \
    --backends ../config.json 2> log) & pids+=($!)
done
for p in 19001 19002 19003 "${port[@]}"; do wait_port "$p"; done
# Every proxy must answer 200 through its backends before anything is measured.
for target in "${!port[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$target]}/")
  [ "$code" = 200 ] || { echo "$target answers $code, not 200" >&2; exit 1; }
done

results=$work/results.tsv
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for connections in 64 1; do
    for target in "${!port[@]}"; do
      out=$(wrk -t"$((connections > 1 ? 2 : 1))" -c"$connections" -d"${SECS}s" "http://127.0.0.1:${port[$target]}/")
      printf '%s\t%s\t%s\t%s\n' "$round" "$connections" "$target" \
        "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" >> "$results"
    done
  done
  echo "round $round done" >&2
done
for side in "${!bin[@]}"; do
  if grep -q -i "error\|fail" "$work/$side/log"; then
    echo "$side's log has errors:" >&2
    head -5 "$work/$side/log" >&2
  fi
done

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, connections, target, rps = line.split()
    rows[(connections, target)].append(float(rps))
for connections in ("64", "1"):
    print(f"HTTPS backends, {connections} connection(s), {len(rows[(connections, 'after')])} rounds")
    for target in ("after", "before", "nginx"):
        if rows[(connections, target)]:
            print(f"  {target}: {statistics.median(rows[(connections, target)]):.0f} req/s")
    for ours, theirs in (("after", "nginx"), ("before", "nginx"), ("after", "before")):
        a, b = rows[(connections, ours)], rows[(connections, theirs)]
        if a and b:
            ratios = [x / y for x, y in zip(a, b)]
            print(f"  {ours} ÷ {theirs} per round: " + " ".join(f"{r:.3f}" for r in ratios)
                  + f"; median {statistics.median(ratios):.3f}")
PY
