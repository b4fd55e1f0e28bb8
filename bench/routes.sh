#!/usr/bin/env bash
# What route selection costs the whole balancer: one binary, started four times in front of the
# same three nginx `return 200` backends — with no routes, and with 1, 100 and 10 000 routes (a
# third by exact host, a third by wildcard host, a third by path prefix alone, all to the one
# pool, so that only the choosing differs; benches/routes.rs measures the same tables alone).
#
#   bench/routes.sh [ROUNDS] [SECONDS]      (defaults: 5 rounds of 5 s; LB_BIN= another build)
#
# wrk at 64 connections sends every request to a different route's host and path (a Lua script
# cycling through them); the balancer without routes gets exactly the same requests. Each round
# runs none, N, N, none for each N, so neither side always goes first while the machine
# drifts; prints the per-round ratios N ÷ none and their median. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-5}

source bench/common.sh
need_tools wrk nginx
balancer_binary
BIN=$lb_bin
make_workspace

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)

# The pool file with $1 routes, and the wrk script cycling through their hosts and paths.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
backends = ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]
def route(i):
    if i % 3 == 0:
        return {"hosts": [f"s{i}.example.com"]}, f"s{i}.example.com"
    if i % 3 == 1:
        return {"hosts": [f"*.w{i}.example.com"]}, f"eu.w{i}.example.com"
    return {}, "www.example.com"
for n in (0, 1, 100, 10000):
    routes, targets = [], []
    for i in range(n):
        matcher, host = route(i)
        routes.append({"name": f"r{i}", **matcher, "path_prefix": f"/p{i}/", "pool": "default"})
        targets.append((host, f"/p{i}/items"))
    pool = {"backends": backends}
    if routes:
        pool["routes"] = routes
    json.dump(pool, open(f"{work}/routes-{n}.json", "w"))
# Every balancer gets the requests of the 10 000-route file; routes it does not have send them
# to the default pool, so all four do the same proxying work.
lines = ["local targets = {"]
for i in range(10000):
    _, host = route(i)
    lines.append(f'  {{"{host}", "/p{i}/items"}},')
lines.append("}")
lines.append("""
local n = 0
function setup(thread)
  thread:set("n", math.random(0, #targets - 1))
end
function request()
  n = (n + 7919) % #targets
  local t = targets[n + 1]
  return wrk.format("GET", t[2], { Host = t[1] })
end
""")
open(f"{work}/spread.lua", "w").write("\n".join(lines))
PY

declare -A port=([0]=18110 [1]=18111 [100]=18112 [10000]=18113)
for n in 0 1 100 10000; do
  mkdir -p "$work/$n"
  write_balancer_settings "$work/$n/Settings.toml" "${port[$n]}" true
  (cd "$work/$n" && RUST_LOG=warn exec "$BIN" --settings Settings.toml \
    --backends "../routes-$n.json" 2> log) & pids+=($!)
done
for p in 19001 19002 19003 18110 18111 18112 18113; do wait_port "$p"; done

results=$work/results.tsv
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for n in 1 100 10000; do
    for side in 0 "$n" "$n" 0; do
      out=$(wrk -t2 -c64 -d"${SECS}s" -s "$work/spread.lua" "http://127.0.0.1:${port[$side]}/")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
      printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$n" "$side" "$rps" "${non2xx:-0}" >> "$results"
    done
  done
  echo "round $round done" >&2
done

python3 - "$results" "$BIN" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)   # (round, n, side) -> req/s
failed = 0
for line in open(sys.argv[1]):
    rnd, n, side, rps, non2xx = line.split()
    runs[(rnd, n, side)].append(float(rps))
    failed += int(non2xx)
print(f"binary {sys.argv[2]}; non-2xx answers in all runs: {failed}")
for n in ("1", "100", "10000"):
    rounds = sorted({r for (r, m, _) in runs if m == n})
    ratios = [statistics.mean(runs[(r, n, n)]) / statistics.mean(runs[(r, n, "0")]) for r in rounds]
    with_routes = statistics.median(statistics.mean(runs[(r, n, n)]) for r in rounds)
    without = statistics.median(statistics.mean(runs[(r, n, "0")]) for r in rounds)
    print(f"{n:>5} routes: {with_routes:.0f} req/s against {without:.0f} without routes;"
          f" ratio per round " + " ".join(f"{x:.3f}" for x in ratios)
          + f"; median {statistics.median(ratios):.3f}")
PY
