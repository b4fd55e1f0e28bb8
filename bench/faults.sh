#!/usr/bin/env bash
# Faults and load against the release binary, printed as one Markdown table.
#
#   bench/faults.sh [SOAK_SECONDS]        (default 60)
#
# Scenarios (each with its own balancer process, rate limits set so high nothing is refused):
#   soak        wrk -c256 for SOAK_SECONDS through three simulated backends (the balancer's own
#               simulation), one of which is made to fail (mode "refuse": it closes its
#               connections and refuses new ones) for 3 s and recover for 3 s, over and over,
#               through /lb/api/simulation; the random schedule is held off (mean up 1 day)
#   baseline    wrk -c64 for 15 s in front of three nginx `return 200` backends
#   slowloris   the same, with 500 connections that keep sending half a request head (each one
#               reopened when the balancer closes it with 408)
#   sigterm     wrk -c256 in front of nginx; SIGTERM after 5 s; the exit code is reported
#   kill -9     wrk -c256 in front of nginx while clients are registered one after another;
#               SIGKILL after 5 s, restart on the same database, count the registered clients
#   slow        wrk -c64 for 15 s in front of two nginx backends and one 20 times slower (a
#               small Python server answering after 20 ms), once with the defaults and once
#               with max_connections = 4 and a queue (least loaded first is not needed: the
#               limit makes round-robin pass over the slow one while it is full); outlier
#               ejection is on in both and never acts (slow answers are not 5xx)
#   dns         wrk -c64 for 20 s through one `"discovery": "dns"` entry whose records a small
#               Python DNS server (UDP 127.0.0.1:19053) changes under load: nginx on port 19005
#               of 127.0.0.1 and .2, then .2 and .3, SERVFAIL, an empty answer, then .3 alone;
#               dns_refresh_secs = 1
# Columns: requests wrk completed, failures (non-2xx answers; for kill -9 the registered
# clients missing after the restart), p99, and RSS and open file descriptors of the balancer
# when the load starts and when it ends (for the soak: before the load, 5 s into it, 1 s
# before its end, and 20 s after it). wrk's socket errors are listed after the table: in the
# sigterm and kill -9 rows they are the connections refused or cut once the process stopped
# taking work, which is what those scenarios do.
# Installs wrk and nginx from Debian if missing. All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK=${1:-60}

source bench/common.sh
need_tools wrk nginx

cargo build --release --quiet
BIN=$PWD/target/release/loadbalancer
make_workspace

for port in 19001 19002 19003 19004 19005 19053 19101 19102 19103 18090 18091 18092 18093 18094; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken; stop whatever listens there first" >&2
    exit 1
  fi
done
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "-"; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# nginx backends for everything but the soak.
write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
for port in 19001 19002 19003; do wait_port "$port"; done

# Writes $work/$1/{Settings.toml,config.json}: balancer on port $2, simulation on if $3=sim,
# the slow pool if $3=slow; $4: more lines of [backends].
setup() {
  local dir=$work/$1 port=$2 mode=$3 more=${4:-}
  mkdir -p "$dir"
  if [ "$mode" = sim ]; then
    echo '{"backends": ["http://127.0.0.1:19101", "http://127.0.0.1:19102", "http://127.0.0.1:19103"]}' > "$dir/config.json"
  elif [ "$mode" = dns ]; then
    echo '{"backends": [{"url": "http://dns.test:19005", "discovery": "dns"}]}' > "$dir/config.json"
  elif [ "$mode" = slow ]; then
    echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19004"]}' > "$dir/config.json"
  else
    echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' > "$dir/config.json"
  fi
  cat > "$dir/Settings.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
[backends]
file = "config.json"
$more
[rate_limit]
default_capacity = 1000000000
default_rate_per_sec = 1000000000
[persistence]
path = "lb.sqlite3"
[health]
interval_ms = 500
eject_consecutive_5xx = 5
[simulation]
enabled = $([ "$mode" = sim ] && echo true || echo false)
mean_up_secs = 86400
modes = ["refuse"]
CONF
}
# Starts the balancer of $1; sets LB_PID.
start_lb() {
  (cd "$work/$1" && RUST_LOG=warn,loadbalancer::simulation=info exec "$BIN" --settings Settings.toml \
    2>> "$work/$1/log") & LB_PID=$!
  pids+=("$LB_PID")
  wait_port "$2"
  kill -0 "$LB_PID" 2>/dev/null || { cat "$work/$1/log" >&2; exit 1; }
}

