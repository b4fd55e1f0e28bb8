#!/usr/bin/env bash
# Cluster mode against single-instance mode, and three instances on one Redis.
#
#   bench/cluster.sh [BINARY] [ROUNDS] [SECONDS]
#       (defaults: target/release/loadbalancer, 5 rounds of 5 s)
#
# 1. Throughput: one single-mode instance (S) and one cluster-mode instance (C, on Redis)
#    side by side in front of the same three nginx backends, every request from one hot
#    registered client with limits nobody reaches; each round runs wrk at 64 connections on
#    S, C, C, S. Prints C ÷ S per round and the median.
# 2. Redis calls per admitted request: three cluster instances, wrk on each at once for the
#    same hot client; the instances' lb_redis_calls before and after.
# 3. The bound: the same three under wrk for one client limited to capacity 500 and 200/s;
#    admitted (2xx) against capacity + rate * (T + lease).
# 4. Outage: the unlimited client on the three while Redis is killed and started again on
#    its port (empty); non-2xx answers and the slowest request.
# 5. Redis Cluster: an instance on a three-master Redis Cluster (K) against the one on a single
#    Redis (C), the hot client, wrk at 64 connections on C, K, K, C per round; K ÷ C.
# 6. Sentinel failover: two instances on a master, a replica and three sentinels, the hot
#    client on both while the master is SIGKILLed at 3 s of 12 s; requests, non-2xx, and the
#    seconds from the kill until both run on the promoted replica again.
# Installs wrk, nginx and redis-server (with redis-tools) from Debian if missing. Traffic stays
# on 127.0.0.1; Redis runs on ports 16390-16399 and 16490-16499 (never 6379 or 26379) in the
# scratch folder.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-target/release/loadbalancer}")
ROUNDS=${2:-5}
SECS=${3:-5}
REDIS_PORT=16390

source bench/common.sh
need_tools wrk nginx redis-server
make_workspace

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"

start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$work" --logfile "$work/redis.log" & redis_pid=$!
  disown "$redis_pid"   # part 4 kills it on purpose: no "Killed" line from the shell
  pids+=("$redis_pid")
  wait_port "$REDIS_PORT"
}
start_redis

# start_instance NAME PORT [CLUSTER_SECTION]: a balancer with its own folder; with the
# section's lines (TOML) in [cluster], in cluster mode.
start_instance() {
  mkdir -p "$work/$1"
  write_balancer_settings "$work/$1/Settings.toml" "$2" true
  if [ -n "${3:-}" ]; then
    printf '[cluster]\n%s\n' "$3" >> "$work/$1/Settings.toml"
  fi
  (cd "$work/$1" && RUST_LOG=warn exec "$BIN" --settings Settings.toml --backends ../config.json \
    2> log) & pids+=($!)
  wait_port "$2"
}

# register PORT ID CAPACITY RATE
register() {
  curl -sf -o /dev/null -X POST "http://127.0.0.1:$1/clients" -H 'Content-Type: application/json' \
    -d "{\"client_id\": \"$2\", \"capacity\": $3, \"rate_per_sec\": $4}"
}

# Sum of lb_redis_calls over the cluster instances' ports.
redis_calls() {
  local total=0 port n
  for port in "$@"; do
    n=$(curl -sf "http://127.0.0.1:$port/lb/metrics" | awk '/^lb_redis_calls_total/ {print $2}')
    total=$(( total + ${n:-0} ))
  done
  echo "$total"
}

