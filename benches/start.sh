#!/usr/bin/env bash
# shellcheck disable=SC2317 # (functions run through measure() and the traps)
# Start, stop, plan and scale benchmark of `container`, side by side with the floor
# (DESIGN.md, "Performance targets"; issue 13). Run by hand, as root, from the
# repository:
#
#   cargo build --release --bins && benches/start.sh [N]
#
# (with CARGO_TARGET_DIR set, the binaries are taken from there.) N is the number of
# runs per figure (default 50). Nothing is asserted: it prints one markdown table of
# medians and p95 (milliseconds, or MiB for memory), each time's ratio to the floor
# measured in the same run, and the issue's target.
#
# Environment: CONC (default 50) containers for the concurrent starts, CRUNS (5)
# runs of those; SCALE (200) containers for the scale figures, 0 skips them;
# SCALE_RUNS (5) runs of `list`/`status` at scale; FALLBACK=0 skips the fallback
# PID 1; PROFILE=1 adds a `perf trace` timeline of one start.
#
# PID 1's RSS is mostly file pages (shared, but counted in every process's VmRSS).
# build.rs links container-init as a static PIE, so it maps no ld.so or libc, and
# the release profile optimises for size (Cargo.toml); static glibc is fine here:
# the supervisor reads /etc/passwd itself, no NSS.
#
# Figures, each run interleaved with the others so drift hits all alike:
#   floor     unshare --pid --mount --uts --ipc --net --fork chroot ROOT /bin/true,
#             ROOT a temp dir holding /bin/true and its libraries (and empty /dev,
#             /proc for crun)
#   bwrap     bwrap --unshare-all with /usr bound read-only, /bin/true (if installed)
#   crun      Debian's crun running /bin/true in the same ROOT (read-only) from a
#             generated config.json: pid, mount, uts, ipc and network namespaces, no
#             terminal, no mounts. crun 1.x refuses a hybrid cgroup host whenever
#             cgroup2 has a controller (here hugetlb), with any cgroup manager; then
#             it runs through `nsenter --mount=NS`, NS a mount namespace made once
#             with a tmpfs over /sys/fs/cgroup (crun sees no cgroups at all), with
#             `--cgroup-manager=disabled`: no cgroup, and nsenter's exec included.
#             If even that fails, the row says why.
#   start     `container start` of a `host`-base container with network.mode = "none"
#             whose only service is /bin/sleep infinity (no ready probe)
#   apply     `container apply` of that running, unchanged container ("No changes")
#   stop      `container stop` of it, its ratio to `start` in the target column
#   start+net the same container with a routed veth and fixed addresses
#             (100.72.250.x, fd63:…), and its `stop`
#   start/nonft  `start` with nft out of PATH: the tool then skips its nftables
#             syncs (nothing routed runs), so this is what start costs without them
#             (its stop is not measured)
#   start/fb  the same as `start`, without container-init next to `container`: PID 1
#             is the fallback, a sealed memfd copy of `container` itself (only with
#             FALLBACK=1, default; its stop is not measured)
#   plan      `container plan` of each shipped spec (specs/*.toml, specs/*.yaml)
#             against an empty temp state root and an empty temp layer cache (unless
#             CONTAINER_CACHE is set); exit 2 ("changes") is expected
# then once: CONC prebuilt containers started concurrently (total wall time, CRUNS
# runs), the RSS of PID 1 (VmRSS = RssAnon + RssFile + RssShmem) of a running
# container, with container-init and with the fallback, and the scale figures:
#   SCALE containers like `start`'s, applied (and stopped) first, then started one
#   after another while the others keep running: the 1st start, the median (p95)
#   and the last; memory per container outside its services, as the summed PSS
#   (/proc/PID/smaps_rollup) of each container's PID 1 and keeper / SCALE, and as
#   the drop of MemAvailable / SCALE (whole machine: includes the sleep services and
#   the kernel's per-container objects, and whatever else runs meanwhile);
#   `container list` and `container status NAME` with all of them running
#   (SCALE_RUNS runs); then each is stopped (the median stop at scale) and destroyed.
# Before the scale run it prints the limits that could bite (pid_max, namespaces).
#
# Everything lives in a temp dir (state root, binaries, specs, ROOT, crun bundle)
# and is removed at the end, also on failure or ^C; the containers are destroyed.
# Uses 100.72.250.0/24 and fd63:be7c::/64 for the routed container; nothing is sent
# anywhere.
set -euo pipefail

