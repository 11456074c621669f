#!/usr/bin/env bash
# A one-shot hardware check on a GPU machine with no Rust toolchain, from the
# binaries scripts/gpu-bundle.sh built elsewhere: runs the GPU tests,
# `vision-miner devices` and a short series of GPU benches, samples nvidia-smi
# where present, and writes one JSON report with every figure. Fixed batches
# that cannot fit in the card's memory (nvidia-smi's, else the Vulkan
# driver's) are skipped and listed, not failed.
#
#   scripts/gpu-check.sh [BUNDLE_DIR] [--out FILE]
#
# BUNDLE_DIR: default .gpu-bundle (here, else at the repository root).
# The report goes to FILE, default $OUT/gpu-check.json when $OUT is set, else
# ./gpu-check.json. Needs bash 4.4+, coreutils, grep and sed (no python3, no jq).
# The whole run stays within 5 minutes: every step has a timeout, capped by
# what is left of the overall budget.
#
# Environment: GPU_CHECK_SECONDS (timed window of each bench, default 6),
# GPU_CHECK_BUDGET_S (overall budget for the steps, default 270),
# GPU_CHECK_NO_UNPACK=1 (never unpack .gl/*.deb into /, as the tests run it),
# GPU_CHECK_ACCEPT_SOFTWARE=1 (take a software adapter as the GPU: for the
# script's own tests, which run it past the adapter check on lavapipe),
# GPU_CHECK_NVIDIA_SMI=off (ignore nvidia-smi, as on a card without it).
#
# Exit codes: 0 every step passed; 1 a step failed (the report says which);
# 2 bad arguments or an unusable bundle; 3 no hardware GPU adapter.
set -euo pipefail
# Byte-wise string handling: tool output need not be valid UTF-8.
export LC_ALL=C
if [ "${BASH_VERSINFO[0]}" -lt 4 ] || { [ "${BASH_VERSINFO[0]}" = 4 ] && [ "${BASH_VERSINFO[1]}" -lt 4 ]; }; then
    echo "gpu-check: needs bash 4.4 or newer (this is $BASH_VERSION)" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# ldconfig lives in /sbin, often off a user's PATH.
export PATH=$PATH:/sbin:/usr/sbin
BENCH_SECONDS=${GPU_CHECK_SECONDS:-6}
BUDGET_S=${GPU_CHECK_BUDGET_S:-270}
DEADLINE=$((SECONDS + BUDGET_S))

usage() { sed -n '7s/^# *//p' "$0" >&2; }
say() { printf 'gpu-check: %s\n' "$*" >&2; }

bundle=""
out=""
while [ $# -gt 0 ]; do
    case $1 in
        --out)
            [ $# -ge 2 ] || { usage; exit 2; }
            out=$2
            shift 2
            ;;
        --out=*) out=${1#--out=}; shift ;;
        -h | --help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) say "unknown option $1"; usage; exit 2 ;;
        *)
            [ -z "$bundle" ] || { usage; exit 2; }
            bundle=$1
            shift
            ;;
    esac
done
if [ -z "$bundle" ]; then
    bundle=.gpu-bundle
    [ -d "$bundle" ] || bundle="$ROOT/.gpu-bundle"
fi
if [ -z "$out" ]; then
    if [ -n "${OUT:-}" ]; then out="$OUT/gpu-check.json"; else out=gpu-check.json; fi
fi
bundle_abs=$(cd "$bundle" 2>/dev/null && pwd) || bundle_abs=$bundle
MINER="$bundle_abs/vision-miner"
TESTS="$bundle_abs/gpu-tests"

TMP=$(mktemp -d)
SMI_PID=""
MADE_LINK=""
MADE_DIR=""
cleanup() {
    [ -z "$SMI_PID" ] || kill "$SMI_PID" 2>/dev/null || true
    [ -z "$MADE_LINK" ] || unlink_tests_miner
    rm -rf "$TMP"
    rm -f "${REPORT_TMP:-}"
}
trap cleanup EXIT

# ---- JSON, in bash alone ----

