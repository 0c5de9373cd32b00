#!/usr/bin/env bash
# Start-up and memory benchmark of `container start`, side by side with the floor
# (DESIGN.md, "Performance targets"). Run by hand, as root, from the repository:
#
#   cargo build --release --bins && benches/start.sh [N]
#
# (with CARGO_TARGET_DIR set, the binaries are taken from there.) N is the number of
# runs per figure (default 50). Nothing is asserted: it prints medians and p95 in
# milliseconds and each median's ratio to the floor measured in the same run.
#
# For the README: "`benches/start.sh` (root, after `cargo build --release --bins`)
# prints start-up time against `unshare … chroot ROOT /bin/true` (the floor),
# start with a routed veth, 50 concurrent starts and PID 1's memory;
# `cargo bench --bench sandbox` times the sandbox alone against the same floor."
#
# PID 1's RSS is mostly file pages of glibc and ld.so (shared, but counted in every
# process's VmRSS). A static, size-optimised container-init is much smaller; build it
# after the release build with
#   cargo rustc --release --bin container-init -- -C target-feature=+crt-static -C opt-level=z
# (static glibc is fine here: the supervisor reads /etc/passwd itself, no NSS).
#
# Figures, each run interleaved with the others so drift hits all alike:
#   floor     unshare --pid --mount --uts --ipc --net --fork chroot ROOT /bin/true,
#             ROOT a temp dir holding /bin/true and its libraries
#   bwrap     bwrap --unshare-all with /usr bound read-only, /bin/true (if installed)
#   start     `container start` of a `host`-base container with network.mode = "none"
#             whose only service is /bin/sleep infinity (no ready probe); each run is
#             followed, unmeasured, by `container stop`
#   start+net the same with a routed veth and fixed addresses (100.72.250.x, fd63:…)
#   start/nonft  `start` with nft out of PATH: the tool then skips its nftables
#             syncs (nothing routed runs), so this is what start costs without them
#   start/fb  the same as `start`, without container-init next to `container`: PID 1
#             is the fallback, a sealed memfd copy of `container` itself (only with
#             FALLBACK=1, default; FALLBACK=0 skips it)
# then once: 50 (CONC) prebuilt containers started concurrently (total wall time),
# and the RSS of PID 1 (VmRSS = RssAnon + RssFile + RssShmem) of a running container,
# with container-init and with the fallback. PROFILE=1 adds the timeline of one
# start under `perf trace` (process forks and execs, the sandbox, the ready polls).
#
# Everything lives in a temp dir (state root, binaries, specs) and is removed at the
# end; the containers are destroyed. Uses 100.72.250.0/24 and fd63:be7c::/64 for the
# routed container; nothing is sent anywhere.
set -euo pipefail

N=${1:-${N:-50}}
CONC=${CONC:-50}
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
mkdir -p "$BIN" "$STATE" "$TMP/specs"
cp "$TARGET/container" "$TARGET/container-init" "$BIN/"
C=("$BIN/container" --root "$STATE")

