#!/usr/bin/env bash
# bench/all.sh: every benchmark of bench/ in one command, one table, written to bench/RESULTS.md.
# Run by hand, as root; not a CI job, not a ctest test.
#
# How it works: it runs the existing scripts with settings of its own and reads their results
# (run.sh's TSV=FILE lines, decap.sh's summary table, capd_micro's CSV); it measures nothing
# itself. Each script makes and removes its own namespaces, so all.sh only has to stop the one
# that is running when it is stopped.
#   1. grid:    bench/run.sh once per rate in RATES (one capd each): tcpdump alone and capd+capctl
#               alone, on SIZES frames; packets = rate x CELL_S (MAX_PACKETS at the full rate).
#               capd's VmHWM after the full-rate run is its peak RSS while streaming.
#   2. clients: bench/run.sh MODES=clients: 1, 2, 4 capctl streams from one capd, CLIENTS_SIZE
#               frames at CLIENTS_RATE; then the lone-packet latency into a FIFO reader.
#   3. decap:   bench/decap.sh with fewer packets and rounds than its defaults.
#   4. micro:   BUILD_DIR/bench/micro/capd_micro (Google Benchmark), when it was built
#               (-DCAPD_BUILD_BENCHMARKS=ON).
#   5. idle:    bench/idle.sh: CPU and wake-ups per second of capd with no client, of a stream
#               on a quiet link, and of tcpdump -w on the same quiet link.
#   6. ssh:     bench/ssh.sh: ssh host 'tcpdump -U -w -' into tshark against capctl stream
#               --agent ssh://... into tshark, through a real sshd: own SSH packets in an idle
#               capture, burst completeness, whole-pipeline CPU per packet (its own section).
#   7. tunnel:  bench/tunnel.sh: the same workflows (and ssh -C, and capctl with --compress when
#               it has the flag) through a link shaped to TUNNEL_RATE while the capture
#               interface carries more: packets delivered per second, completeness, CPU per
#               delivered packet (its own section).
# CPU figures are the processes' exact on-CPU time (schedstat), start-up excluded; the window
# includes 0.5 s before each burst and SETTLE_S after it, so capd's idle cost (its 10 ms ring
# timeout) is in them too.
#
# Usage: sudo bench/all.sh BUILD_DIR   (BUILD_DIR holds agent/capd and client/capctl)
# Settings (environment), defaults for a run of about 9 minutes on 2 CPUs:
#   RATES="50000pps 100000pps 200000pps max"  trafgen --rate per grid column; max: as fast as it goes
#   SIZES="64 512 1500" CELL_S=5 MAX_PACKETS=1000000   frame sizes; seconds of traffic per cell
#   CLIENTS="1 2 4" CLIENTS_SIZE=64 CLIENTS_RATE=200000pps   the fan-out run
#   LAT_PACKETS=200                    lone packets for the latency run (20 ms apart)
#   DECAP_PACKETS=1000000 DECAP_LARGE_PACKETS=200000 DECAP_ROUNDS=3   bench/decap.sh
#   MICRO_MIN_TIME=0.5                 --benchmark_min_time (seconds) for capd_micro
#   IDLE_S=10 IDLE_ROUNDS=3            bench/idle.sh: seconds per measurement, measurements per case
#   SSH_IDLE_S=3 SSH_PACKETS=300000 SSH_ROUNDS=5 SSH_RATE=   bench/ssh.sh (IDLE_S, PACKETS,
#                                      ROUNDS, RATE there; its goals are its own)
#   TUNNEL_RATE=20mbit TUNNEL_TRAFFIC_RATE=60mbit TUNNEL_DURATION=20 TUNNEL_ROUNDS=1
#   TUNNEL_PAYLOADS="random text"      bench/tunnel.sh (RATE, TRAFFIC_RATE, DURATION, ROUNDS,
#                                      PAYLOAD there), once per payload
#   STEPS="grid clients decap micro idle ssh tunnel"   which parts to run
#   SETTLE_S=1.5                       run.sh/decap.sh: a file unchanged this long is finished
#   GOAL_RSS_MIB=64 GOAL_P99_MS=5 GOAL_DECAP_RATIO=1.10 GOAL_CPU_RATIO=   (issue 8; an empty
#                                      GOAL_CPU_RATIO checks completeness only)
#   RESULTS=bench/RESULTS.md KEEP_LOGS=0   where the report goes; 1 keeps the scripts' raw output
set -euo pipefail