# wrk_all SECONDS KEY PORT...: wrk at 21 connections on each port at once; prints
# "requests non2xx max_latency_ms" summed (latency: the largest).
wrk_all() {
  local secs=$1 key=$2 port i=0 running=()
  shift 2
  for port in "$@"; do
    wrk -t1 -c21 -d"${secs}s" -H "X-API-Key: $key" "http://127.0.0.1:$port/" > "$work/wrk.$i" &
    running+=($!)
    i=$((i + 1))
  done
  wait "${running[@]}"
  python3 - "$work"/wrk.* <<'PY'
import re, sys
total = non2xx = 0
worst = 0.0
for path in sys.argv[1:]:
    text = open(path).read()
    total += int(re.search(r"(\d+) requests in", text).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    non2xx += int(m.group(1)) if m else 0
    m = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    v = m.group(1)
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            worst = max(worst, float(v[:-len(unit)]) * f)
            break
print(total, non2xx, f"{worst:.1f}")
PY
  rm -f "$work"/wrk.*
}

# side_by_side TITLE A A_PORT B B_PORT: ROUNDS rounds of wrk at 64 connections for the hot
# client on A, B, B, A; prints B ÷ A per round, the median, and each side's median req/s.
side_by_side() {
  local title=$1 a=$2 a_port=$3 b=$4 b_port=$5 results=$work/side_by_side.tsv round side port rps
  : > "$results"
  for round in $(seq 1 "$ROUNDS"); do
    for side in "$a" "$b" "$b" "$a"; do
      port=$([ "$side" = "$a" ] && echo "$a_port" || echo "$b_port")
      rps=$(wrk -t2 -c64 -d"${SECS}s" -H 'X-API-Key: hot' "http://127.0.0.1:$port/" \
        | awk '/^Requests\/sec/ {print $2}')
      printf '%s\t%s\t%s\n' "$round" "$side" "$rps" >> "$results"
    done
    echo "round $round done" >&2
  done
  python3 - "$results" "$title" "$a" "$b" <<'PY'
import statistics, sys
from collections import defaultdict
path, title, a, b = sys.argv[1:]
runs = defaultdict(lambda: defaultdict(list))
for line in open(path):
    rnd, side, rps = line.split()
    runs[rnd][side].append(float(rps))
ratios = [statistics.mean(r[b]) / statistics.mean(r[a]) for r in runs.values()]
print(title)
print(f"   {b} ÷ {a} per round: " + " ".join(f"{r:.3f}" for r in ratios))
print(f"   median {b} ÷ {a}: {statistics.median(ratios):.3f}")
for side in (a, b):
    print(f"   {side}: {statistics.median(statistics.mean(r[side]) for r in runs.values()):.0f} req/s")
PY
}

echo "== 1. throughput, one instance each: single (S) vs cluster (C), 64 connections" >&2
ON_REDIS="redis_url = \"redis://127.0.0.1:$REDIS_PORT/0\""
start_instance single 18090
start_instance clustered 18091 "$ON_REDIS"
register 18090 hot 1000000000 1000000000
register 18091 hot 1000000000 1000000000
side_by_side "1. throughput at 64 connections, one hot client" S 18090 C 18091

echo "== 2. three cluster instances, one unlimited hot client" >&2
start_instance c2 18092 "$ON_REDIS"
start_instance c3 18093 "$ON_REDIS"
ports=(18091 18092 18093)
sleep 1   # the registry change log reaches the new instances within a second
before=$(redis_calls "${ports[@]}")
read -r total non2xx worst <<<"$(wrk_all "$SECS" hot "${ports[@]}")"
after=$(redis_calls "${ports[@]}")
python3 - "$total" "$non2xx" "$before" "$after" <<'PY'
import sys
total, non2xx, before, after = map(int, sys.argv[1:])
admitted = total - non2xx
print("2. Redis calls per admitted request (hot client, three instances)")
print(f"   {admitted} admitted, {after - before} Redis calls: {(after - before) / max(admitted, 1):.4f} per admitted request")
PY

echo "== 3. the bound: capacity 500, 200/s, three instances" >&2
register 18091 limited 500 200
sleep 1
before=$(redis_calls "${ports[@]}")
started=$(date +%s.%N)
read -r total non2xx worst <<<"$(wrk_all 10 limited "${ports[@]}")"
ended=$(date +%s.%N)
after=$(redis_calls "${ports[@]}")
python3 - "$total" "$non2xx" "$started" "$ended" "$before" "$after" <<'PY'
import sys
total, non2xx = int(sys.argv[1]), int(sys.argv[2])
t = float(sys.argv[4]) - float(sys.argv[3])
calls = int(sys.argv[6]) - int(sys.argv[5])
admitted = total - non2xx
bound = 500 + 200 * (t + 0.1)
ideal = 500 + 200 * t
print("3. one client limited to capacity 500, 200/s, through three instances")
print(f"   {total} requests in {t:.2f} s: {admitted} admitted; bound {bound:.0f}, capacity + rate*T = {ideal:.0f}")
print(f"   admitted ÷ bound: {admitted / bound:.3f}; {calls} Redis calls: {calls / max(admitted, 1):.3f} per admitted, {calls / max(total, 1):.5f} per request")
PY

echo "== 4. Redis killed and restarted under load" >&2
( sleep 3; kill -KILL "$redis_pid" 2>/dev/null; sleep 3
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$work" --logfile "$work/redis2.log" > /dev/null 2>&1 & echo $! > "$work/redis2.pid" ) &
read -r total non2xx worst <<<"$(wrk_all 10 hot "${ports[@]}")"
pids+=("$(cat "$work/redis2.pid")")
up=$(curl -sf http://127.0.0.1:18091/lb/api/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster"]["redis"])')
local_decided=$(curl -sf http://127.0.0.1:18091/lb/metrics | awk '/^lb_admissions_decided_locally_total/ {print $2}')
echo "4. Redis down from 3 s to 6 s of 10 s of load on three instances"
echo "   $total requests, $non2xx non-2xx, slowest ${worst} ms; Redis afterwards: $up;" \
  "decided locally on one instance: $local_decided"

# A redis-server of the bench on port $1 in folder $2, with more arguments after.
redis_node() {
  local port=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --protected-mode no \
    --dir "$dir" --logfile "$dir/redis.log" "$@" & pids+=($!)
  wait_port "$port"
}

echo "== 5. Redis Cluster (K) against a single Redis (C)" >&2
nodes=()
for i in 1 2 3; do
  redis_node $((16390 + i)) "$work/k$i" --cluster-enabled yes --cluster-port $((16490 + i)) \
    --cluster-config-file "$work/k$i/nodes.conf" --cluster-node-timeout 2000
  nodes+=("127.0.0.1:$((16390 + i))")
done
redis-cli --cluster create "${nodes[@]}" --cluster-yes > "$work/cluster-create.log"
until redis-cli -p 16391 cluster info | grep -q cluster_state:ok; do sleep 0.1; done
start_instance on_cluster 18094 "redis_cluster_nodes = [\"${nodes[0]}\", \"${nodes[1]}\", \"${nodes[2]}\"]"
until curl -sf http://127.0.0.1:18094/lb/api/status | grep -q '"redis":"up"'; do sleep 0.1; done
register 18094 hot 1000000000 1000000000 || true   # 409: the registry is shared already
side_by_side "5. throughput at 64 connections, one hot client: Redis Cluster (K) ÷ single Redis (C)" \
  C 18091 K 18094

echo "== 6. Sentinel failover under load" >&2
redis_node 16395 "$work/master"
master_pid=${pids[-1]}
disown "$master_pid"   # killed on purpose: no "Killed" line from the shell
redis_node 16396 "$work/replica" --replicaof 127.0.0.1 16395
sentinels=()
for i in 1 2 3; do
  mkdir -p "$work/s$i"
  printf 'sentinel monitor mymaster 127.0.0.1 16395 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n' \
    > "$work/s$i/sentinel.conf"
  redis-server "$work/s$i/sentinel.conf" --sentinel --bind 127.0.0.1 --port $((16496 + i)) \
    --protected-mode no --dir "$work/s$i" --logfile "$work/s$i/sentinel.log" & pids+=($!)
  wait_port $((16496 + i))
  sentinels+=("\"127.0.0.1:$((16496 + i))\"")
done
# Wait until the sentinels know each other and the replica (a failover needs their agreement).
until [ "$(redis-cli -p 16497 sentinel master mymaster | awk 'p {print; exit} /^num-other-sentinels$/ {p=1}')" = 2 ] \
  && [ "$(redis-cli -p 16497 sentinel master mymaster | awk 'p {print; exit} /^num-slaves$/ {p=1}')" = 1 ]; do
  sleep 0.2
done
behind="redis_sentinels = [$(IFS=,; echo "${sentinels[*]}")]"
start_instance sentinel1 18095 "$behind"
start_instance sentinel2 18096 "$behind"
for port in 18095 18096; do
  until curl -sf "http://127.0.0.1:$port/lb/api/status" | grep -q '"redis":"up"'; do sleep 0.1; done
done
register 18095 hot 1000000000 1000000000
sleep 1
( sleep 3; kill -KILL "$master_pid"; killed=$(date +%s.%N)
  for port in 18095 18096; do
    until curl -sf "http://127.0.0.1:$port/lb/api/status" \
      | grep -q '"redis":"up","topology":"sentinel","server":"127.0.0.1:16396"'; do sleep 0.05; done
  done
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" \
    "$killed" "$(date +%s.%N)" > "$work/failover.secs" ) &
watcher=$!
read -r total non2xx worst <<<"$(wrk_all 12 hot 18095 18096)"
wait "$watcher" || true
echo "6. Sentinel: the master SIGKILLed at 3 s of 12 s of load on two instances"
echo "   $total requests, $non2xx non-2xx, slowest ${worst} ms;" \
  "both on the promoted replica $(cat "$work/failover.secs" 2>/dev/null || echo '?') s after the kill"
