#!/usr/bin/env bash
# Two builds of the balancer head to head, for deciding whether a change pays for itself.
#
#   bench/ab.sh BINARY_A BINARY_B [ROUNDS] [SECONDS] [LIMITER]
#       (defaults: 7 rounds of 6 s; LIMITER on — "off" runs both with rate limiting off)
#   AB_ENV_A / AB_ENV_B: extra VAR=value words for one side's environment, e.g. to compare
#       the access log's forms: AB_ENV_A="RUST_LOG=info" AB_ENV_B="LB__LOG__ACCESS=json
#       LB__LOG__ACCESS_PATH=access.log" (both sides run RUST_LOG=warn unless told). An OTLP
#       sink listens on 127.0.0.1:19400 for tracing's runs:
#       AB_ENV_B="LB__TRACING__OTLP_ENDPOINT=http://127.0.0.1:19400/v1/traces".
#
# Both run at once in front of the same three nginx `return 200` backends, each with its own
# settings (limits nobody reaches when on); every round measures A then B then B then A
# under wrk at 64 connections and then at 1 connection, so that neither build always goes
# first while the machine drifts. Prints per-round ratios B ÷ A and their median, and the
# median requests/s and p50 of each. On a shared machine only the ratio means anything.
# Also the CPU time each build spent per request during its own runs (user + kernel, from
# /proc): steadier than requests/s here, and on two shared cores the two go together.
# Installs wrk and nginx from Debian if they are missing. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# Absolute: each build runs from its own scratch folder.
A=$(realpath "${1:?binary A}")
B=$(realpath "${2:?binary B}")
ROUNDS=${3:-7}
SECS=${4:-6}
LIMITER=${5:-on}

source bench/common.sh
need_tools wrk nginx
make_workspace

write_nginx_backends "$work/nginx"
nginx -c "$work/nginx/nginx.conf" & pids+=($!)
start_otlp_sink 19400
echo '{"backends": ["http://127.0.0.1:19001", "http://127.0.0.1:19002", "http://127.0.0.1:19003"]}' \
  > "$work/config.json"
enabled=$([ "$LIMITER" = off ] && echo false || echo true)
declare -A port=([a]=18096 [b]=18097)
declare -A bin=([a]=$A [b]=$B)
declare -A extra=([a]=${AB_ENV_A:-} [b]=${AB_ENV_B:-})
declare -A pid
for side in a b; do
  mkdir -p "$work/$side"
  write_balancer_settings "$work/$side/Settings.toml" "${port[$side]}" "$enabled"
  # shellcheck disable=SC2086 # the extra words are meant to split
  (cd "$work/$side" && exec env RUST_LOG=warn ${extra[$side]} "${bin[$side]}" \
    --settings Settings.toml --backends ../config.json 2> log) & pids+=($!)
  pid[$side]=$!
done
for p in 19001 19002 19003 18096 18097; do wait_port "$p"; done

results=$work/results.tsv
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for conns in 64 1; do
    threads=$(( conns > 1 ? 2 : 1 ))
    for side in a b b a; do
      read -r user0 system0 <<<"$(cpu_ticks "${pid[$side]}")"
      out=$(wrk -t"$threads" -c"$conns" -d"${SECS}s" --latency "http://127.0.0.1:${port[$side]}/")
      read -r user1 system1 <<<"$(cpu_ticks "${pid[$side]}")"
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1=="50%" {print $2}' <<<"$out")
      requests=$(awk '/requests in/ {print $1}' <<<"$out")
      ticks=$((user1 - user0 + system1 - system0))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$conns" "$side" "$rps" "$p50" \
        "$requests" "$ticks" >> "$results"
    done
    echo "round $round c=$conns done" >&2
  done
done

python3 - "$results" "$A" "$B" "$LIMITER" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
from collections import defaultdict

def ms(text):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)

hz = int(sys.argv[5])
rps = defaultdict(list)   # (conns, side) -> per-round mean of its two runs
p50 = defaultdict(list)
cpu = defaultdict(list)   # (conns, side) -> per-round µs of CPU per request over its two runs
per_round = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    rnd, conns, side, r, p, requests, ticks = line.rstrip("\n").split("\t")
    per_round[(conns, rnd)][side].append((float(r), ms(p), int(requests), int(ticks)))
for (conns, rnd), sides in sorted(per_round.items()):
    for side, runs in sides.items():
        rps[(conns, side)].append(statistics.mean(run[0] for run in runs))
        p50[(conns, side)].append(statistics.mean(run[1] for run in runs))
        requests = sum(run[2] for run in runs)
        cpu[(conns, side)].append(sum(run[3] for run in runs) / hz / max(requests, 1) * 1e6)
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\nrate limiting {sys.argv[4]}")
for conns in ("64", "1"):
    ratios = [b / a for a, b in zip(rps[(conns, "a")], rps[(conns, "b")])]
    print(f"\n{conns} connection(s), {len(ratios)} rounds")
    print("  B ÷ A per round: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"  median B ÷ A: {statistics.median(ratios):.3f}")
    for side in ("a", "b"):
        print(f"  {side.upper()}: {statistics.median(rps[(conns, side)]):.0f} req/s,"
              f" p50 {statistics.median(p50[(conns, side)]):.3f} ms,"
              f" CPU {statistics.median(cpu[(conns, side)]):.2f} µs per request")
    cpu_ratios = [b / a for a, b in zip(cpu[(conns, "a")], cpu[(conns, "b")])]
    print(f"  CPU per request B ÷ A, median of rounds: {statistics.median(cpu_ratios):.3f}"
          " (below 1: B does the same work with less)")
PY