table="$work/table"
errors="$work/errors"
: > "$table"; : > "$errors"
# Adds a row from wrk output $2 for scenario $1 with RSS/fds $3..$6 and failures override $7.
row() {
  local name=$1 out=$2 rss0=$3 rss1=$4 fd0=$5 fd1=$6 failures=${7:-}
  local requests p99 non2xx
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$failures" ] && failures=${non2xx:-0}
  printf '| %s | %s | %s | %s | %s → %s MB | %s → %s |\n' \
    "$name" "$requests" "$failures" "$p99" "$rss0" "$rss1" "$fd0" "$fd1" >> "$table"
  local sock
  sock=$(awk '/Socket errors/' <<<"$out" | sed 's/^ *//')
  [ -n "$sock" ] && echo "- $name: $sock" >> "$errors"
  echo "$name done: $requests requests, $failures failures, p99 $p99" >&2
}

# soak
setup soak 18090 sim
start_lb soak 18090
sleep 2
(
  while [ ! -e "$work/soak/stop" ]; do
    sleep 3
    curl -s -o /dev/null -X POST http://127.0.0.1:18090/lb/api/simulation/backend-1/fail
    sleep 3
    curl -s -o /dev/null -X POST http://127.0.0.1:18090/lb/api/simulation/backend-1/recover
  done
) & flipper=$!
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
wrk -t2 -c256 -d"${SOAK}s" --latency http://127.0.0.1:18090/ > "$work/soak.out" & wrk_pid=$!
# Under load: once the connections are up, and just before the end.
sleep 5
r0="$r0 → $(rss_mb "$LB_PID")"; f0="$f0 → $(fds "$LB_PID")"
sleep $((SOAK - 6))
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
wait "$wrk_pid"
out=$(cat "$work/soak.out")
touch "$work/soak/stop"; wait "$flipper" || true
flips=$(grep -c "starts failing" "$work/soak/log" || true)
# Idle client connections close after keep_alive_secs (5 s). Pooled backend connections the
# backend closed stay in CLOSE-WAIT until awc next needs a connection to that backend.
sleep 20
r1="$r1 → $(rss_mb "$LB_PID")"; f1="$f1 → $(fds "$LB_PID")"
row "soak ${SOAK}s, 256 conns, backend-1 failed $flips times" "$out" "$r0" "$r1" "$f0" "$f1"
kill -TERM "$LB_PID"; wait "$LB_PID" || true

