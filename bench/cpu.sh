#!/usr/bin/env bash
# CPU time per proxied request, user and kernel apart: this balancer (rate limiting on), nginx
# and HAProxy in front of the same three nginx `return 200` backends, under wrk at 64
# connections. On this 2-core machine everything (wrk, backends, proxy) shares the CPU, so
# requests/s follow the proxy's CPU per request; this shows where a gap comes from. Then the
# floor: servers answering by themselves — actix-web with nothing in it (examples/bare_ok.rs,
# two workers) and nginx's `return 200` (one of the backends).
#
#   bench/cpu.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds of 5 s per proxy)
#   LB_BIN=target/pgo/bolt/loadbalancer bench/cpu.sh ...   (another build, e.g. bench/pgo.sh's)
#
# Reads utime/stime of the proxy's processes (all threads; nginx's master and workers) from
# /proc before and after each run. Prints medians of µs per request. For the proxies also what
# each costs the rest of the machine, which shares the two cores: the backends' CPU per request
# behind it and wrk's own, and the sum of all three (what requests/s follow). Installs wrk,
# nginx and haproxy from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}

source bench/common.sh
need_tools wrk nginx haproxy

balancer_binary
cargo build --release --quiet --example bare_ok
make_workspace

write_nginx_backends "$work/nginx-backends"
write_nginx_proxy "$work/nginx-proxy" "listen 127.0.0.1:18181;"
write_haproxy_conf "$work/haproxy.cfg" 18182
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
mkdir -p "$work/lb"
write_balancer_settings "$work/lb/Settings.toml" 18180 true

nginx -c "$work/nginx-backends/nginx.conf" & pids+=($!)
nginx -c "$work/nginx-proxy/nginx.conf" & nginx_pid=$!; pids+=("$nginx_pid")
haproxy -f "$work/haproxy.cfg" -q & haproxy_pid=$!; pids+=("$haproxy_pid")
(cd "$work/lb" && RUST_LOG=warn exec "$lb_bin" --settings Settings.toml --backends ../config.json \
  2> log) & lb_pid=$!; pids+=("$lb_pid")
backends_pid=${pids[0]}
target/release/examples/bare_ok 127.0.0.1:18183 & bare_pid=$!; pids+=("$bare_pid")
for port in 19001 19002 19003 18180 18181 18182 18183; do wait_port "$port"; done

targets=(loadbalancer nginx haproxy actix-web-bare nginx-return-200)
declare -A port=([loadbalancer]=18180 [nginx]=18181 [haproxy]=18182 [actix-web-bare]=18183
  [nginx-return-200]=19001)
declare -A root=([loadbalancer]=$lb_pid [nginx]=$nginx_pid [haproxy]=$haproxy_pid
  [actix-web-bare]=$bare_pid [nginx-return-200]=$backends_pid)

hz=$(getconf CLK_TCK)
results=$work/results.tsv
: > "$results"
for target in "${targets[@]}"; do   # warm-up
  wrk -t2 -c64 -d1s "http://127.0.0.1:${port[$target]}/" > /dev/null
done
TIMEFORMAT='%U %S'   # bash's `time`: wrk's own user and kernel seconds
for round in $(seq 1 "$ROUNDS"); do
  for target in "${targets[@]}"; do
    read -r user0 system0 <<<"$(cpu_ticks "${root[$target]}")"
    read -r b_user0 b_system0 <<<"$(cpu_ticks "$backends_pid")"
    { time wrk -t2 -c64 -d"${SECS}s" "http://127.0.0.1:${port[$target]}/" > "$work/wrk.out"; } \
      2> "$work/wrk.time"
    read -r user1 system1 <<<"$(cpu_ticks "${root[$target]}")"
    read -r b_user1 b_system1 <<<"$(cpu_ticks "$backends_pid")"
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$requests" "$rps" \
      "$((user1 - user0))" "$((system1 - system0))" \
      "$((b_user1 - b_user0 + b_system1 - b_system0))" "$(cat "$work/wrk.time")" >> "$results"
  done
  echo "round $round done" >&2
done

python3 - "$results" "$hz" <<'PY'
import statistics, sys
from collections import defaultdict
hz = int(sys.argv[2])
rows = defaultdict(list)
for line in open(sys.argv[1]):
    target, requests, rps, user, system, backends, wrk = line.split("\t")
    n = int(requests)
    per = lambda ticks: ticks / hz / n * 1e6
    wrk_us = sum(float(x) for x in wrk.split()) / n * 1e6
    rows[target].append((float(rps), per(int(user)), per(int(system)), per(int(backends)), wrk_us))
median = lambda r, i: statistics.median(x[i] for x in r)
print("64 connections, medians; µs of the server's CPU per request")
print(f"{'server':<18}{'req/s':>9}{'user µs':>10}{'kernel µs':>11}{'total µs':>10}{'÷ nginx':>9}"
      f"{'backends':>10}{'wrk':>7}{'all µs':>8}")
totals = {t: statistics.median(u + s for _, u, s, _, _ in r) for t, r in rows.items()}
for target, r in rows.items():
    if target == "actix-web-bare":
        print("answering by themselves (the proxies' floor):")
    base = "nginx-return-200" if target in ("actix-web-bare", "nginx-return-200") else "nginx"
    line = (f"{target:<18}{median(r, 0):>9.0f}{median(r, 1):>10.2f}{median(r, 2):>11.2f}"
            f"{totals[target]:>10.2f}{totals[target] / totals[base]:>9.2f}")
    if base == "nginx":   # a proxy: what it costs the backends and wrk too, and the sum
        whole = statistics.median(u + s + b + w for _, u, s, b, w in r)
        line += f"{median(r, 3):>10.2f}{median(r, 4):>7.2f}{whole:>8.2f}"
    print(line)
PY
