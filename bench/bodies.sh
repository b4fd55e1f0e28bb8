#!/usr/bin/env bash
# 1 GiB download and upload through this balancer and through nginx as a proxy, same machine,
# interleaved rounds; prints the median throughput of each and the balancer's RSS before and
# after.
#
#   bench/bodies.sh [ROUNDS]      (default 3)
#   LB_BIN=target/pgo/bolt/loadbalancer bench/bodies.sh ...   (another build, e.g. bench/pgo.sh's)
#
# The backend is nginx serving a 1 GiB file (sendfile on) and storing `PUT /up` (WebDAV) in a
# folder on /dev/shm, so it answers only when the whole body has arrived. (A `return 200`
# answers at once: nginx the proxy then stops sending the body on and reads the rest from the
# client into a 4 KiB buffer it throws away, while this balancer forwards it all — the two
# were not doing the same work.) nginx the proxy has upstream keepalive, no size limit and
# `proxy_request_buffering off` (it streams uploads as the balancer does). curl is the client.
# Installs nginx and curl from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
source bench/common.sh
need_tools nginx curl

balancer_binary
make_workspace
# Memory, not disk, under the uploads: the disk's writeback would be in the figures.
stored=$(mktemp -d -p /dev/shm lb-bodies.XXXXXX)
trap 'rm -rf "$stored"; cleanup_workspace' EXIT

chmod 755 "$work"   # nginx workers run as nobody and serve files from it
chmod 777 "$stored"
head -c 1073741824 /dev/zero > "$work/big.bin"
echo ok > "$work/index.html"
cat > "$work/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/backend.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_max_body_size 0;
  client_body_temp_path $stored/incoming;
  server {
    listen 127.0.0.1:19201;
    root $work;
    location /up { root $stored; dav_methods PUT; }
  }
}
CONF
cat > "$work/proxy.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/proxy.pid;
error_log $work/proxy.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_max_body_size 0;
  proxy_request_buffering off;
  upstream pool { server 127.0.0.1:19201; keepalive 16; }
  server {
    listen 127.0.0.1:19202;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
echo '{"backends": ["http://127.0.0.1:19201"]}' > "$work/config.json"
write_balancer_settings "$work/Settings.toml" 18201 true

nginx -c "$work/backend.conf" & pids+=($!)
nginx -c "$work/proxy.conf" & pids+=($!)
RUST_LOG=warn "$lb_bin" --settings "$work/Settings.toml" 2> "$work/lb.log" & lb=$!
pids+=("$lb")
for port in 19201 19202 18201; do wait_port "$port"; done
rss() { awk '/^VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$lb/status"; }
rss_start=$(rss)

results="$work/results"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for target in nginx:19202 loadbalancer:18201; do
    name=${target%%:*} port=${target##*:}
    down=$(curl -sf -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$port/big.bin")
    up=$(curl -sf -o /dev/null -w '%{speed_upload}' -T "$work/big.bin" "http://127.0.0.1:$port/up")
    echo "$name $down $up" >> "$results"
    echo "round $round $name: download $down B/s, upload $up B/s" >&2
  done
done
python3 - "$results" "$rss_start" "$(rss)" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, down, up = line.split()
    rows.setdefault(name, []).append((float(down), float(up)))
med = {n: [statistics.median(r[i] for r in runs) for i in (0, 1)] for n, runs in rows.items()}
for i, what in enumerate(("download", "upload")):
    lb, ng = med["loadbalancer"][i], med["nginx"][i]
    print(f"1 GiB {what}: loadbalancer {lb / 1e6:.0f} MB/s, nginx {ng / 1e6:.0f} MB/s, ratio {lb / ng:.2f}")
print(f"loadbalancer RSS: {sys.argv[2]} at start, {sys.argv[3]} after")
PY
