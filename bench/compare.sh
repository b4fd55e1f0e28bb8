#!/usr/bin/env bash
# Throughput and latency of this balancer next to nginx and HAProxy, on this machine, in one run.
#
#   bench/compare.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s per measurement)
#   LB_BIN=target/pgo/release/loadbalancer bench/compare.sh ...   (another build, e.g. bench/pgo.sh's)
#
# Starts three nginx backends that `return 200` on 127.0.0.1:19001-19003, then in every round,
# interleaved: the backend directly, this balancer with rate limiting on (:18080, limits so high
# that nothing is refused) and off (:18083), nginx as a proxy (:18081) and HAProxy (:18082) in
# front of the same three, each under wrk at 64 connections and at 1 connection; and the
# rate-limited balancer once more with bench/xff.lua, whose requests carry X-Forwarded-For with
# 10,000 different client addresses (127.0.0.1 is a trusted proxy there, so each is limited as a
# client of its own). Prints the median requests/s, p50 and p99 per target and the ratios to
# nginx and HAProxy. Each round starts the list of targets one place further on, so that no
# target always runs right after the same one (the position in the round moved a target's
# figure by several percent), and every measurement follows a 1 s warm-up of its target.
# None of the proxies write an access log (RUST_LOG=warn here, access_log off
# in nginx, no log in HAProxy). Extra environment for the balancer can be passed as LB__*
# variables.
# Installs wrk, nginx and haproxy from Debian if they are missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-10}

source bench/common.sh
need_tools wrk nginx haproxy

balancer_binary
make_workspace

write_nginx_backends "$work/nginx-backends"
write_nginx_proxy "$work/nginx-proxy" "listen 127.0.0.1:18081;"
write_haproxy_conf "$work/haproxy.cfg" 18082
cat > "$work/config.json" <<CONF
{ "backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"] }
CONF
mkdir -p "$work/limited" "$work/unlimited"
write_balancer_settings "$work/limited/Settings.toml" 18080 true
write_balancer_settings "$work/unlimited/Settings.toml" 18083 false

nginx -c "$work/nginx-backends/nginx.conf" & pids+=($!)
nginx -c "$work/nginx-proxy/nginx.conf" & pids+=($!)
haproxy -f "$work/haproxy.cfg" -q & pids+=($!)
for variant in limited unlimited; do
  RUST_LOG=warn "$lb_bin" --settings "$work/$variant/Settings.toml" \
    --backends "$work/config.json" 2> "$work/$variant/loadbalancer.log" & pids+=($!)
done

for port in 19001 19002 19003 18080 18081 18082 18083; do wait_port "$port"; done

declare -A ports=([direct]=19001 [loadbalancer]=18080 [lb-10k-ips]=18080 [lb-nolimit]=18083 [nginx]=18081 [haproxy]=18082)
targets=(direct loadbalancer lb-10k-ips lb-nolimit nginx haproxy)
results="$work/results.tsv"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(( (round - 1) % ${#targets[@]} ))
  order=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
  for conns in 64 1; do
    threads=$(( conns > 1 ? 2 : 1 ))
    for target in "${order[@]}"; do
      script=()
      [ "$target" = lb-10k-ips ] && script=(-s bench/xff.lua)
      wrk -t"$threads" -c"$conns" -d1s "${script[@]}" "http://127.0.0.1:${ports[$target]}/" > /dev/null
      out=$(wrk -t"$threads" -c"$conns" -d"${SECONDS_PER_RUN}s" --latency "${script[@]}" "http://127.0.0.1:${ports[$target]}/")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      p99=$(awk '$1=="99%" {print $2}' <<<"$out")
      errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$conns" "$target" "$rps" "$p50" "$p99" "$errors" >> "$results"
      echo "round $round  c=$conns  $target: $rps req/s  p50 $p50  p99 $p99 $errors" >&2
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
from collections import defaultdict

def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)

rows = defaultdict(list)
by_round = defaultdict(dict)
errors = defaultdict(int)
for line in open(sys.argv[1]):
    rnd, conns, target, rps, p50, p99, err = (line.rstrip("\n").split("\t") + [""])[:7]
    rows[(conns, target)].append((float(rps), ms(p50), ms(p99)))
    by_round[(conns, rnd)][target] = float(rps)
    errors[(conns, target)] += bool(err.strip())

for conns in ("64", "1"):
    print(f"\n{conns} connection(s), medians over {len(rows[(conns, 'nginx')])} rounds")
    print(f"{'target':<14}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'÷ nginx':>9}{'÷ haproxy':>11}")
    med = {}
    for target in ("direct", "loadbalancer", "lb-10k-ips", "lb-nolimit", "nginx", "haproxy"):
        runs = rows[(conns, target)]
        med[target] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
    for target, (rps, p50, p99) in med.items():
        flag = "  (runs with errors: %d)" % errors[(conns, target)] if errors[(conns, target)] else ""
        print(f"{target:<14}{rps:>10.0f}{p50:>9.3f}{p99:>9.3f}{rps / med['nginx'][0]:>9.2f}{rps / med['haproxy'][0]:>11.2f}{flag}")
    for peer in ("nginx", "haproxy"):
        ratios = [r["loadbalancer"] / r[peer] for (c, _), r in sorted(by_round.items()) if c == conns]
        print(f"loadbalancer ÷ {peer} within each round: "
              + " ".join(f"{x:.2f}" for x in ratios) + f" (median {statistics.median(ratios):.2f})")
    print(f"rate limiter on vs off: {med['loadbalancer'][0] / med['lb-nolimit'][0]:.2f}x requests/s")
    print(f"10,000 client IPs vs one client: {med['lb-10k-ips'][0] / med['loadbalancer'][0]:.2f}x requests/s")
    if conns == "1":
        base = med["direct"][1]
        print("added p50 latency vs direct: " + ", ".join(
            f"{t} {med[t][1] - base:+.3f} ms" for t in ("loadbalancer", "nginx", "haproxy")))
PY