BUILD_DIR=${1:-}
RATES=${RATES:-50000pps 100000pps 200000pps max}
SIZES=${SIZES:-64 512 1500}
CELL_S=${CELL_S:-5}
MAX_PACKETS=${MAX_PACKETS:-1000000}
CLIENTS=${CLIENTS:-1 2 4}
CLIENTS_SIZE=${CLIENTS_SIZE:-64}
CLIENTS_RATE=${CLIENTS_RATE:-200000pps}
LAT_PACKETS=${LAT_PACKETS:-200}
DECAP_PACKETS=${DECAP_PACKETS:-1000000}
DECAP_LARGE_PACKETS=${DECAP_LARGE_PACKETS:-200000}
DECAP_ROUNDS=${DECAP_ROUNDS:-3}
MICRO_MIN_TIME=${MICRO_MIN_TIME:-0.5}
IDLE_S=${IDLE_S:-10}
IDLE_ROUNDS=${IDLE_ROUNDS:-3}
SSH_IDLE_S=${SSH_IDLE_S:-3}
SSH_PACKETS=${SSH_PACKETS:-300000}
SSH_ROUNDS=${SSH_ROUNDS:-5}
SSH_RATE=${SSH_RATE:-}
TUNNEL_RATE=${TUNNEL_RATE:-20mbit}
TUNNEL_TRAFFIC_RATE=${TUNNEL_TRAFFIC_RATE:-60mbit}
TUNNEL_DURATION=${TUNNEL_DURATION:-20}
TUNNEL_ROUNDS=${TUNNEL_ROUNDS:-1}
TUNNEL_PAYLOADS=${TUNNEL_PAYLOADS:-random text}
STEPS=${STEPS:-grid clients decap micro idle ssh tunnel}
SETTLE_S=${SETTLE_S:-1.5}
GOAL_RSS_MIB=${GOAL_RSS_MIB:-64}
GOAL_P99_MS=${GOAL_P99_MS:-5}
GOAL_DECAP_RATIO=${GOAL_DECAP_RATIO:-1.10}
GOAL_CPU_RATIO=${GOAL_CPU_RATIO:-}
KEEP_LOGS=${KEEP_LOGS:-0}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESULTS=${RESULTS:-$BENCH_DIR/RESULTS.md}

log() { printf '[all %(%T)T] %s\n' -1 "$*" >&2; }
die() { printf 'all.sh: %s\n' "$*" >&2; exit 1; }

[[ -n $BUILD_DIR ]] || die "usage: sudo bench/all.sh BUILD_DIR"
[[ $(id -u) == 0 ]] || die "must run as root (bench/run.sh and bench/decap.sh need it)"
[[ -x $BUILD_DIR/agent/capd && -x $BUILD_DIR/client/capctl ]] ||
  die "$BUILD_DIR/agent/capd or client/capctl missing (build the capd and capctl targets)"
BUILD_DIR=$(realpath "$BUILD_DIR")

