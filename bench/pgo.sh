#!/usr/bin/env bash
# A profile-guided release build of the balancer: the fastest binary this repository makes.
#
#   bench/pgo.sh            → target/pgo/release/loadbalancer
#   bench/pgo.sh --bolt     → target/pgo/bolt/loadbalancer: then laid out again by BOLT
#
# Builds an instrumented release binary (rustc's -Cprofile-generate) into target/pgo-gen,
# trains it in front of three nginx `return 200` backends with rate limiting on — wrk at 64
# connections, at 1 connection, and with bench/xff.lua's 10 000 client addresses — stops it
# with SIGTERM so that it writes its profile, merges the profile with the llvm-profdata that
# matches rustc's LLVM, and builds the release binary again with -Cprofile-use into target/pgo.
# With --bolt, that binary (linked with its relocations kept) is instrumented by llvm-bolt,
# trained the same way, and rewritten with its hot code packed together and its cold blocks
# split off, into target/pgo/bolt/loadbalancer (cargo's own output is left as it built it).
# The code is the same as `cargo build --release`; only the compiler's layout and inlining
# choices follow the measured hot paths. Two full builds: several minutes.
# Installs wrk, nginx and Debian's llvm-N (and bolt-N with --bolt; N = rustc's LLVM major
# version) if missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/common.sh
need_tools wrk nginx
bolt=false
case ${1:-} in
  --bolt) bolt=true ;;
  "") ;;
  *) echo "usage: bench/pgo.sh [--bolt]" >&2; exit 2 ;;
esac

llvm_major=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
# Debian's llvm-N and bolt-N: the tools must read what rustc's LLVM writes.
need_llvm_tool() {
  command -v "$1-$llvm_major" >/dev/null && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2-$llvm_major" >/dev/null || {
    echo "no $2-$llvm_major to install: $1 must match rustc's LLVM" >&2
    exit 1
  }
}
need_llvm_tool llvm-profdata llvm
$bolt && need_llvm_tool llvm-bolt bolt
# v0 symbol names: the legacy names of deeply nested async code run past what BOLT's
# instrumentation writes out ("function name too large"), and both builds must name alike.
flags="-Csymbol-mangling-version=v0"

make_workspace
write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
mkdir -p "$work/lb"
write_balancer_settings "$work/lb/Settings.toml" 18190 true

# Runs the balancer binary $1 under the training load and stops it with SIGTERM, so that it
# writes its profile on the way out.
train() {
  (cd "$work/lb" && RUST_LOG=warn exec "$1" --settings Settings.toml \
    --backends ../config.json 2> log) &
  local lb_pid=$!
  # Not in $pids: it is stopped below, and must finish writing its profile first.
  for port in 19001 19002 19003 18190; do wait_port "$port"; done
  echo "training: 64 connections, 1 connection, 10 000 client addresses" >&2
  wrk -t2 -c64 -d10s http://127.0.0.1:18190/ > /dev/null
  wrk -t1 -c1 -d5s http://127.0.0.1:18190/ > /dev/null
  wrk -t2 -c64 -d5s -s bench/xff.lua http://127.0.0.1:18190/ > /dev/null
  kill -TERM "$lb_pid"
  wait "$lb_pid" || true
}

profiles="$PWD/target/pgo-profiles"
rm -rf "$profiles"
echo "building the instrumented binary (target/pgo-gen)" >&2
CARGO_TARGET_DIR=target/pgo-gen RUSTFLAGS="$flags -Cprofile-generate=$profiles" \
  cargo build --release --quiet
# Build scripts of the instrumented build wrote profiles too; only the balancer's run counts.
rm -rf "$profiles"
train "$PWD/target/pgo-gen/release/loadbalancer"
compgen -G "$profiles/*.profraw" > /dev/null || {
  echo "the instrumented balancer wrote no profile (see $work/lb/log)" >&2
  exit 1
}
"llvm-profdata-$llvm_major" merge -o target/pgo.profdata "$profiles"

echo "building the profile-guided binary (target/pgo)" >&2
flags="$flags -Cprofile-use=$PWD/target/pgo.profdata -Cllvm-args=-pgo-warn-missing-function=false"
# BOLT rewrites the linked binary and needs its relocations; they only make the file larger.
$bolt && flags="$flags -Clink-arg=-Wl,--emit-relocs"
CARGO_TARGET_DIR=target/pgo RUSTFLAGS="$flags" cargo build --release --quiet
out=$PWD/target/pgo/release/loadbalancer
if $bolt; then
  echo "instrumenting the binary with BOLT and training it (target/pgo/bolt)" >&2
  mkdir -p target/pgo/bolt
  fdata=$work/bolt.fdata
  "llvm-bolt-$llvm_major" "$out" -instrument -o "$work/instrumented" \
    --instrumentation-file="$fdata" --instrumentation-file-append-pid=false \
    > "$work/bolt.log" 2>&1 || { cat "$work/bolt.log" >&2; exit 1; }
  train "$work/instrumented"
  [ -s "$fdata" ] || { echo "the BOLT-instrumented balancer wrote no profile" >&2; exit 1; }
  out=$PWD/target/pgo/bolt/loadbalancer
  "llvm-bolt-$llvm_major" target/pgo/release/loadbalancer -o "$out" -data="$fdata" \
    -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold \
    -icf=1 -use-gnu-stack > "$work/bolt.log" 2>&1 || { cat "$work/bolt.log" >&2; exit 1; }
fi
echo "$out"