N=${1:-${N:-50}}
CONC=${CONC:-50}
CRUNS=${CRUNS:-5}
SCALE=${SCALE:-200}
SCALE_RUNS=${SCALE_RUNS:-5}
FALLBACK=${FALLBACK:-1}
[[ $(id -u) == 0 ]] || { echo "run as root" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}/release
for b in container container-init; do
    [[ -x $TARGET/$b ]] || { echo "missing $TARGET/$b: cargo build --release --bins" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/container-bench.XXXXXX)
BIN=$TMP/bin
STATE=$TMP/state
mkdir -p "$BIN" "$STATE" "$TMP/specs" "$TMP/plan-state" "$TMP/plan-cache"
cp "$TARGET/container" "$TARGET/container-init" "$BIN/"
C=("$BIN/container" --root "$STATE")

names=()
holder=""
cleanup() {
    trap '' INT TERM HUP
    set +e
    [[ -f $BIN/container-init.off ]] && mv "$BIN/container-init.off" "$BIN/container-init"
    for n in "${names[@]}"; do "${C[@]}" destroy --volumes "$n" >/dev/null 2>&1; done
    [[ -n $holder ]] && kill "$holder" 2>/dev/null && wait "$holder" 2>/dev/null
    for d in /run/crun/"bench-$$-"*; do [[ -e $d ]] && crun delete --force "${d##*/}" >/dev/null 2>&1; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# --- the floor's root: /bin/true and the libraries it loads --------------------------
ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS/dev" "$ROOTFS/proc"
cp /bin/true "$ROOTFS/bin/true"
for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done

# --- crun: the same root from a generated OCI config ---------------------------------
BUNDLE=$TMP/crun
mkdir -p "$BUNDLE"
cat >"$BUNDLE/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
              "env": ["PATH=/bin"], "cwd": "/"},
  "root": {"path": "$ROOTFS", "readonly": true},
  "hostname": "bench",
  "mounts": [],
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                           {"type": "ipc"}, {"type": "network"}]}
}
EOF
crun_n=0
CRUN=()
crun_true() { # each run its own id (also when run in a subshell: the id has its pid)
    crun_n=$((crun_n + 1))
    "${CRUN[@]}" run --bundle "$BUNDLE" "bench-$$-$BASHPID-$crun_n"
}
crun_how=""    # how the row runs crun
crun_refused="" # why crun refused, if it did
if ! command -v crun >/dev/null; then
    crun_refused="not installed (apt-get install crun)"
else
    for try in "crun" "crun --cgroup-manager=disabled"; do
        read -ra CRUN <<<"$try"
        if err=$(crun_true 2>&1); then crun_how=$try; break; fi
        crun_refused+="${crun_refused:+; }\`$try run\`: ${err//$'\n'/ }"
    done
    if [[ -z $crun_how ]]; then
        # A mount namespace where /sys/fs/cgroup is an empty tmpfs: crun finds no
        # cgroup2 and, with the manager disabled, touches no cgroup.
        unshare --mount --propagation private sh -c \
            'mount -t tmpfs bench-nocgroup /sys/fs/cgroup && exec sleep infinity' &
        holder=$!
        for _ in $(seq 100); do
            nsenter --mount="/proc/$holder/ns/mnt" test ! -e /sys/fs/cgroup/unified 2>/dev/null && break
            sleep 0.02
        done
        CRUN=(nsenter --mount="/proc/$holder/ns/mnt" crun --cgroup-manager=disabled)
        if err=$(crun_true 2>&1); then
            crun_how="no cgroup, via nsenter: see below"
        else
            crun_refused+="; in a mount namespace without cgroups: ${err//$'\n'/ }"
        fi
    fi
fi

# --- specs ----------------------------------------------------------------------------
spec() { # name, network table body
    local f=$TMP/specs/$1.toml
    cat >"$f" <<EOF
name = "$1"
base = "host"
[network]
$2
[processes.main]
command = ["/bin/sleep", "infinity"]
restart = "no"
EOF
    names+=("$1")
    "${C[@]}" apply "$f" >/dev/null 2>&1 || { echo "apply $1 failed:" >&2; "${C[@]}" apply "$f" >&2; exit 1; }
    "${C[@]}" stop "$1" >/dev/null 2>&1
}
spec bench-none 'mode = "none"'
spec bench-net $'ipv4 = "100.72.250.2"\nipv6 = "fd63:be7c::2"'
for i in $(seq -w 1 "$CONC"); do spec "bench-c$i" 'mode = "none"'; done