# The exact command, settings included, for the report.
COMMAND="RATES=\"$RATES\" SIZES=\"$SIZES\" CELL_S=$CELL_S MAX_PACKETS=$MAX_PACKETS"
COMMAND+=" CLIENTS=\"$CLIENTS\" CLIENTS_SIZE=$CLIENTS_SIZE CLIENTS_RATE=$CLIENTS_RATE"
COMMAND+=" LAT_PACKETS=$LAT_PACKETS DECAP_PACKETS=$DECAP_PACKETS"
COMMAND+=" DECAP_LARGE_PACKETS=$DECAP_LARGE_PACKETS DECAP_ROUNDS=$DECAP_ROUNDS"
COMMAND+=" MICRO_MIN_TIME=$MICRO_MIN_TIME IDLE_S=$IDLE_S IDLE_ROUNDS=$IDLE_ROUNDS"
COMMAND+=" SSH_IDLE_S=$SSH_IDLE_S SSH_PACKETS=$SSH_PACKETS SSH_ROUNDS=$SSH_ROUNDS SSH_RATE=$SSH_RATE"
COMMAND+=" TUNNEL_RATE=$TUNNEL_RATE TUNNEL_TRAFFIC_RATE=$TUNNEL_TRAFFIC_RATE"
COMMAND+=" TUNNEL_DURATION=$TUNNEL_DURATION TUNNEL_ROUNDS=$TUNNEL_ROUNDS"
COMMAND+=" TUNNEL_PAYLOADS=\"$TUNNEL_PAYLOADS\""
COMMAND+=" STEPS=\"$STEPS\" SETTLE_S=$SETTLE_S"
COMMAND+=" bench/all.sh $BUILD_DIR"

OUT=$(mktemp -d /tmp/capd-all.XXXXXX)
CHILD=""
cleanup() {
  local rc=$?
  set +e
  if [[ -n $CHILD ]]; then
    kill -TERM "$CHILD" 2>/dev/null  # run.sh/decap.sh then remove their namespaces
    wait "$CHILD" 2>/dev/null
  fi
  if [[ $KEEP_LOGS == 1 ]]; then log "kept $OUT"; else rm -rf "$OUT"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step LOG CMD...: runs CMD (stdout to LOG, stderr through) in the background so that a signal to
# all.sh reaches cleanup, which stops it. A failed step is reported, and the others still run.
FAILED=()
step() {
  local logfile=$1 rc=0
  shift
  "$@" >"$logfile" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  if ((rc != 0)); then
    FAILED+=("$(basename "$logfile" .txt) (exit $rc)")
    log "failed: $* (exit $rc)"
  fi
  return 0
}

# pps RATE: packets per second of a rate ("50000pps": trafgen 0.6.8 knows no "kpps"); 0 for "max".
pps() {
  case $1 in
    max) echo 0 ;;
    *[0-9]pps) echo "${1%pps}" ;;
    *) die "rate '$1' is neither NUMBERpps nor max" ;;
  esac
}
for rate in $RATES $CLIENTS_RATE; do pps "$rate" >/dev/null; done  # fail now, not after 5 minutes
# packets_for RATE: the burst for one cell: CELL_S seconds at RATE, MAX_PACKETS at "max".
packets_for() {
  local p
  p=$(pps "$1")
  if ((p == 0)); then echo "$MAX_PACKETS"; else awk -v p="$p" -v s="$CELL_S" \
    'BEGIN { printf "%d", p * s }'; fi
}