JSON_CONTROL=$'[\x01-\x1f\x7f]'
# A JSON string literal of $1: backslash, quote and control characters escaped.
json_str() {
    local s=$1 code ch esc
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    s=${s//$'\b'/\\b}
    s=${s//$'\f'/\\f}
    # Bytes of invalid UTF-8 (a crash's garbage, a cut character) would make
    # the whole report unreadable: dropped (iconv), or each a "?" without it.
    if [[ $s == *[$'\x80'-$'\xff']* ]] && command -v iconv >/dev/null 2>&1; then
        s=$(printf '%s' "$s" | iconv -f UTF-8 -t UTF-8 -c 2>/dev/null || printf '%s' "$s" | tr '\200-\377' '?')
    elif [[ $s == *[$'\x80'-$'\xff']* ]]; then
        s=$(printf '%s' "$s" | tr '\200-\377' '?')
    fi
    if [[ $s == *$JSON_CONTROL* ]]; then
        for code in {1..31} 127; do
            printf -v ch "\\x$(printf %02x "$code")"
            printf -v esc '\\u%04x' "$code"
            s=${s//"$ch"/$esc}
        done
    fi
    printf '"%s"' "$s"
}

# $1 if it is a JSON number, else null.
json_num() {
    local re='^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'
    if [[ $1 =~ $re ]]; then printf '%s' "$1"; else printf null; fi
}

json_bool() { if [ "$1" = 1 ]; then printf true; else printf false; fi; }

# Whether $1 is a single JSON object or array (as serde_json prints them).
looks_json() {
    local re='^[[:space:]]*[[{].*[]}][[:space:]]*$'
    [[ $1 =~ $re ]]
}

# The non-empty lines of a file that look like JSON: null, the value, or an array of them.
json_lines() {
    local line values=()
    while IFS= read -r line || [ -n "$line" ]; do
        if looks_json "$line"; then values+=("$line"); fi
    done <"$1"
    case ${#values[@]} in
        0) printf null ;;
        1) printf '%s' "${values[0]}" ;;
        *) local IFS=,; printf '[%s]' "${values[*]}" ;;
    esac
}

# Field $2 of the flat JSON object $1: the string's contents (still escaped), or the raw value.
# (|| true: under pipefail, head closing the pipe early must not count as a failure.)
json_get_str() { sed -nE 's/.*"'"$2"'":"(([^"\\]|\\.)*)".*/\1/p' <<<"$1" | head -n 1 || true; }
json_get_raw() { sed -nE 's/.*"'"$2"'":([^,}]*).*/\1/p' <<<"$1" | head -n 1 || true; }

# The last $2 lines of file $1, as a JSON string.
json_tail() { json_str "$(tail -n "$2" "$1" 2>/dev/null)"; }

# key=value lines of file $1 as a JSON object of strings.
json_kv_file() {
    local k v first=1
    printf '{'
    [ -f "$1" ] && while IFS='=' read -r k v || [ -n "$k" ]; do
        [ -n "$k" ] || continue
        [ $first = 1 ] || printf ','
        first=0
        printf '%s:%s' "$(json_str "$k")" "$(json_str "$v")"
    done <"$1"
    printf '}'
}

now_ms() { local t; t=$(date +%s%N); echo $((t / 1000000)); }

# ---- steps ----

# Runs "$@" with a timeout of at most $2 seconds (less if the overall budget is
# nearly spent), output in $TMP/$1.{out,err}. Never fails: sets STEP_JSON, a
# JSON object of the command, exit code, time and stderr tail, and STEP_RC
# ("" when skipped for lack of time). A failing step is recorded, not fatal.
run_step() {
    local name=$1 limit=$2 left start rc=0 timed_out=0
    shift 2
    left=$((DEADLINE - SECONDS))
    [ "$limit" -le "$left" ] || limit=$left
    : >"$TMP/$name.out"
    : >"$TMP/$name.err"
    if [ "$limit" -lt 5 ]; then
        STEP_RC=""
        STEP_JSON="{\"command\":$(json_str "$*"),\"skipped\":\"out of time\"}"
        say "$name: skipped (out of time)"
        return 0
    fi
    say "$name: $* (timeout ${limit}s)"
    start=$(now_ms)
    # -k: a process stuck in the driver may ignore SIGTERM.
    # (stdin: nothing. A child must not read what the caller loops over.)
    timeout -k 5 "$limit" "$@" <"/dev/null" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
    # 124: timeout's own; 137 after -k's KILL, or the OOM killer's before the limit.
    if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $(($(now_ms) - start)) -ge $((limit * 1000)) ]; }; then
        timed_out=1
    fi
    STEP_RC=$rc
    STEP_JSON="{\"command\":$(json_str "$*"),\"exit_code\":$rc,\"timed_out\":$(json_bool $timed_out)"
    STEP_JSON+=",\"timeout_s\":$limit,\"wall_ms\":$(($(now_ms) - start)),\"stderr_tail\":$(json_tail "$TMP/$name.err" 40)}"
    [ "$rc" = 0 ] || say "$name: exit code $rc"
}

