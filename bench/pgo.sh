#!/usr/bin/env bash
# A profile-guided release build of the balancer: the fastest binary this repository makes.
#
#   bench/pgo.sh            → target/pgo/release/loadbalancer
#
# Builds an instrumented release binary (rustc's -Cprofile-generate) into target/pgo-gen,
# trains it in front of three nginx `return 200` backends with rate limiting on — wrk at 64
# connections, at 1 connection, and with bench/xff.lua's 10 000 client addresses — stops it
# with SIGTERM so that it writes its profile, merges the profile with the llvm-profdata that
# matches rustc's LLVM, and builds the release binary again with -Cprofile-use into target/pgo.
# The code is the same as `cargo build --release`; only the compiler's layout and inlining
# choices follow the measured hot paths. Two full builds: several minutes.
# Installs wrk, nginx and Debian's llvm-N (N = rustc's LLVM major version) if missing.
# Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/common.sh
need_tools wrk nginx

llvm_major=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
profdata=llvm-profdata-$llvm_major
if ! command -v "$profdata" >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$llvm_major" >/dev/null || {
    echo "no llvm-$llvm_major to install: its llvm-profdata must match rustc's LLVM" >&2
    exit 1
  }
fi

make_workspace
profiles="$PWD/target/pgo-profiles"
rm -rf "$profiles"
echo "building the instrumented binary (target/pgo-gen)" >&2
CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="-Cprofile-generate=$profiles" \
  cargo build --release --quiet
# Build scripts of the instrumented build wrote profiles too; only the balancer's run counts.
rm -rf "$profiles"

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
mkdir -p "$work/lb"
write_balancer_settings "$work/lb/Settings.toml" 18190 true
instrumented=$PWD/target/pgo-gen/release/loadbalancer
(cd "$work/lb" && RUST_LOG=warn exec "$instrumented" --settings Settings.toml \
  --backends ../config.json 2> log) &
lb_pid=$!
# Not in $pids: it is stopped below, and must finish writing its profile first.
for port in 19001 19002 19003 18190; do wait_port "$port"; done

echo "training: 64 connections, 1 connection, 10 000 client addresses" >&2
wrk -t2 -c64 -d10s http://127.0.0.1:18190/ > /dev/null
wrk -t1 -c1 -d5s http://127.0.0.1:18190/ > /dev/null
wrk -t2 -c64 -d5s -s bench/xff.lua http://127.0.0.1:18190/ > /dev/null
kill -TERM "$lb_pid"
wait "$lb_pid" || true
compgen -G "$profiles/*.profraw" > /dev/null || {
  echo "the instrumented balancer wrote no profile (see $work/lb/log)" >&2
  exit 1
}
"$profdata" merge -o target/pgo.profdata "$profiles"

echo "building the profile-guided binary (target/pgo)" >&2
CARGO_TARGET_DIR=target/pgo \
  RUSTFLAGS="-Cprofile-use=$PWD/target/pgo.profdata -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --quiet
echo "$PWD/target/pgo/release/loadbalancer"