has_step() { [[ " $STEPS " == *" $1 "* ]]; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
log "load average at start: $LOAD_START; logs in $OUT"

# ------------------------------------------------------------------------------------------------
if has_step grid; then
  for rate in $RATES; do
    n=$(packets_for "$rate")
    bursts=""
    for size in $SIZES; do bursts+="$size:$n "; done
    log "grid: rate $rate, $n packets per burst, sizes $SIZES"
    r=$rate
    [[ $r != max ]] || r=""
    step "$OUT/grid-$rate.txt" env RATE="$r" BURSTS="$bursts" MODES=alone LAT_PACKETS=0 \
      SETTLE_S="$SETTLE_S" TSV="$OUT/grid.tsv" "$BENCH_DIR/run.sh" "$BUILD_DIR"
  done
fi
if has_step clients; then
  n=$(packets_for "$CLIENTS_RATE")
  log "clients: $CLIENTS streams, $n x ${CLIENTS_SIZE}B at $CLIENTS_RATE; latency"
  r=$CLIENTS_RATE
  [[ $r != max ]] || r=""
  step "$OUT/clients.txt" env RATE="$r" BURSTS="$CLIENTS_SIZE:$n" MODES=clients \
    CLIENTS="$CLIENTS" LAT_PACKETS="$LAT_PACKETS" SETTLE_S="$SETTLE_S" TSV="$OUT/clients.tsv" \
    "$BENCH_DIR/run.sh" "$BUILD_DIR"
fi
if has_step decap; then
  log "decap: $DECAP_PACKETS + $DECAP_LARGE_PACKETS VXLAN frames, $DECAP_ROUNDS rounds"
  step "$OUT/decap.txt" env PACKETS="$DECAP_PACKETS" LARGE_PACKETS="$DECAP_LARGE_PACKETS" \
    ROUNDS="$DECAP_ROUNDS" SETTLE_S="$SETTLE_S" "$BENCH_DIR/decap.sh" "$BUILD_DIR"
fi
MICRO=$BUILD_DIR/bench/micro/capd_micro
if has_step micro; then
  if [[ -x $MICRO ]]; then
    log "micro: $MICRO --benchmark_min_time=$MICRO_MIN_TIME"
    # JSON, not CSV: benchmark 1.7.1's CSV reporter aborts when benchmarks have different counters.
    step "$OUT/micro.json" "$MICRO" --benchmark_min_time="$MICRO_MIN_TIME" \
      --benchmark_format=json
  else
    log "micro: $MICRO not built (configure with -DCAPD_BUILD_BENCHMARKS=ON); skipped"
  fi
fi
if has_step idle; then
  log "idle: capd alone, a stream on a quiet link, tcpdump; $IDLE_ROUNDS x ${IDLE_S}s each"
  step "$OUT/idle.txt" env IDLE_S="$IDLE_S" ROUNDS="$IDLE_ROUNDS" TSV="$OUT/idle.tsv" \
    "$BENCH_DIR/idle.sh" "$BUILD_DIR"
fi
if has_step ssh; then
  log "ssh: tcpdump through ssh vs capd through ssh, $SSH_ROUNDS rounds (${SSH_IDLE_S}s idle," \
    "$SSH_PACKETS packets)"
  # Every setting given, so that none of all.sh's own (RESULTS, IDLE_S...) leaks into ssh.sh;
  # RESULTS empty: the report below carries its section.
  step "$OUT/ssh-run.txt" env RESULTS= TSV= KEEP=0 IDLE_S="$SSH_IDLE_S" PACKETS="$SSH_PACKETS" \
    SIZE=64 RATE="$SSH_RATE" ROUNDS="$SSH_ROUNDS" SETTLE_S="$SETTLE_S" \
    "$BENCH_DIR/ssh.sh" "$BUILD_DIR" "$OUT/ssh"
fi
if has_step tunnel; then
  log "tunnel: tcpdump and capd through ssh over a $TUNNEL_RATE link, ${TUNNEL_DURATION}s of" \
    "$TUNNEL_TRAFFIC_RATE traffic per workflow, $TUNNEL_ROUNDS round(s)"
  # Every setting given, as for ssh.sh; RESULTS empty: the report below carries its sections.
  for payload in $TUNNEL_PAYLOADS; do
    step "$OUT/tunnel-$payload-run.txt" env RESULTS= TSV= KEEP=0 RATE="$TUNNEL_RATE" DELAY_MS=0 \
      TRAFFIC_RATE="$TUNNEL_TRAFFIC_RATE" PAYLOAD="$payload" SMALL_PPS=2000 SMALL_SIZE=120 \
      DURATION="$TUNNEL_DURATION" ROUNDS="$TUNNEL_ROUNDS" WORKFLOWS="a b c d" SETTLE_S=3 \
      "$BENCH_DIR/tunnel.sh" "$BUILD_DIR" "$OUT/tunnel-$payload"
  done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))

# ------------------------------------------------------------------------------------------------
# The report. Every table is built with awk from the key=value lines of run.sh (TSV).

