# shellcheck shell=bash
# Shared by the bench scripts (sourced): exact on-CPU time of a process's threads, waiting for a
# process to log that it is ready and for captures to stop growing, and a script's own section
# of RESULTS.md. The sourcing script defines die() (and SETTLE_S for wait_quiet).

# sched_snapshot PID: "tid on-CPU-ns runs" for every thread, from /proc/PID/task/TID/schedstat:
# its first field (sum_exec_runtime, exact, unlike the tick-sampled utime+stime) and its third
# (how many times the thread was put on a CPU: each wake-up, and each return after preemption).
sched_snapshot() {
  local stat tid
  for stat in /proc/"$1"/task/*/schedstat; do
    tid=${stat%/schedstat}
    tid=${tid##*/}
    awk -v t="$tid" '{ print t, $1, $3 }' "$stat" 2>/dev/null || true
  done
}
# sched_delta BEFORE AFTER: on-CPU ns between two snapshots. A thread that appeared counts whole;
# one that ended in between cannot be counted (its time is lost; "lost=N" on stderr says so).
sched_delta() {
  awk 'NR == FNR { before[$1] = $2; next }
       { total += $2 - ($1 in before ? before[$1] : 0); seen[$1] = 1 }
       END { for (t in before) if (!(t in seen)) lost++
             if (lost) print "lost=" lost > "/dev/stderr"
             printf "%d\n", total }' "$1" "$2"
}
# sched_runs BEFORE AFTER: times the threads were put on a CPU between two snapshots (a thread
# that appeared counts whole).
sched_runs() {
  awk 'NR == FNR { before[$1] = $3; next }
       { total += $3 - ($1 in before ? before[$1] : 0) }
       END { printf "%d\n", total }' "$1" "$2"
}

# wait_for FILE PATTERN PID: until FILE holds PATTERN (grep regex); fails if PID exits first, or
# after 15 s.
wait_for() {
  local file=$1 pattern=$2 pid=$3 i
  for ((i = 0; i < 150; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited before '$pattern'"; }
    sleep 0.1
  done
  cat "$file" >&2
  die "timed out waiting for '$pattern' in $file"
}

# wait_quiet FILE...: until none of the files has grown for SETTLE_S seconds; 1 if they are still
# growing after 120 s.
wait_quiet() {
  local sizes last="" still=0 i need
  need=$(awk -v s="$SETTLE_S" 'BEGIN { print int(s * 4 + 0.5) }')
  for ((i = 0; i < 480; i++)); do
    sizes=$(stat -c %s "$@" 2>/dev/null | tr '\n' ' ')
    if [[ $sizes == "$last" ]]; then
      ((++still >= need)) && return 0
    else
      still=0
      last=$sizes
    fi
    sleep 0.25
  done
  return 1
}

# update_results FILE SECTION SCRIPT: replaces the section between SCRIPT's markers in FILE
# ("<!-- bench/SCRIPT: begin" ... "<!-- bench/SCRIPT: end") with the file SECTION, or puts it
# before the raw output of all.sh (or at the end).
update_results() {
  local file=$1 section=$2 script=$3
  [[ -f $file ]] || : >"$file"
  awk -v sec="$section" -v begin="<!-- bench/$script: begin" -v end="<!-- bench/$script: end" '
    BEGIN { while ((getline line < sec) > 0) s = s line "\n" }
    index($0, begin) == 1 { skip = 1; if (!done) { printf "%s", s; done = 1 }; next }
    skip { if (index($0, end) == 1) skip = 0; next }
    !done && /^<details><summary>raw output/ { printf "%s\n", s; done = 1 }
    { print }
    END { if (!done) printf "\n%s", s }' "$file" >"$file.new"
  cat "$file.new" >"$file"
  rm -f "$file.new"
}

# alive PID: running (a zombie, which kill -0 still finds, is not).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# forget PID: reaped, so the sourcing script's cleanup must not signal the number again (it keeps
# the processes it started in the array PIDS).
forget() {
  local keep=() pid
  for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
  PIDS=("${keep[@]}")
}

# make_veth_pair NS_A IF_A IP_A NS_B IF_B IP_B: two new network namespaces joined by a veth pair,
# addresses in one /24, IPv6 off (no ND/MLD frames on a quiet link) and static neighbours (no
# ARP), so a capture on the link holds only what the benchmark sends.
make_veth_pair() {
  local ns_a=$1 if_a=$2 ip_a=$3 ns_b=$4 if_b=$5 ip_b=$6 ns mac_a mac_b
  ip netns add "$ns_a"
  ip netns add "$ns_b"
  ip link add "$if_a" type veth peer name "$if_b"
  ip link set "$if_a" netns "$ns_a"
  ip link set "$if_b" netns "$ns_b"
  for ns in "$ns_a" "$ns_b"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
      net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip netns exec "$ns_a" sysctl -qw "net.ipv6.conf.$if_a.disable_ipv6=1"
  ip netns exec "$ns_b" sysctl -qw "net.ipv6.conf.$if_b.disable_ipv6=1"
  ip -n "$ns_a" addr add "$ip_a/24" dev "$if_a"
  ip -n "$ns_b" addr add "$ip_b/24" dev "$if_b"
  ip -n "$ns_a" link set "$if_a" up
  ip -n "$ns_b" link set "$if_b" up
  mac_a=$(ip netns exec "$ns_a" cat "/sys/class/net/$if_a/address")
  mac_b=$(ip netns exec "$ns_b" cat "/sys/class/net/$if_b/address")
  ip -n "$ns_a" neigh replace "$ip_b" lladdr "$mac_b" dev "$if_a" nud permanent
  ip -n "$ns_b" neigh replace "$ip_a" lladdr "$mac_a" dev "$if_b" nud permanent
}