# Adds field "$1": $2 (a JSON value) to STEP_JSON.
step_add() { STEP_JSON="${STEP_JSON%\}},$(json_str "$1"):$2}"; }

FAILED=()
# Written next to the report, then moved over it: a reader never sees half a report.
mkdir -p "$(dirname "$out")"
REPORT_TMP=$(mktemp "$out.XXXXXX")
REPORT_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Fields of the report, each a JSON value; unset ones are written as null.
declare -A R=()

write_report() {
    local gpu=$1 message=$2 key first=1
    {
        printf '{"report":"vision-miner gpu-check","version":1'
        printf ',"started_at":"%s","finished_at":"%s","duration_s":%d' \
            "$REPORT_STARTED" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SECONDS"
        printf ',"gpu":%s,"message":%s' "$gpu" "$(json_str "$message")"
        printf ',"failed_steps":['
        for key in "${FAILED[@]}"; do
            [ $first = 1 ] || printf ','
            first=0
            json_str "$key"
        done
        printf ']'
        for key in adapter adapter_name driver memory_total host bundle vulkan vision_miner devices \
            nvidia_smi tests benches; do
            printf ',"%s":%s' "$key" "${R[$key]:-null}"
        done
        printf '}\n'
    } >"$REPORT_TMP"
    mv "$REPORT_TMP" "$out"
    REPORT_TMP=$(mktemp "$out.XXXXXX")
    say "report: $out"
}

# The report so far, written after each step of the long part: a run cut
# short (its caller's limit, a hung driver) still leaves what it measured.
# (nvidia_smi is an object still open for its samples: closed in the copy.)
write_partial_report() {
    local smi=${R[nvidia_smi]:-}
    [ -z "$smi" ] || R[nvidia_smi]="$smi}"
    write_report true "partial: the run was still going" 2>/dev/null
    R[nvidia_smi]=$smi
}

# ---- bundle ----

R[bundle]="{\"dir\":$(json_str "$(dirname "$MINER")"),\"manifest\":$(json_kv_file "$bundle/manifest.txt")}"
if [ ! -x "$MINER" ] || [ ! -x "$TESTS" ]; then
    say "no vision-miner and gpu-tests in $bundle: build them with scripts/gpu-bundle.sh"
    write_report null "no bundle at $bundle (build it with scripts/gpu-bundle.sh)"
    exit 2
fi

# ---- host ----

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1 || true)
mem_total=$(sed -n 's/^MemTotal:[[:space:]]*//p' /proc/meminfo 2>/dev/null || true)
R[host]="{\"uname\":$(json_str "$(uname -a)"),\"nproc\":$(json_num "$(nproc 2>/dev/null)")"
R[host]+=",\"cpu\":$(json_str "$cpu_model"),\"memory\":$(json_str "$mem_total")}"

# ---- Vulkan loader and driver ----