# grid_table: one row per size and rate, tcpdump and capd+capctl side by side.
grid_table() {
  [[ -s $OUT/grid.tsv ]] || { echo "(no grid results)"; return; }
  awk -F'\t' -v goal_ratio="$GOAL_CPU_RATIO" -v rates="$RATES" -v sizes="$SIZES" '
    { delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
      key = f["size"] "|" f["rate"] "|" f["tool"]
      sent[key] = f["sent"]; got[key] = f["captured"]; ns[key] = f["cpu_ns"]; pps[key] = f["pps"]
      capd[key] = f["capd_ns"]; ctl[key] = f["capctl_ns"]; drops[key] = f["drops"]
      runs[key] = f["runs"]; capd_runs[key] = f["capd_runs"]; ctl_runs[key] = f["capctl_runs"] }
    function per_m(n, p) { return p > 0 ? sprintf("%.3f", n / 1e9 / (p / 1e6)) : "-" }
    function pct(g, s) { return s > 0 ? sprintf("%.2f %%", 100 * g / s) : "-" }
    BEGIN {
      print "| size | rate | sent | pkt/s | tcpdump captured | capd+capctl captured | tcpdump s/Mpkt | capd s/Mpkt | capctl s/Mpkt | capd+capctl s/Mpkt | ratio | goal | met |"
      print "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    }
    END {
      ns_sizes = split(sizes, S, " "); nr = split(rates, R, " ")
      for (i = 1; i <= ns_sizes; i++) for (j = 1; j <= nr; j++) {
        t = S[i] "|" R[j] "|tcpdump"; c = S[i] "|" R[j] "|capd+capctl"
        if (!(t in sent) && !(c in sent)) continue
        tpm = per_m(ns[t], sent[t]); cpm = per_m(ns[c], sent[c])
        ratio = (tpm != "-" && cpm != "-" && tpm > 0) ? sprintf("%.2f", cpm / tpm) : "-"
        goal = "capd+capctl 100 %"; met = (c in sent && got[c] == sent[c] && sent[c] > 0) ? "yes" : "no"
        if (goal_ratio != "") {
          goal = goal ", ratio <= " goal_ratio
          if (ratio == "-" || ratio + 0 > goal_ratio + 0) met = "no"
        }
        if (met == "no" && c in drops) met = met " (drops " drops[c] ")"
        printf "| %s B | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", S[i], R[j],
          sent[c], pps[c], pct(got[t], sent[t]), pct(got[c], sent[c]), tpm,
          per_m(capd[c], sent[c]), per_m(ctl[c], sent[c]), cpm, ratio, goal, met
      }
      # The same bursts again: how often the threads were put on a CPU (schedstat third field).
      print "\n### Wake-ups: times the processes\047 threads were put on a CPU, per million packets\n"
      print "From the same bursts (schedstat\047s third field); each costs a context switch, and on this VM"
      print "a cross-CPU wake-up costs ~16 us of CPU (bench/floor/capd_wakeup_cost, docs/performance.md).\n"
      print "| size | rate | tcpdump | capd | capctl | capd+capctl / tcpdump |"
      print "|---|---|---|---|---|---|"
      for (i = 1; i <= ns_sizes; i++) for (j = 1; j <= nr; j++) {
        t = S[i] "|" R[j] "|tcpdump"; c = S[i] "|" R[j] "|capd+capctl"
        if (!(t in sent) || !(c in sent) || capd_runs[c] == "" || sent[t] == 0 || sent[c] == 0) continue
        tr = runs[t] / (sent[t] / 1e6); cr = (capd_runs[c] + ctl_runs[c]) / (sent[c] / 1e6)
        wratio = tr > 0 ? sprintf("%.1f", cr / tr) : "-"  # not inline: ">" in printf redirects
        printf "| %s B | %s | %.0f | %.0f | %.0f | %s |\n", S[i], R[j], tr,
          capd_runs[c] / (sent[c] / 1e6), ctl_runs[c] / (sent[c] / 1e6), wratio
      }
    }' "$OUT/grid.tsv"
}

# clients_table: one row per client count; CPU of capd + all capctls, completeness of each client.
clients_table() {
  [[ -s $OUT/clients.tsv ]] || { echo "(no clients results)"; return; }
  awk -F'\t' '
    function per_m(n, p) { return p > 0 ? n / 1e9 / (p / 1e6) : 0 }
    BEGIN {
      print "| clients | sent | pkt/s | captured by each client | capd s/Mpkt | capctls s/Mpkt | total s/Mpkt | total / 1 client | capd VmHWM | goal | met |"
      print "|---|---|---|---|---|---|---|---|---|---|---|"
    }
    { delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v } }
    f["kind"] != "burst" { next }
    {
      n = f["clients"]; total = per_m(f["cpu_ns"], f["sent"])
      if (n == 1) one = total
      split(f["capd_mem_kib"], m, ",")
      k = split(f["captured_each"], e, ","); each = ""; ok = f["sent"] > 0
      for (i = 1; i <= k; i++) {
        each = each (i > 1 ? ", " : "") sprintf("%.2f %%", f["sent"] > 0 ? 100 * e[i] / f["sent"] : 0)
        if (e[i] != f["sent"]) ok = 0
      }
      printf "| %d | %s | %s | %s | %.3f | %.3f | %.3f | %s | %.1f MiB | every client 100 %% | %s |\n",
        n, f["sent"], f["pps"], each, per_m(f["capd_ns"], f["sent"]), per_m(f["capctl_ns"], f["sent"]),
        total, (one > 0 ? sprintf("%.2f", total / one) : "-"), m[1] / 1024, (ok ? "yes" : "no (drops " f["drops"] ")")
    }' "$OUT/clients.tsv"
}

