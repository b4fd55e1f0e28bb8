# Shared by the bench scripts (sourced, not run).

# Installs the named tools from Debian if any is missing; puts /usr/sbin on PATH for nginx.
need_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  export PATH="$PATH:/usr/sbin"
}

# Sets $lb_bin, the balancer binary to measure (an absolute path): $LB_BIN when it is set — another
# build, e.g. bench/pgo.sh's — else target/release/loadbalancer, built first.
balancer_binary() {
  if [ -n "${LB_BIN:-}" ]; then
    lb_bin=$(realpath "$LB_BIN")
  else
    cargo build --release --quiet
    lb_bin=$(realpath target/release/loadbalancer)
  fi
}

# Waits up to 10 s for something to listen on 127.0.0.1:$1, else exits.
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

# Writes $1/server.crt and $1/server.key: a self-signed EC P-256 certificate for localhost and
# 127.0.0.1, valid two days.
write_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$1/server.key" -out "$1/server.crt" 2>/dev/null
}

# Writes $1/ca.crt (a CA of the run's own) and $1/server.crt and $1/server.key: an EC P-256
# certificate for localhost and 127.0.0.1 it signed, valid two days — what a client that
# verifies (rustls does not take a self-signed CA certificate as a server's) trusts through
# ca.crt.
write_signed_certificate() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$1/ca.key" -out "$1/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$1/server.key" -out "$1/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' \
    > "$1/server.ext"
  openssl x509 -req -in "$1/server.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial \
    -days 2 -extfile "$1/server.ext" -out "$1/server.crt" 2>/dev/null
}

# Writes $1/nginx.conf: $2 worker processes, no daemon, no access log, kept-alive
# connections never retired, and $3 inside the `http` block.
write_nginx_conf() {
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$3
}
CONF
}

# Writes $1/nginx.conf for three nginx backends that `return 200 "ok\n"` on
# 127.0.0.1:19001-19003.
write_nginx_backends() {
  write_nginx_conf "$1" 1 '
  server { listen 127.0.0.1:19001; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:19002; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:19003; location / { return 200 "ok\n"; } }'
}

# Writes $1/nginx.conf for nginx as a proxy in front of the three backends of
# write_nginx_backends (upstream keep-alive); $2 is the server block's listen directive and any
# more lines of it (e.g. the TLS certificate).
write_nginx_proxy() {
  write_nginx_conf "$1" auto "
  upstream pool {
    server 127.0.0.1:19001; server 127.0.0.1:19002; server 127.0.0.1:19003;
    keepalive 128;
  }
  server {
    $2
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
}

# Writes $1, an HAProxy configuration (two threads, connection reuse, no log) listening on
# 127.0.0.1:$2 in front of the three backends of write_nginx_backends, round-robin.
write_haproxy_conf() {
  cat > "$1" <<CONF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend lb
  bind 127.0.0.1:$2
  default_backend pool
backend pool
  balance roundrobin
  server b1 127.0.0.1:19001
  server b2 127.0.0.1:19002
  server b3 127.0.0.1:19003
CONF
}

# Clock ticks (getconf CLK_TCK per second) of user and kernel time of process $1, all its
# threads, and its children (nginx's workers), printed as "user system".
cpu_ticks() {
  local pid total_user=0 total_system=0 fields
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    # Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    read -r -a fields <<<"$(sed 's/^.*) //' "/proc/$pid/stat")"
    total_user=$((total_user + fields[11]))
    total_system=$((total_system + fields[12]))
  done
  echo "$total_user $total_system"
}

# Makes the scratch folder $work and the list $pids of background processes; on exit every
# one of them gets TERM (not KILL: a killed nginx master leaves its workers holding the ports)
# and the folder is removed.
make_workspace() {
  work=$(mktemp -d)
  pids=()
  trap cleanup_workspace EXIT
}
cleanup_workspace() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# Writes the balancer settings file $1: listening on 127.0.0.1:$2, rate limiting on or off
# ($3 = true/false) with limits so high that nothing is refused, 127.0.0.1 a trusted proxy,
# the database in the same folder, no simulation.
write_balancer_settings() {
  cat > "$1" <<CONF
[server]
listen = "127.0.0.1:$2"
[rate_limit]
enabled = $3
trusted_proxies = ["127.0.0.1/32"]
default_capacity = 1000000000
default_rate_per_sec = 1000000000
[persistence]
path = "lb.sqlite3"
[simulation]
enabled = false
CONF
}

# Starts an OTLP/HTTP sink on 127.0.0.1:$1 (a collector that takes every POST, answers an empty
# 200 and keeps nothing), so that tracing's export runs as it would against a real collector:
# point a balancer at it with LB__TRACING__OTLP_ENDPOINT=http://127.0.0.1:$1/v1/traces.
start_otlp_sink() {
  python3 - "$1" <<'PY' & pids+=($!)
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
  wait_port "$1"
}
