#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: the same for the same binary
# and inputs whatever else the machine does, where requests/s at one connection moves ±10% from
# run to run (and from build to build, with code layout).
#
#   bench/instructions.sh BINARY... [-n REQUESTS]      (default 2000)
#   INSTR_ENV: extra VAR=value words for the balancer's environment (every binary), e.g.
#       INSTR_ENV="LB__TRACING__OTLP_ENDPOINT=http://127.0.0.1:19400/v1/traces" to count
#       tracing's cost: an OTLP sink listens there (bench/common.sh, start_otlp_sink), and the
#       exporting thread's instructions count with the rest.
#
# For each binary: the balancer (one worker, rate limiting on with limits nobody reaches, probes
# out of the way) under callgrind in front of three nginx `return 200` backends, sent 200 and
# then 200 + REQUESTS requests one after another on one kept-alive connection; the difference
# of the two runs' totals divided by REQUESTS is the cost of one request (start-up and shutdown
# cancel out). Installs nginx and valgrind from Debian if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=2000
binaries=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) REQUESTS=$2; shift 2 ;;
    *) binaries+=("$(realpath "$1")"); shift ;;
  esac
done
[ ${#binaries[@]} -gt 0 ] || { echo "usage: bench/instructions.sh BINARY... [-n REQUESTS]" >&2; exit 2; }

source bench/common.sh
need_tools nginx valgrind python3
make_workspace
write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
for p in 19001 19002 19003; do wait_port "$p"; done
start_otlp_sink 19400
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
cat > "$work/client.py" <<'PY'
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    connection.request("GET", "/x")
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
PY

# Total instructions of one run of binary $1 serving $2 requests.
count() {
  local run=$work/run
  rm -rf "$run" && mkdir -p "$run"
  write_balancer_settings "$run/Settings.toml" 18500 true
  sed -i 's/^\[server\]$/[server]\nworkers = 1/' "$run/Settings.toml"
  printf '[health]\ninterval_ms = 3600000\n' >> "$run/Settings.toml"
  # shellcheck disable=SC2086 # the extra words are meant to split
  (cd "$run" && exec env RUST_LOG=error ${INSTR_ENV:-} valgrind --tool=callgrind --callgrind-out-file=cg.out \
    "$1" --settings Settings.toml --backends ../config.json 2> log) &
  local lb=$!
  for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/18500) 2>/dev/null && break; sleep 0.2; done
  python3 "$work/client.py" 18500 "$2"
  kill -INT "$lb"
  wait "$lb" || true
  awk '/^summary:/ {print $2}' "$run/cg.out"
}

for binary in "${binaries[@]}"; do
  base=$(count "$binary" 200)
  more=$(count "$binary" $((200 + REQUESTS)))
  echo "$binary: $(( (more - base) / REQUESTS )) instructions per request ($REQUESTS requests)"
done