# baseline and slowloris
setup steady 18091 nginx
start_lb steady 18091
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
out=$(wrk -t2 -c64 -d15s --latency http://127.0.0.1:18091/)
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
row "baseline 15s, 64 conns" "$out" "$r0" "$r1" "$f0" "$f1"
python3 - 18091 500 "$work/slowloris.stop" <<'PY' & pids+=($!)
import os, socket, sys, time
port, count, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def opened():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    s.setblocking(False)
    return s
conns = [opened() for _ in range(count)]
while not os.path.exists(stop):
    for i, s in enumerate(conns):
        try:
            s.send(b"a")
        except OSError:
            s.close()
            conns[i] = opened()
    time.sleep(1)
PY
sleep 2
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
out=$(wrk -t2 -c64 -d15s --latency http://127.0.0.1:18091/)
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
touch "$work/slowloris.stop"
row "slowloris 15s: 500 half heads + 64 conns" "$out" "$r0" "$r1" "$f0" "$f1"
kill -TERM "$LB_PID"; wait "$LB_PID" || true

# sigterm
setup sigterm 18092 nginx
start_lb sigterm 18092
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
wrk -t2 -c256 -d10s --latency http://127.0.0.1:18092/ > "$work/sigterm.out" & wrk_pid=$!
sleep 5
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
kill -TERM "$LB_PID"
code=0; wait "$LB_PID" || code=$?
wait "$wrk_pid" || true
row "SIGTERM after 5s of 256 conns (exit $code)" "$(cat "$work/sigterm.out")" "$r0" "$r1" "$f0" "$f1"

# kill -9
setup kill9 18093 nginx
start_lb kill9 18093
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
wrk -t2 -c256 -d10s --latency http://127.0.0.1:18093/ > "$work/kill9.out" & wrk_pid=$!
(
  i=0
  while :; do
    i=$((i + 1))
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
      -d "{\"client_id\": \"c$i\", \"capacity\": 10}" http://127.0.0.1:18093/clients) || break
    [ "$code" = 201 ] && echo "c$i" >> "$work/kill9/registered"
  done
) & reg_pid=$!
sleep 5
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
kill -9 "$LB_PID"; wait "$LB_PID" 2>/dev/null || true
wait "$reg_pid" 2>/dev/null || true
wait "$wrk_pid" || true
start_lb kill9 18093
registered=$(wc -l < "$work/kill9/registered")
listed=$(curl -s http://127.0.0.1:18093/clients | python3 -c 'import json,sys; print("\n".join(c["client_id"] for c in json.load(sys.stdin)))')
lost=$(comm -23 <(sort "$work/kill9/registered") <(sort <<<"$listed") | wc -l)
row "kill -9 after 5s of 256 conns; $registered clients registered, restart" \
  "$(cat "$work/kill9.out")" "$r0" "$r1" "$f0" "$f1" "$lost lost"
kill -TERM "$LB_PID"; wait "$LB_PID" || true

# slow: two nginx backends and one that answers after 20 ms (keep-alive, any request).
python3 - 19004 0.02 <<'PY' & pids+=($!)
import asyncio, sys
port, delay = int(sys.argv[1]), float(sys.argv[2])
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"GET / "):
                await asyncio.sleep(delay)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
wait_port 19004
for variant in plain limited; do
  more=""
  [ "$variant" = limited ] && more=$'max_connections = 4\nqueue_size = 512\nqueue_timeout_ms = 1000'
  setup "slow-$variant" 18094 slow "$more"
  start_lb "slow-$variant" 18094
  r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
  out=$(wrk -t2 -c64 -d15s --latency http://127.0.0.1:18094/work)
  r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
  label="one backend 20× slower, 64 conns, defaults"
  [ "$variant" = limited ] && label="one backend 20× slower, 64 conns, max_connections 4 + queue 512"
  row "$label" "$out" "$r0" "$r1" "$f0" "$f1"
  kill -TERM "$LB_PID"; wait "$LB_PID" || true
done

# dns: nginx on one port of three loopback addresses, a DNS server answering from a file.
write_nginx_conf "$work/nginx-dns" 1 '
  server { listen 127.0.0.1:19005; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.2:19005; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.3:19005; location / { return 200 "ok\n"; } }'
nginx -c "$work/nginx-dns/nginx.conf" & pids+=($!)
wait_port 19005
records=$work/dns-records
echo "127.0.0.1 127.0.0.2" > "$records"
python3 - 19053 "$records" <<'PY' & pids+=($!)
import socket, struct, sys
port, records = int(sys.argv[1]), sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", port))
while True:
    query, peer = sock.recvfrom(1500)
    ident, flags = struct.unpack(">HH", query[:4])
    end = 12
    while query[end]:
        end += query[end] + 1
    qtype = struct.unpack(">H", query[end + 1:end + 3])[0]
    question = query[12:end + 5]
    answer = open(records).read().split()
    rcode, addresses = (2, []) if answer == ["SERVFAIL"] else (0, [] if answer == ["EMPTY"] else answer)
    if qtype != 1:
        addresses = []
    head = struct.pack(">HHHHHH", ident, 0x8180 | (flags & 0x0100) | rcode, 1, len(addresses), 0, 0)
    body = b"".join(struct.pack(">HHHIH", 0xC00C, 1, 1, 0, 4) + socket.inet_aton(a) for a in addresses)
    sock.sendto(head + question + body, peer)
PY
setup dns 18095 dns $'dns_refresh_secs = 1\ndns_servers = ["127.0.0.1:19053"]'
start_lb dns 18095
sleep 2
r0=$(rss_mb "$LB_PID"); f0=$(fds "$LB_PID")
wrk -t2 -c64 -d20s --latency http://127.0.0.1:18095/ > "$work/dns.out" & wrk_pid=$!
for step in "127.0.0.2 127.0.0.3" SERVFAIL EMPTY "127.0.0.2 127.0.0.3" 127.0.0.3; do
  sleep 3
  echo "$step" > "$records"
done
r1=$(rss_mb "$LB_PID"); f1=$(fds "$LB_PID")
wait "$wrk_pid"
members=$(curl -s http://127.0.0.1:18095/lb/api/status | python3 -c 'import json,sys; print(" ".join(b["name"] for b in json.load(sys.stdin)["backends"]))')
row "DNS records changed 5 times under 64 conns (members at the end: $members)" \
  "$(cat "$work/dns.out")" "$r0" "$r1" "$f0" "$f1"
kill -TERM "$LB_PID"; wait "$LB_PID" || true

echo
echo "| scenario | requests | failures | p99 | RSS start → end | fds start → end |"
echo "|---|---|---|---|---|---|"
cat "$table"
if [ -s "$errors" ]; then
  echo
  echo "wrk socket errors:"
  cat "$errors"
fi