vulkan_notes=()
# A bare machine may lack the Vulkan loader: .deb files in .gl/ provide it.
# (grep without -q: an early exit would fail ldconfig with SIGPIPE under pipefail.)
if ! ldconfig -p 2>/dev/null | grep libvulkan >/dev/null; then
    debs=("$ROOT"/.gl/*.deb)
    if [ "${GPU_CHECK_NO_UNPACK:-}" = 1 ]; then
        vulkan_notes+=("no libvulkan in the ldconfig cache (GPU_CHECK_NO_UNPACK=1: .gl/*.deb not unpacked)")
    elif [ -e "${debs[0]}" ]; then
        say "no libvulkan: unpacking ${#debs[@]} package(s) from $ROOT/.gl"
        unpacked=1
        for f in "${debs[@]}"; do
            timeout 60 dpkg -x "$f" / 2>>"$TMP/dpkg.err" || unpacked=0
        done
        timeout 30 ldconfig 2>>"$TMP/dpkg.err" || unpacked=0
        if [ $unpacked = 1 ]; then
            vulkan_notes+=("libvulkan was missing: unpacked $ROOT/.gl/*.deb")
        else
            vulkan_notes+=("libvulkan was missing; unpacking $ROOT/.gl/*.deb failed: $(head -c 500 "$TMP/dpkg.err")")
        fi
    else
        vulkan_notes+=("no libvulkan in the ldconfig cache and no $ROOT/.gl/*.deb to unpack")
    fi
fi
libvulkan=$(ldconfig -p 2>/dev/null | grep -m 1 -o '/[^ ]*libvulkan\.so[^ ]*' || true)

# ICD manifests in the loader's standard places; software ones don't count.
icds=()
for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    for f in "$d"/*.json; do
        if [ -e "$f" ]; then icds+=("$f"); fi
    done
done
# Mesa's manifests for other vendors (intel, radeon) are in many images
# without their hardware: only an NVIDIA manifest stands for this driver.
nvidia_icds=0
for f in "${icds[@]}"; do
    case ${f##*/} in nvidia*) nvidia_icds=$((nvidia_icds + 1)) ;; esac