# memory_table: capd's VmHWM after the full-rate grid run (peak over its sizes; one capd per run).
memory_table() {
  echo "| measurement | VmHWM | VmRSS / RssAnon / RssFile at the end | goal | met |"
  echo "|---|---|---|---|---|"
  local tsv
  for tsv in "$OUT/grid.tsv" "$OUT/clients.tsv"; do
    [[ -s $tsv ]] || continue
    awk -F'\t' -v goal="$GOAL_RSS_MIB" -v file="$tsv" '
      { delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v } }
      f["kind"] == "burst" && f["capd_mem_kib"] != "" {
        split(f["capd_mem_kib"], m, ",")
        if (file ~ /grid/) { if (f["rate"] != "max") next; key = "grid" } else key = "c" f["clients"]
        if (m[1] >= hwm[key]) { hwm[key] = m[1]; rest[key] = sprintf("%.1f / %.1f / %.1f MiB", m[2] / 1024, m[3] / 1024, m[4] / 1024) }
        if (!(key in label)) {
          order[++n] = key
          label[key] = key == "grid" ? "capd, 1 stream at full rate (all sizes, one capd)" : "capd, " f["clients"] " stream(s) at " f["rate"] " (" f["size"] " B)"
        }
      }
      END {
        for (i = 1; i <= n; i++) {
          k = order[i]; mib = hwm[k] / 1024
          # The clients ask for the same packets, so they share one capture and one ring.
          printf "| %s | %.1f MiB | %s | <= %s MiB | %s |\n", label[k], mib, rest[k], goal, mib <= goal ? "yes" : "no"
        }
      }' "$tsv"
  done
}

latency_table() {
  [[ -s $OUT/clients.tsv ]] || { echo "(no latency results)"; return; }
  echo "| capturer | lone packets captured / sent | p50 ms | p99 ms | goal | met |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' -v goal="$GOAL_P99_MS" '
    { delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v } }
    f["kind"] == "latency" {
      name = f["tool"] == "capctl" ? "capd+capctl --fifo" : f["tool"] == "tcpdump" ? "tcpdump -U -w FIFO" : "tcpdump -U --immediate-mode -w FIFO"
      if (f["tool"] == "capctl") { g = "p99 <= " goal " ms"; met = (f["p99_ms"] != "" && f["p99_ms"] + 0 <= goal + 0) ? "yes" : "no" }
      else { g = "(reference)"; met = "-" }
      printf "| %s | %s / %s | %s | %s | %s | %s |\n", name, f["captured"], f["sent"], f["p50_ms"], f["p99_ms"], g, met
    }' "$OUT/clients.tsv"
}