shipped=()
for f in "$HERE"/specs/*.toml "$HERE"/specs/*.yaml; do [[ -e $f ]] && shipped+=("$f"); done
PLAN=("$BIN/container" --root "$TMP/plan-state" --cache "${CONTAINER_CACHE:-$TMP/plan-cache}" plan)

# --- timing helpers ------------------------------------------------------------------
declare -A samples
measure() { # key, command...
    local key=$1
    shift
    local t0 t1
    t0=${EPOCHREALTIME/./}
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2 || true; exit 1; }
    t1=${EPOCHREALTIME/./}
    samples[$key]+="$((t1 - t0)) "
}
measure_plan() { # key, spec: `plan` exits 2 when it has changes
    local t0 t1 rc=0
    t0=${EPOCHREALTIME/./}
    "${PLAN[@]}" "$2" >/dev/null 2>&1 || rc=$?
    t1=${EPOCHREALTIME/./}
    ((rc == 0 || rc == 2)) || { echo "failed ($rc): ${PLAN[*]} $2" >&2; "${PLAN[@]}" "$2" >&2 || true; exit 1; }
    samples[$1]+="$((t1 - t0)) "
}
stats() { # samples (µs) -> "median p95" in ms
    tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR]=$1} END {
        m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
        i = int(NR * 0.95 + 0.999999); if (i > NR) i = NR
        printf "%.2f %.2f", m / 1000, v[i] / 1000 }'
}

floor() { unshare --pid --mount --uts --ipc --net --fork chroot "$ROOTFS" /bin/true; }
have_bwrap=0
command -v bwrap >/dev/null && have_bwrap=1
bwrap_true() {
    bwrap --unshare-all --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
        --symlink usr/bin /bin --proc /proc --dev /dev /bin/true
}
# The same start with `nft` out of PATH: with no routed container running, the tool
# then skips its two nftables syncs (stop's cleanup and start's), which shows what
# those cost. Only when nft is not in the directories left.
NONFT_PATH=/usr/local/bin:/usr/bin:/bin
have_nonft=0
PATH=$NONFT_PATH command -v nft >/dev/null || have_nonft=1
start_nonft() { PATH=$NONFT_PATH "${C[@]}" start "$1"; }
hide_init() { mv "$BIN/container-init" "$BIN/container-init.off"; }
show_init() { mv "$BIN/container-init.off" "$BIN/container-init"; }

# Warm-up (page cache, first nft run), and a check that the re-apply is a no-op.
for _ in 1 2 3; do
    floor
    "${C[@]}" start bench-none >/dev/null 2>&1
    "${C[@]}" stop bench-none >/dev/null 2>&1
done
"${C[@]}" start bench-none >/dev/null 2>&1
noop_out=$("${C[@]}" apply "$TMP/specs/bench-none.toml" 2>&1)
"${C[@]}" stop bench-none >/dev/null 2>&1
[[ $noop_out == *"No changes"* ]] || { echo "the re-apply is not a no-op: $noop_out" >&2; exit 1; }

for ((i = 0; i < N; i++)); do
    measure floor floor
    ((have_bwrap)) && measure bwrap bwrap_true
    [[ -n $crun_how ]] && measure crun crun_true
    measure start "${C[@]}" start bench-none
    measure apply "${C[@]}" apply "$TMP/specs/bench-none.toml"
    measure stop "${C[@]}" stop bench-none
    measure start+net "${C[@]}" start bench-net
    measure stop+net "${C[@]}" stop bench-net
    if ((have_nonft)); then
        measure start/nonft start_nonft bench-none
        "${C[@]}" stop bench-none >/dev/null 2>&1
    fi
    if ((FALLBACK)); then
        hide_init
        measure start/fb "${C[@]}" start bench-none
        "${C[@]}" stop bench-none >/dev/null 2>&1
        show_init
    fi
    for f in "${shipped[@]}"; do measure_plan "plan:${f##*/}" "$f"; done
done

# --- CONC concurrent starts ----------------------------------------------------------
concurrent() {
    local pids=() n
    for n in "${names[@]}"; do
        [[ $n == bench-c* ]] && { "${C[@]}" start "$n" >/dev/null 2>&1 & pids+=($!); }
    done
    local rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return "$rc"
}
stop_all() {
    local pids=() n
    for n in "${names[@]}"; do
        [[ $n == bench-c* ]] && { "${C[@]}" stop "$n" >/dev/null 2>&1 & pids+=($!); }
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
}
for ((i = 0; i < CRUNS; i++)); do
    measure concurrent concurrent
    stop_all
done

