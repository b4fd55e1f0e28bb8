#!/usr/bin/env bash
# TLS termination next to nginx, with the same certificate, in one run.
#
#   bench/tls.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 5 s per measurement)
#   LB_BIN=target/pgo/bolt/loadbalancer bench/tls.sh ...   (another build, e.g. bench/pgo.sh's)
#
# Makes an EC P-256 certificate with openssl, starts three nginx `return 200` backends, then this
# balancer ([tls] on 127.0.0.1:18443, rate limiting on with limits nobody reaches) and nginx as
# a TLS proxy (127.0.0.1:18444, HTTP/1.1 upstream keep-alive) in front of them. Every round,
# interleaved: wrk over TLS with kept-alive connections at 64 connections, then with
# `Connection: close` at 16 connections, so that every request is a new TCP connection and a
# full TLS handshake (wrk resumes no sessions). Prints medians and ours ÷ nginx. wrk speaks
# HTTP/1.1 only. Installs wrk and nginx from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}

source bench/common.sh
need_tools wrk nginx openssl
balancer_binary
make_workspace

write_certificate "$work"
write_nginx_backends "$work/nginx-backends"
mkdir -p "$work/lb"
write_nginx_proxy "$work/nginx-tls" "listen 127.0.0.1:18444 ssl http2;
    ssl_certificate $work/server.crt;
    ssl_certificate_key $work/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;"
write_balancer_settings "$work/lb/Settings.toml" 18442 true
cat >> "$work/lb/Settings.toml" <<CONF
[tls]
listen = "127.0.0.1:18443"
cert = "../server.crt"
key = "../server.key"
CONF
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
nginx -c "$work/nginx-backends/nginx.conf" & pids+=($!)
nginx -c "$work/nginx-tls/nginx.conf" & pids+=($!)
(cd "$work/lb" && RUST_LOG=warn exec "$lb_bin" --settings Settings.toml --backends ../config.json 2> log) & pids+=($!)
for p in 19001 19002 19003 18443 18444; do wait_port "$p"; done

results=$work/results.tsv
: > "$results"
declare -A port=([loadbalancer]=18443 [nginx]=18444)
for round in $(seq 1 "$ROUNDS"); do
  for target in loadbalancer nginx; do
    out=$(wrk -t2 -c64 -d"${SECS}s" "https://127.0.0.1:${port[$target]}/")
    printf '%s\tkeepalive\t%s\t%s\n' "$round" "$target" "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" >> "$results"
    out=$(wrk -t2 -c16 -d"${SECS}s" -H 'Connection: close' "https://127.0.0.1:${port[$target]}/")
    printf '%s\thandshakes\t%s\t%s\n' "$round" "$target" "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")" >> "$results"
  done
  echo "round $round done" >&2
done

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    rnd, kind, target, rps = line.split()
    rows[(kind, target)].append(float(rps))
for kind, what in (("keepalive", "TLS keep-alive requests/s, 64 connections"),
                   ("handshakes", "new TLS connections/s (Connection: close), 16 connections")):
    ours, theirs = rows[(kind, "loadbalancer")], rows[(kind, "nginx")]
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"{what}, {len(ratios)} rounds")
    print(f"  loadbalancer {statistics.median(ours):.0f}, nginx {statistics.median(theirs):.0f}")
    print("  ours ÷ nginx per round: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"  median ours ÷ nginx: {statistics.median(ratios):.3f}")
PY