# decap_table: from decap.sh's summary ("114B plain decap ratio plain-med decap-med med-ratio
# capd-ratio ticks-ratio").
decap_table() {
  [[ -s $OUT/decap.txt ]] || { echo "(no decap results)"; return; }
  echo "| frame (outer) | plain s/Mpkt | decap s/Mpkt | decap / plain | median of rounds | capd alone | goal | met |"
  echo "|---|---|---|---|---|---|---|---|"
  awk -v goal="$GOAL_DECAP_RATIO" '
    /^size +plain s\/Mpkt/ { on = 1; next }
    on && $1 ~ /^[0-9]+B$/ && NF == 9 {
      printf "| %s | %s | %s | %s | %s | %s | <= %s (%+.0f %%) | %s |\n", $1, $2, $3, $4, $7, $8, goal,
        100 * (goal - 1), ($4 != "inf" && $4 + 0 <= goal + 0) ? "yes" : "no"
    }' "$OUT/decap.txt"
}

# micro_table: from Google Benchmark's JSON, one "key": value per line (no JSON parser needed).
micro_table() {
  [[ -s $OUT/micro.json ]] || { echo "(capd_micro not run: build it with -DCAPD_BUILD_BENCHMARKS=ON)"; return; }
  echo "| benchmark | packets/s | MB/s (frame bytes) | ns per packet |"
  echo "|---|---|---|---|"
  awk '
    /"benchmarks":/ { on = 1 }
    !on { next }
    /"name":/ { name = $2; gsub(/[",]/, "", name); items = ""; bytes = 0 }
    /"bytes_per_second":/ { bytes = $2 + 0 }
    /"items_per_second":/ { items = $2 + 0 }
    /^    }/ && name != "" && items > 0 {
      printf "| %s | %.3g | %.0f | %.1f |\n", name, items, bytes / 1e6, 1e9 / items; name = ""
    }' "$OUT/micro.json"
}

# idle_table: from idle.sh's TSV, one row per case (median of its rounds).
idle_table() {
  [[ -s $OUT/idle.tsv ]] || { echo "(no idle results)"; return; }
  echo "| case | CPU us/s (median) | wake-ups/s | each round, CPU us/s | % of one CPU |"
  echo "|---|---|---|---|---|"
  awk -F'\t' '
    { delete f; for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
      name = f["case"] == "agent" ? "capd, no client" : f["case"] == "stream" ? "capd + capctl stream -f udp -w FILE" : "tcpdump -w FILE udp"
      us = f["cpu_ns"] / 1000 / f["idle_s"]
      printf "| %s | %.0f | %.1f | %s | %.3f %% |\n", name, us, f["runs"] / f["idle_s"], f["cpu_us_each"], us / 1e4 }' "$OUT/idle.tsv"
}

report() {
  local rev dirty=""
  rev=$(git -C "$BENCH_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
  [[ -z $(git -C "$BENCH_DIR" status --porcelain --untracked-files=no 2>/dev/null) ]] ||
    dirty=" (work tree has uncommitted changes)"
  echo "# bench/all.sh results"
  echo
  echo "Made by \`bench/all.sh\`; see bench/README.md for the method. Do not edit by hand."
  echo
  echo "- date: $(date -u '+%F %T UTC'); took ${ELAPSED}s"
  echo "- commit: $rev$dirty"
  echo "- command: \`$COMMAND\`"
  echo "- CPUs (nproc): $(nproc); model: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- kernel: $(uname -r); memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "- load average (1/5/15 min): $LOAD_START at start, $LOAD_END at the end"
  if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l >= 1.0) }'; then
    echo "  (**not idle**: other work shared the CPUs; expect ±15 % or more on the CPU figures)"
  fi
  # The binaries may be older than the commit (or built from a modified tree): say when.
  echo "- binaries: capd $(date -u -r "$BUILD_DIR/agent/capd" '+%F %T UTC')," \
    "capctl $(date -u -r "$BUILD_DIR/client/capctl" '+%F %T UTC')"
  echo "- tcpdump: $(tcpdump --version 2>&1 | head -1 | awk '{ print $3 }'), $(tcpdump --version 2>&1 | sed -n 2p)"
  if ((${#FAILED[@]} > 0)); then
    echo "- **failed steps**: ${FAILED[*]} (their rows are missing)"
  fi
  echo
  echo "CPU: on-CPU time of the processes' threads (/proc/PID/task/*/schedstat) per million packets"
  echo "sent, start-up excluded, including 0.5 s before and ${SETTLE_S} s after each burst."
  echo "captured: packets in the file / packets that reached the capture veth."
  if has_step grid; then
    echo
    echo "## Completeness and CPU per packet: capd+capctl vs tcpdump"
    echo
    echo "Each capturer alone on its own burst (bench/run.sh MODES=alone); ratio = capd+capctl / tcpdump."
    echo
    grid_table  # and the wake-ups of the same bursts
  fi
  if has_step clients; then
    echo
    echo "## Concurrent clients: one capd, N capctl streams of the same traffic"
    echo
    clients_table
  fi
  if has_step grid || has_step clients; then
    echo
    echo "## capd memory (VmHWM from /proc/PID/status after the bursts)"
    echo
    echo "RssFile includes the capture rings that capd maps (32 MiB per capture; clients of the same"
    echo "packets share one capture)."
    echo
    memory_table
  fi
  if has_step clients && ((LAT_PACKETS > 0)); then
    echo
    echo "## Lone-packet latency into a FIFO reader ($LAT_PACKETS packets, 20 ms apart)"
    echo
    latency_table
  fi
  if has_step decap; then
    echo
    echo "## Decapsulation: --decap vxlan vs plain capture of the same VXLAN burst (bench/decap.sh)"
    echo
    echo "capd+capctl CPU per packet; 'capd alone' is capd's own decap/plain ratio."
    echo
    decap_table
  fi
  if has_step micro; then
    echo
    echo "## Micro-benchmarks (bench/micro, Google Benchmark, one thread)"
    echo
    micro_table
  fi
  if has_step idle; then
    echo
    echo "## A quiet link: cost per second with no traffic (bench/idle.sh)"
    echo
    echo "On-CPU time and wake-ups per second over ${IDLE_S} s, median of ${IDLE_ROUNDS} measurements."
    echo
    idle_table
  fi
  if has_step ssh; then
    echo
    if [[ -s $OUT/ssh/ssh.md ]]; then
      cat "$OUT/ssh/ssh.md"  # its own heading, goals and tables, between markers
    else
      echo "## Through SSH (bench/ssh.sh)"
      echo
      echo "(no ssh results)"
    fi
  fi
  if has_step tunnel; then
    local payload
    for payload in $TUNNEL_PAYLOADS; do
      echo
      if [[ -s $OUT/tunnel-$payload/tunnel.md ]]; then
        cat "$OUT/tunnel-$payload/tunnel.md"  # its own heading, table and ratios, between markers
      else
        echo "## Through a thin tunnel (bench/tunnel.sh, PAYLOAD=$payload)"
        echo
        echo "(no tunnel results)"
      fi
    done
  fi
  # bench/connections.sh is run on its own (not a step here): its last section is kept as it is.
  if [[ -f $RESULTS ]] && grep -q '^<!-- bench/connections.sh: begin' "$RESULTS"; then
    echo
    sed -n '/^<!-- bench\/connections.sh: begin/,/^<!-- bench\/connections.sh: end -->/p' "$RESULTS"
  fi
  echo
  echo "<details><summary>raw output of the scripts</summary>"
  echo
  local f
  for f in "$OUT"/grid-*.txt "$OUT/clients.txt" "$OUT/decap.txt" "$OUT/idle.txt"; do
    [[ -s $f ]] || continue
    echo "\`$(basename "$f")\`:"
    echo
    echo '```'
    cat "$f"
    echo '```'
    echo
  done
  echo "</details>"
}

report >"$OUT/RESULTS.md"
cat "$OUT/RESULTS.md"
cp "$OUT/RESULTS.md" "$RESULTS"
log "wrote $RESULTS"
((${#FAILED[@]} == 0)) || die "failed steps: ${FAILED[*]}"