done
# In NVIDIA containers the driver's ICD sits outside the loader's search path.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
vulkan_notes+=("NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES-unset} (a container needs graphics or all for Vulkan)")
if [ $nvidia_icds = 0 ] && [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ]; then
    export VK_DRIVER_FILES=$nvidia_icd
    export VK_ICD_FILENAMES=$nvidia_icd # loaders older than 1.3.207 read only this one
    vulkan_notes+=("no NVIDIA ICD in the standard places: VK_DRIVER_FILES=$nvidia_icd")
    egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    if [ -f "$egl" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES=$egl; fi
    # The ICD names libGLX_nvidia.so.0 without a path.
    if [ -d /usr/local/nvidia/lib64 ] && [[ :${LD_LIBRARY_PATH:-}: != *:/usr/local/nvidia/lib64:* ]]; then
        export LD_LIBRARY_PATH=/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
fi
icd_json="["
for f in "${icds[@]}"; do icd_json+="$(json_str "$f"),"; done
icd_json="${icd_json%,}]"
notes_json="["
for n in "${vulkan_notes[@]}"; do notes_json+="$(json_str "$n"),"; done
notes_json="${notes_json%,}]"
R[vulkan]="{\"libvulkan\":$(json_str "$libvulkan"),\"icd_files\":$icd_json"
R[vulkan]+=",\"VK_DRIVER_FILES\":$(json_str "${VK_DRIVER_FILES:-}"),\"notes\":$notes_json}"

# ---- version, nvidia-smi, devices ----

run_step version 10 "$MINER" --version
R[vision_miner]=$(json_str "$(head -n 1 "$TMP/version.out")")
if [ "$STEP_RC" != 0 ]; then
    # Typically a glibc older than the build machine's.
    message="vision-miner --version failed (exit code ${STEP_RC:-none}): $(head -n 1 "$TMP/version.err")"
    say "$message"
    R[vision_miner]=$STEP_JSON
    FAILED+=(version)
    write_report null "$message"
    exit 2
fi

SMI_FIELDS=name,driver_version,memory.total,memory.used,utilization.gpu,clocks.sm,power.draw
SAMPLE_FIELDS=timestamp,index,$SMI_FIELDS

# CSV lines of nvidia-smi (fields $1) in file $2 as a JSON array of objects.
smi_json() {
    local IFS=, names line i first=1 values
    read -r -a names <<<"$1"
    printf '['
    while IFS= read -r line || [ -n "$line" ]; do
        [ -n "$line" ] || continue
        line=${line//, /$'\t'}
        IFS=$'\t' read -r -a values <<<"$line"
        [ $first = 1 ] || printf ','
        first=0
        printf '{'
        for i in "${!names[@]}"; do
            [ "$i" = 0 ] || printf ','
            printf '%s:%s' "$(json_str "${names[$i]}")" "$(json_str "${values[$i]:-}")"
        done
        printf '}'
    done <"$2"
    printf ']'
}

have_smi=0
if [ "${GPU_CHECK_NVIDIA_SMI:-}" != off ] && command -v nvidia-smi >/dev/null 2>&1; then
    have_smi=1
    run_step smi_before 15 nvidia-smi --query-gpu=$SMI_FIELDS --format=csv,noheader
    smi_before_json=$STEP_JSON
    if [ "$STEP_RC" = 0 ]; then
        smi_before=$(smi_json "$SMI_FIELDS" "$TMP/smi_before.out")
        R[driver]=$(json_str "$(json_get_str "$smi_before" driver_version)")
        R[memory_total]=$(json_str "$(json_get_str "$smi_before" memory.total)")
    else
        smi_before=null
    fi
    # (Its own query: an older nvidia-smi refuses the field, and Vulkan does
    # not run on a MIG slice.)
    run_step smi_mig 10 nvidia-smi --query-gpu=mig.mode.current --format=csv,noheader
    R[nvidia_smi]="{\"present\":true,\"step\":$smi_before_json,\"before\":$smi_before"
    R[nvidia_smi]+=",\"mig_mode\":$(json_str "$(head -n 1 "$TMP/smi_mig.out")")"
else
    R[nvidia_smi]='{"present":false'
fi

run_step devices 30 "$MINER" devices --json
devices_json=null
# (Output of a command that failed may stop mid-line: not taken as JSON.)
[ "$STEP_RC" != 0 ] || devices_json=$(json_lines "$TMP/devices.out")
step_add json "$devices_json"
R[devices]=$STEP_JSON
if [ "$STEP_RC" != 0 ] || [ "$devices_json" = null ]; then
    FAILED+=(devices)
    R[nvidia_smi]+="}"
    write_report null "vision-miner devices failed (exit code ${STEP_RC:-none}): $(head -n 1 "$TMP/devices.err")"
    say "vision-miner devices failed; see the report"
    exit 2
fi

# The first hardware adapter. wgpu marks CPU rasterisers (lavapipe, llvmpipe,
# WARP) as device type Cpu; the name catches any that are not marked.
hw_index=""
software_names=()
while IFS= read -r adapter; do
    name=$(json_get_str "$adapter" name)
    if [ "${GPU_CHECK_ACCEPT_SOFTWARE:-}" = 1 ] || { [[ $adapter == *'"is_software":false'* ]] &&
        [[ $adapter != *'"device_type":"Cpu"'* ]] &&
        ! grep -qiE 'llvmpipe|lavapipe|swiftshader|softpipe|basic render' <<<"$name"; }; then
        if [ -z "$hw_index" ]; then
            hw_index=$(json_get_raw "$adapter" index)
            R[adapter]=$adapter
            R[adapter_name]="\"$name\""
            [ -n "${R[driver]:-}" ] || R[driver]="\"$(json_get_str "$adapter" driver)\""
        fi
    else
        software_names+=("$name")
    fi
done < <(grep -o '{[^{}]*}' <<<"$devices_json" | grep '"index":' || true)

if [ -z "$hw_index" ]; then
    R[nvidia_smi]+="}"
    message="no hardware GPU adapter"
    if [ ${#software_names[@]} -gt 0 ]; then
        message+=" (software only: ${software_names[*]})"
    else
        message+=" (no Vulkan adapter at all)"
    fi
    if [ $have_smi = 1 ] && [ "$smi_before" != null ]; then
        message+="; nvidia-smi sees $(json_get_str "$smi_before" name), so check the Vulkan loader and ICD"
    fi
    write_report false "$message"
    say "$message"
    exit 3
fi
say "hardware GPU: adapter #$hw_index ${R[adapter_name]}"
write_partial_report

# ---- GPU tests ----

# The tests run vision-miner from the absolute path it had on the build machine
# (compiled in); where that path is missing, point it at the bundle's binary
# for the run, and remove the link afterwards.
tests_notes=()
tests_miner_path=$(sed -n 's/^tests_miner_path=//p' "$bundle/manifest.txt" 2>/dev/null || true)
unlink_tests_miner() {
    rm -f "$MADE_LINK"
    local d
    d=$(dirname "$MADE_LINK")
    while [ -n "$MADE_DIR" ] && [ "${d#"$MADE_DIR"}" != "$d" ]; do
        rmdir "$d" 2>/dev/null || break
        d=$(dirname "$d")
    done
    MADE_LINK=""
}
if [ -n "$tests_miner_path" ] && [ ! -e "$tests_miner_path" ]; then
    # The topmost directory this creates, so that only those are removed.
    d=$(dirname "$tests_miner_path")
    while [ ! -e "$(dirname "$d")" ]; do d=$(dirname "$d"); done
    [ -e "$d" ] || MADE_DIR=$d
    if mkdir -p "$(dirname "$tests_miner_path")" 2>/dev/null && ln -s "$MINER" "$tests_miner_path" 2>/dev/null; then
        MADE_LINK=$tests_miner_path
        tests_notes+=("linked $tests_miner_path to the bundle's vision-miner for the run")
    else
        tests_notes+=("cannot create $tests_miner_path: tests that run vision-miner will fail")
    fi
fi
# The tests use adapter 0. Where that is a software one, show them only the
# NVIDIA driver (if its ICD is known); otherwise say which adapter they used.
tests_env=()
if [ "$hw_index" != 0 ]; then
    icd=""
    for f in "${icds[@]}" "$nvidia_icd"; do
        case ${f##*/} in nvidia*) [ -f "$f" ] && { icd=$f; break; } ;; esac
    done
    if [ -n "$icd" ]; then
        tests_env=(env "VK_DRIVER_FILES=$icd" "VK_ICD_FILENAMES=$icd")
        tests_notes+=("adapter 0 is not the hardware GPU: the tests ran with VK_DRIVER_FILES=$icd")
    else
        tests_notes+=("adapter 0 is not the hardware GPU (#$hw_index): the tests ran on adapter 0")
    fi
fi
# Each test in a process of its own (CI=true: a missing adapter fails it
# instead of skipping it): a crash in the driver or a hang costs that test,
# not the ones after it. 120 s for all of them, at most 60 s each (every
# vector through every kernel set-up takes about 60 s on lavapipe).
tests_deadline=$((SECONDS + 120))
run_step tests_list 10 "$TESTS" --list --format terse
STEP_JSON_LIST=$STEP_JSON
tests_json="["
tests_failed=()
tests_run=0
while IFS= read -r name; do
    [ -n "$name" ] || continue
    limit=$((tests_deadline - SECONDS))
    [ "$limit" -le 60 ] || limit=60
    tests_run=$((tests_run + 1))
    if [ "$limit" -lt 5 ]; then
        tests_failed+=("$name (not run: out of time)")
        continue
    fi
    run_step "test_$tests_run" "$limit" "${tests_env[@]}" env CI=true "$TESTS" --exact "$name" --test-threads=1
    # Exit 0 with no test run (a name that matched nothing, an ignored
    # test) is not a pass.
    ran=0
    if [ "$STEP_RC" = 0 ] && grep -q '^test result: ok\. 1 passed' "$TMP/test_$tests_run.out"; then ran=1; fi
    [ $ran = 1 ] || tests_failed+=("$name")
    step_add name "$(json_str "$name")"
    [ $ran = 1 ] || step_add stdout_tail "$(json_tail "$TMP/test_$tests_run.out" 30)"
    tests_json+="$STEP_JSON,"
    R[tests]="{\"running\":true,\"runs\":${tests_json%,}]}"
    write_partial_report
done < <(sed -n 's/: test$//p' "$TMP/tests_list.out")
[ -z "$MADE_LINK" ] || unlink_tests_miner
tests_passed=0
if [ "$tests_run" -gt 0 ] && [ ${#tests_failed[@]} -eq 0 ]; then tests_passed=1; fi
[ $tests_passed = 1 ] || FAILED+=(tests)
summary="$((tests_run - ${#tests_failed[@]})) passed; ${#tests_failed[@]} failed (of $tests_run, each in its own process)"
say "tests: $summary"
failed_list=""
for n in "${tests_failed[@]}"; do failed_list+="$n"$'\n'; done
STEP_JSON="{\"list\":$STEP_JSON_LIST,\"passed\":$(json_bool $tests_passed),\"summary\":$(json_str "$summary")"
STEP_JSON+=",\"failed_tests\":$(json_str "${failed_list%$'\n'}"),\"runs\":${tests_json%,}]"
notes_json="["
for n in "${tests_notes[@]}"; do notes_json+="$(json_str "$n"),"; done
STEP_JSON+=",\"notes\":${notes_json%,}]}"
R[tests]=$STEP_JSON
write_partial_report

# ---- benches ----

# nvidia-smi every second while the benches run (bounded by the budget).
if [ $have_smi = 1 ]; then
    timeout -k 3 $((DEADLINE - SECONDS > 0 ? DEADLINE - SECONDS + 5 : 5)) \
        nvidia-smi --query-gpu=$SAMPLE_FIELDS --format=csv,noheader -l 1 >"$TMP/smi_samples.csv" 2>/dev/null &
    SMI_PID=$!
fi

# Device memory for a fixed batch: at most 524,320 bytes a hash in flight at
# consensus params (32,768 table slots of 12 bytes, a 2^20-bit filter, 32 bytes
# of state; see GpuDevice::bytes_per_hash), rounded up, plus slack. The tuner
# clamps a fixed batch to this budget, so it must not be smaller.
memory_mb_for() { echo $((($1 * 524320 + 1048575) / 1048576 + 64)); }
# What a fixed batch takes on a hardware GPU: compact tables of 24,576 slots
# (288 KiB a hash), no filter, plus the 256 MiB dataset and slack.
memory_mb_used() { echo $((($1 * 294944 + 1048575) / 1048576 + 512)); }

bench_args=(bench --backend gpu --device "$hw_index" --json --seconds "$BENCH_SECONDS")
# Environment of a bench run (env(1) assignments), set around a call.
bench_env=()
benches="["
summary_lines=()
bench() {
    local name=$1 limit=$2 result=null rate
    shift 2
    # Started with less than half its limit left, a bench would only time
    # out: skipped instead, and the time left to the others.
    if [ $((DEADLINE - SECONDS)) -lt $((limit / 2)) ]; then
        limit=0
    fi
    run_step "bench_$name" "$limit" env ${bench_env[@]+"${bench_env[@]}"} "$MINER" "${bench_args[@]}" "$@"
    [ "$STEP_RC" != 0 ] || result=$(json_lines "$TMP/bench_$name.out")
    if [ -z "$STEP_RC" ]; then
        : # skipped for lack of time: listed, not a failure
    elif [ "$STEP_RC" != 0 ] || [ "$result" = null ]; then
        FAILED+=("bench $name")
        step_add stdout "$(json_tail "$TMP/bench_$name.out" 20)"
    fi
    step_add result "$result"
    STEP_JSON="{\"name\":$(json_str "$name"),${STEP_JSON#\{}"
    benches+="$STEP_JSON,"
    R[benches]="${benches%,}]"
    write_partial_report
    rate=$(json_get_raw "$result" hashes_per_second)
    summary_lines+=("$(printf '%-20s %14s H/s  batch %-7s  gpu-time rate %s  busy %s  steps %s -> %s ms' "$name" \
        "${rate:-failed}" "$(json_get_raw "$result" batch_hashes)" "$(json_get_raw "$result" gpu_hashes_per_second)" \
        "$(json_get_raw "$result" gpu_busy_fraction)" "$(json_get_raw "$result" first_step_ms)" \
        "$(json_get_raw "$result" last_step_ms)")")
}
# The free memory (MiB: total less used) of the card with the least, where
# nvidia-smi tells it (which of its rows is the adapter under test, it
# cannot say): a fixed batch whose tables cannot fit there is skipped, not
# failed (a 24 GiB card is not broken for refusing 45 GiB of tables).
# Where nvidia-smi gives no figure (AMD, Intel), what the Vulkan driver says
# of the adapter under test (`vision-miner devices`): free, else its largest
# heap.
CARD_MB=""
CARD_MB_WHAT="free"
if [ -s "$TMP/smi_before.out" ]; then
    CARD_MB=$(awk -F', *' '$3 + 0 > 0 { print $3 - $4 }' "$TMP/smi_before.out" | sort -n | head -n 1)
fi
if [ -z "$CARD_MB" ]; then
    vk_bytes=$(json_get_raw "${R[adapter]}" memory_free_bytes)
    CARD_MB_WHAT="free (Vulkan)"
    if ! [[ $vk_bytes =~ ^[0-9]+$ ]]; then
        vk_bytes=$(json_get_raw "${R[adapter]}" memory_bytes)
        CARD_MB_WHAT="in its largest heap (Vulkan)"
    fi
    [[ $vk_bytes =~ ^[0-9]+$ ]] && CARD_MB=$((vk_bytes / 1048576))
    vk_total=$(json_get_raw "${R[adapter]}" memory_bytes)
    if [ -z "${R[memory_total]:-}" ] && [[ $vk_total =~ ^[0-9]+$ ]]; then
        R[memory_total]=$(json_str "$((vk_total / 1048576)) MiB (Vulkan)")
    fi
fi
# bench_batch NAME LIMIT BATCH: a bench at a fixed batch, given a budget that holds it.
bench_batch() {
    local name=$1 limit=$2 batch=$3 need
    need=$(memory_mb_used "$batch")
    if [ -n "$CARD_MB" ] && [ $((need * 10)) -gt $((CARD_MB * 9)) ]; then
        say "bench_$name: skipped (needs $need MiB; the card has $CARD_MB MiB $CARD_MB_WHAT)"
        benches+="{\"name\":$(json_str "$name"),\"skipped\":$(json_str "does not fit: needs $need MiB, the card has $CARD_MB MiB $CARD_MB_WHAT"),\"result\":null},"
        R[benches]="${benches%,}]"
        summary_lines+=("$(printf '%-20s %14s' "$name" "skipped: does not fit")")
        return 0
    fi
    bench "$name" "$limit" --gpu-batch "$batch" --gpu-memory-mb "$(memory_mb_for "$batch")"
}
# Each run: a probe in a child process (compiles the kernel), tuning, then the
# timed window, extended until two batches have completed (a batch is 64
# dispatches at consensus params), hence the margins, larger for big batches.
bench tuned 40
# Tables probed a group of eight keys (one 32-byte sector) at a time
# instead of slot by slot (TableProbe::Groups), tuned, compact and pow2:
# early in the list, since it is what the next run must tell.
bench_env=(VISION_GPU_PROBE=groups)
bench groups 40
bench_env=(VISION_GPU_PROBE=groups VISION_GPU_TABLES=pow2)
bench groups-pow2 40
# Candidates rated by whole batches instead of one early slice (a batch a
# candidate: a longer start, hence the larger limit).
bench_env=(VISION_GPU_TUNE=batches)
bench tuned-batches 60
bench_env=()
# The kernel compiled without wgpu's runtime checks (GpuDevice::module).
bench_env=(VISION_GPU_CHECKS=off)
bench unchecked 40
bench_env=()
for batch in 8192 16384 65536 98304 114688; do
    limit=25
    [ "$batch" -le 16384 ] || limit=40
    bench_batch "batch-$batch" "$limit" "$batch"
done
bench emulated 40 --shader emulated
# Full power-of-two tables (load at most 1/2: shorter probes, a third more
# memory a hash, so fewer hashes fit under the budget), tuned.
bench_env=(VISION_GPU_TABLES=pow2)
bench pow2 40
# Past the Vulkan cliff (163,840 hashes: 45 GiB of tables; on the H200 one
# buffer per segment fell off it as far as a buffer per binding, so the
# cliff follows the total, not the number of allocations).
bench_batch batch-163840 75 163840
R[benches]="${benches%,}]"

if [ -n "$SMI_PID" ]; then
    kill "$SMI_PID" 2>/dev/null || true
    wait "$SMI_PID" 2>/dev/null || true
    SMI_PID=""
    R[nvidia_smi]+=",\"sample_fields\":$(json_str "$SAMPLE_FIELDS"),\"samples\":$(smi_json "$SAMPLE_FIELDS" "$TMP/smi_samples.csv")"
fi
R[nvidia_smi]+="}"

printf '%s\n' "${summary_lines[@]}" >&2
if [ ${#FAILED[@]} -eq 0 ]; then
    write_report true "every step passed"
    exit 0
fi
write_report true "failed: ${FAILED[*]}"
exit 1