# --- PID 1 memory --------------------------------------------------------------------
pid1() { grep -o '"pid": *[0-9]*' "$STATE/containers/$1/run.json" | grep -o '[0-9]*$'; }
rss() { # name -> "VmRSS RssAnon RssFile RssShmem" (kB) of its PID 1
    awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {printf "%s ", $2}' "/proc/$(pid1 "$1")/status"
}
"${C[@]}" start bench-none >/dev/null 2>&1
sleep 0.5
read -r rss_init anon_init file_init shm_init <<<"$(rss bench-none)"
"${C[@]}" stop bench-none >/dev/null 2>&1
if ((FALLBACK)); then
    hide_init
    "${C[@]}" start bench-none >/dev/null 2>&1
    sleep 0.5
    read -r rss_fb anon_fb file_fb shm_fb <<<"$(rss bench-none)"
    "${C[@]}" stop bench-none >/dev/null 2>&1
    show_init
fi

# --- SCALE containers running at once ------------------------------------------------
scale_notes=()
scale_up=0   # how many started
starts=()    # each start's time (µs), in order
mem_avail() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
if ((SCALE > 0)); then
    # Each container holds a keeper, PID 1 and a sleep, and its own pid, mount, uts,
    # ipc, net and cgroup namespaces.
    procs=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
    need=$((SCALE * 3))
    pid_max=$(cat /proc/sys/kernel/pid_max)
    scale_notes+=("limits: pid_max $pid_max ($procs processes now, $need more needed), threads-max $(cat /proc/sys/kernel/threads-max), user.max_net_namespaces $(cat /proc/sys/user/max_net_namespaces), user.max_mnt_namespaces $(cat /proc/sys/user/max_mnt_namespaces)")
    ((procs + need < pid_max)) || scale_notes+=("pid_max bites: $procs + $need processes ≥ $pid_max")
    for f in /proc/sys/user/max_{pid,mnt,uts,ipc,net,cgroup}_namespaces; do
        (($(cat "$f") > SCALE + CONC + 10)) || scale_notes+=("${f##*/} = $(cat "$f") bites")
    done
    for i in $(seq -w 1 "$SCALE"); do spec "scale-$i" 'mode = "none"'; done
    avail0=$(mem_avail)
    for i in $(seq -w 1 "$SCALE"); do
        t0=${EPOCHREALTIME/./}
        if ! err=$("${C[@]}" start "scale-$i" 2>&1); then
            scale_notes+=("start of scale-$i (with $scale_up running) failed: ${err//$'\n'/ }")
            break
        fi
        t1=${EPOCHREALTIME/./}
        starts+=("$((t1 - t0))")
        samples[scale]+="$((t1 - t0)) "
        scale_up=$((scale_up + 1))
    done
    sleep 0.5
    avail1=$(mem_avail)
    pss=0 rss_sum=0
    for ((k = 1; k <= scale_up; k++)); do
        p=$(pid1 "scale-$(printf "%0${#SCALE}d" "$k")")
        keeper=$(awk '/^PPid:/ {print $2}' "/proc/$p/status")
        read -r kp kr <<<"$(awk '/^Pss:/ {p += $2} /^Rss:/ {r += $2} END {print p, r}' \
            "/proc/$p/smaps_rollup" "/proc/$keeper/smaps_rollup")"
        pss=$((pss + kp)) rss_sum=$((rss_sum + kr))
    done
    last=scale-$(printf "%0${#SCALE}d" "$scale_up")
    if ((scale_up > 0)); then
        for ((r = 0; r < SCALE_RUNS; r++)); do
            measure scale:list "${C[@]}" list
            measure scale:status "${C[@]}" status "$last"
        done
    fi
    for ((k = 1; k <= scale_up; k++)); do
        measure scale:stop "${C[@]}" stop "scale-$(printf "%0${#SCALE}d" "$k")"
    done
    kept=()
    for n in "${names[@]}"; do
        if [[ $n == scale-* ]]; then "${C[@]}" destroy --volumes "$n" >/dev/null 2>&1 || true; else kept+=("$n"); fi
    done
    names=("${kept[@]}")
fi

# --- where one start spends its time (PROFILE=1, needs perf) ------------------------
timeline=""
if [[ ${PROFILE:-0} == 1 ]] && command -v perf >/dev/null; then
    perf trace -f -e 'execve,execveat,clone3,wait4,open_tree,pivot_root,clock_nanosleep' -o "$TMP/trace" -- \
        "${C[@]}" start bench-none >/dev/null 2>&1 || true
    "${C[@]}" stop bench-none >/dev/null 2>&1
    # Successful events only, as "ms  process  call".
    timeline=$(grep -v -e ENOENT -e '\[continued\]' "$TMP/trace" | awk '$1 ~ /^[0-9.]+$/ {
        d = ($4 == "ms):") ? $3 : ""
        for (i = 1; i <= NF; i++) if ($i ~ /^[a-z_0-9]+\(/) { c = $i; sub(/\(.*/, "", c); p = $(i - 1); break }
        printf "  %8.2f ms  %-28s %s%s\n", $1, p, c, (d != "" ? "  (" d " ms)" : "") }')
fi

# --- report: one markdown table ------------------------------------------------------
read -r floor_med _ <<<"$(stats "${samples[floor]}")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
line() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
row() { # label, key, target [, "nofloor"]: a time row
    local med p95
    read -r med p95 <<<"$(stats "${samples[$2]}")"
    line "$1" "$med ms" "$p95 ms" "$([[ ${4:-} == nofloor ]] || ratio "$med" "$floor_med")" "$3"
}
med() { local m; read -r m _ <<<"$(stats "${samples[$1]}")"; echo "$m"; }
kib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }

echo "container benchmark: N=$N runs each, $(nproc) cores, kernel $(uname -r), $(date -u +%F)"
echo "binaries: $TARGET ($(stat -c %s "$TARGET/container") and $(stat -c %s "$TARGET/container-init") bytes)"
echo
line figure median p95 "÷ floor" target
line --- --- --- --- ---
row "floor: \`unshare … chroot ROOT /bin/true\`" floor ""
if ((have_bwrap)); then row "bubblewrap \`--unshare-all\` /bin/true" bwrap "beat it"; else
    line "bubblewrap" "not installed" "" "" ""; fi
if [[ -n $crun_how ]]; then row "crun /bin/true ($crun_how)" crun ""; else
    line "crun /bin/true" "refused: $crun_refused" "" "" ""; fi
row "\`container start\`, network none" start "≤ 1.2×"
row "\`container stop\`, network none" stop "≤ 1.2× start ($(ratio "$(med stop)" "$(med start)"))"
row "\`container start\`, routed veth" start+net "≤ 1.5×"
row "\`container stop\`, routed veth" stop+net "≤ 1.2× start ($(ratio "$(med stop+net)" "$(med start+net)"))"
((have_nonft)) && row "\`container start\`, nft not on PATH" start/nonft "(no nftables sync)"
((FALLBACK)) && row "\`container start\`, fallback PID 1" start/fb "(memfd copy of container)"
row "$CONC concurrent starts (total, $CRUNS runs)" concurrent "≤ 250 ms" nofloor
line "PID 1 RSS, container-init" "$(kib "$rss_init")" "" "" "≤ 1.5 MiB (anon $(kib "$anon_init"), file $(kib "$file_init"), shmem $(kib "$shm_init"))"
((FALLBACK)) && line "PID 1 RSS, fallback (memfd)" "$(kib "$rss_fb")" "" "" "(anon $(kib "$anon_fb"), file $(kib "$file_fb"), shmem $(kib "$shm_fb"))"
row "no-op \`container apply\` (running, unchanged)" apply "< 30 ms" nofloor
for f in "${shipped[@]}"; do row "\`container plan\` specs/${f##*/}" "plan:${f##*/}" "< 10 ms" nofloor; done
if ((scale_up > 0)); then
    row "start with 0…$((scale_up - 1)) running (all $scale_up)" scale "" nofloor
    line "1st start (no. 1 of $SCALE)" "$(ms "${starts[0]}")" "" "" ""
    line "last start (no. $scale_up of $SCALE)" "$(ms "${starts[scale_up - 1]}")" "" "" "$(ratio "${starts[scale_up - 1]}" "${starts[0]}") the 1st"
    line "memory per container outside its services (PSS of PID 1 + keeper)" "$(kib $((pss / scale_up)))" "" "" "(their RSS: $(kib $((rss_sum / scale_up))))"
    line "memory per container, MemAvailable drop ÷ $scale_up (whole machine)" "$(kib $(((avail0 - avail1) / scale_up)))" "" "" "(with the sleep service; noisy)"
    row "\`container list\` with $scale_up running" scale:list "" nofloor
    row "\`container status NAME\` with $scale_up running" scale:status "" nofloor
    row "\`container stop\` with 1…$scale_up running" scale:stop "" nofloor
fi
echo
[[ -n $crun_how && -n $crun_refused ]] && echo "crun refuses this host: $crun_refused. The row runs \`nsenter --mount=NS crun --cgroup-manager=disabled run\`, NS a mount namespace with a tmpfs over /sys/fs/cgroup."
for n in "${scale_notes[@]}"; do echo "scale: $n"; done
[[ -n $timeline ]] && printf 'one %s (network none) under perf trace:\n%s\n' "\`container start\`" "$timeline"
exit 0