names=()
cleanup() {
    set +e
    for n in "${names[@]}"; do "${C[@]}" destroy --volumes "$n" >/dev/null 2>&1; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# --- the floor's root: /bin/true and the libraries it loads --------------------------
ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS/bin"
cp /bin/true "$ROOTFS/bin/true"
for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done

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
    "${C[@]}" apply "$f" >/dev/null 2>&1 || { echo "apply $1 failed:" >&2; "${C[@]}" apply "$f" >&2; exit 1; }
    names+=("$1")
    "${C[@]}" stop "$1" >/dev/null 2>&1
}
spec bench-none 'mode = "none"'
spec bench-net $'ipv4 = "100.72.250.2"\nipv6 = "fd63:be7c::2"'
for i in $(seq -w 1 "$CONC"); do spec "bench-c$i" 'mode = "none"'; done

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
start_stop() { # key, name
    if [[ $1 == start/nonft ]]; then measure "$1" start_nonft "$2"; else measure "$1" "${C[@]}" start "$2"; fi
    "${C[@]}" stop "$2" >/dev/null 2>&1
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

# Warm-up (page cache, first nft run).
for _ in 1 2 3; do
    floor
    "${C[@]}" start bench-none >/dev/null 2>&1
    "${C[@]}" stop bench-none >/dev/null 2>&1
done

for ((i = 0; i < N; i++)); do
    measure floor floor
    ((have_bwrap)) && measure bwrap bwrap_true
    start_stop start bench-none
    start_stop start+net bench-net
    ((have_nonft)) && start_stop start/nonft bench-none
    if ((FALLBACK)); then
        hide_init
        start_stop start/fb bench-none
        show_init
    fi
done

# --- 50 concurrent starts ------------------------------------------------------------
concurrent() {
    local pids=() n
    for n in "${names[@]}"; do
        [[ $n == bench-c* ]] && { "${C[@]}" start "$n" >/dev/null 2>&1 & pids+=($!); }
    done
    local rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return $rc
}
stop_all() {
    local pids=() n
    for n in "${names[@]}"; do
        [[ $n == bench-c* ]] && { "${C[@]}" stop "$n" >/dev/null 2>&1 & pids+=($!); }
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
}
CRUNS=${CRUNS:-5}
for ((i = 0; i < CRUNS; i++)); do
    measure concurrent concurrent
    stop_all
done

# --- PID 1 memory --------------------------------------------------------------------
rss() { # name -> "VmRSS RssAnon RssFile RssShmem" (kB) of its PID 1
    local pid
    pid=$(grep -o '"pid": *[0-9]*' "$STATE/containers/$1/run.json" | grep -o '[0-9]*$')
    awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {printf "%s ", $2}' "/proc/$pid/status"
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

# --- report --------------------------------------------------------------------------
read -r floor_med floor_p95 <<<"$(stats "${samples[floor]}")"
row() { # label, key, target
    local med p95
    read -r med p95 <<<"$(stats "${samples[$2]}")"
    awk -v l="$1" -v m="$med" -v p="$p95" -v f="$floor_med" -v t="$3" \
        'BEGIN { printf "%-34s %9.2f %9.2f %8.2fx  %s\n", l, m, p, m / f, t }'
}
echo "container start benchmark: N=$N runs each, $(nproc) cores, kernel $(uname -r)"
echo "binaries: $TARGET ($(stat -c %s "$TARGET/container") and $(stat -c %s "$TARGET/container-init") bytes)"
printf '%-34s %9s %9s %9s  %s\n' "" "median ms" "p95 ms" "÷ floor" "target"
row "floor (unshare + chroot /bin/true)" floor "(≈ 6 ms reference)"
if ((have_bwrap)); then row "bwrap --unshare-all /bin/true" bwrap "(1.35× reference)"; else
    echo "bwrap                              skipped: not installed (apt-get install bubblewrap)"; fi
row "container start (network none)" start "≤ 1.2×"
row "container start (routed veth)" start+net "≤ 1.5×"
((have_nonft)) && row "container start, nft not on PATH" start/nonft "(no nftables sync)"
((FALLBACK)) && row "container start, fallback PID 1" start/fb "(memfd copy of container)"
read -r cmed cp95 <<<"$(stats "${samples[concurrent]}")"
printf '%-34s %9.2f %9.2f %9s  %s\n' "$CONC concurrent starts (total)" "$cmed" "$cp95" "" "≤ 250 ms ($CRUNS runs)"
kib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
echo "PID 1 RSS, container-init:  VmRSS $(kib "$rss_init") (anon $(kib "$anon_init"), file $(kib "$file_init"), shmem $(kib "$shm_init"))  target ≤ 1.5 MiB"
((FALLBACK)) && echo "PID 1 RSS, fallback (memfd): VmRSS $(kib "$rss_fb") (anon $(kib "$anon_fb"), file $(kib "$file_fb"), shmem $(kib "$shm_fb"))"
[[ -n $timeline ]] && printf 'one `container start` (network none) under perf trace:\n%s\n' "$timeline"
exit 0
