#!/usr/bin/env bash
# The GPU check: on one machine, with example binaries built elsewhere (it builds nothing),
#   1. parity: `forward --reference` on the committed transformers fixtures, max |diff| per
#      fixture, pass/fail at --tolerance;
#   2. throughput, f32: a LoRA training step, the vision forward, prefill and decoding of
#      random real-size Qwen2.5-0.5B-Instruct + SigLIP so400m built from data/configs/
#      (`bench_run`), with peak memory (GPU memory via nvidia-smi on CUDA, else process RSS);
#      bf16 is reported as not available in this build;
#   3. the same figures in PyTorch + transformers + peft (tools/bench/compare.py's worker) when
#      `python3 -c "import torch, transformers, peft"` works;
#   4. one JSON report (--out).
# `--backend cpu --bin-dir target/debug/examples --dry-run` runs it all on tiny sizes (CI:
# tests/gpu_check.rs). Flags, report format, timing estimate: tools/gpu/README.md.
set -uo pipefail # no -e: a failing section is recorded in the report, and the rest still runs

usage() {
  cat <<'EOF'
usage: tools/gpu/check.sh [options]

  --backend cuda|cpu   the backend the binaries were built for (default cuda: `--features cuda`);
                       checked against what `bench_run backend` says
  --bin-dir DIR        where the example binaries forward and bench_run are
                       (default target/release/examples)
  --out FILE           the JSON report (default target/gpu-check/report.json)
  --work DIR           model folders, outputs and logs (default: the report's folder + /work)
  --dry-run            tiny models (tools/gpu/dry_run_config.json), 1 timed repetition each
  --tolerance T        largest |diff| to the references that passes (default 1e-4)
  --train-steps N      timed training steps after one warm-up (default 5; dry run 1)
  --iters N            timed repetitions of each inference figure (default 3; dry run 1)
  --python PATH        the Python of the PyTorch side (default python3)
  --no-torch           skip the PyTorch side
  -h, --help           this text

Exit status 0 when every fixture passed and every measurement ran, 1 otherwise (the report is
written either way), 64 for bad flags.
EOF
}

root=$(cd "$(dirname "$0")/../.." && pwd)

# A path given on the command line, made absolute against the folder the script was run from.
absolute() {
  case $1 in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s\n' "$PWD/$1" ;;
  esac
}

backend=cuda
bin_dir=$root/target/release/examples
out=$root/target/gpu-check/report.json
work=""
dry_run=false
tolerance=1e-4
train_steps=""
iters=""
python=python3
torch_wanted=true
command_line="tools/gpu/check.sh $*"

die_usage() {
  echo "check.sh: $1 (see --help)" >&2
  exit 64
}

while (($#)); do
  case $1 in
    --backend) backend=${2:-} && shift ;;
    --bin-dir) bin_dir=$(absolute "${2:-}") && shift ;;
    --out) out=$(absolute "${2:-}") && shift ;;
    --work) work=$(absolute "${2:-}") && shift ;;
    --dry-run) dry_run=true ;;
    --tolerance) tolerance=${2:-} && shift ;;
    --train-steps) train_steps=${2:-} && shift ;;
    --iters) iters=${2:-} && shift ;;
    --python) python=${2:-} && shift ;;
    --no-torch) torch_wanted=false ;;
    -h | --help) usage && exit 0 ;;
    *) die_usage "unknown flag $1" ;;
  esac
  shift
done

case $backend in cuda | cpu) ;; *) die_usage "--backend takes cuda or cpu, not '$backend'" ;; esac
[[ $tolerance =~ ^[0-9.]+([eE][-+]?[0-9]+)?$ ]] || die_usage "--tolerance '$tolerance' is not a number"
if $dry_run; then
  train_steps=${train_steps:-1} iters=${iters:-1}
else
  train_steps=${train_steps:-5} iters=${iters:-3}
fi
for count in "$train_steps" "$iters"; do
  [[ $count =~ ^[1-9][0-9]*$ ]] || die_usage "'$count' is not a positive count"
done
work=${work:-$(dirname "$out")/work}
forward=$bin_dir/forward
bench_run=$bin_dir/bench_run
for program in "$forward" "$bench_run"; do
  if [[ ! -x $program ]]; then
    echo "check.sh: $program is missing: build the examples with" >&2
    echo "  cargo build --release --features cuda --examples   (or --bin-dir another folder)" >&2
    exit 1
  fi
done
mkdir -p "$work" "$(dirname "$out")" || exit 1
cd "$root" || exit 1

# ---------------------------------------------------------------------------------------------
# Helpers

now() { date +%s.%N; }
since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.3f", end - start }'; }

# A JSON string of $1 (control characters dropped).
json_string() {
  local text
  text=$(printf '%s' "$1" | tr -d '\000-\010\013\014\016-\037')
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\t'/\\t}
  text=${text//$'\r'/}
  text=${text//$'\n'/\\n}
  printf '"%s"' "$text"
}

# The last line of file $1 (else stdin) that starts with `{` (the programs print their JSON last).
last_json() { grep '^{' "${1:--}" | tail -n 1; }

# The end of a failed program's stderr, as a JSON string.
error_tail() { json_string "$(tail -c 1500 "$1")"; }

# With CUDA and nvidia-smi: the GPU the programs use (Burn's default device is the first
# visible one) and its used memory in MiB.
gpu_index=${CUDA_VISIBLE_DEVICES:-0}
gpu_index=${gpu_index%%,*}
gpu_memory=false
if [[ $backend == cuda ]] && command -v nvidia-smi >/dev/null 2>&1; then
  gpu_memory=true
fi
gpu_used_mib() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu_index" 2>/dev/null |
    tr -dc '0-9'
}

# measured LIMIT_S STDOUT STDERR COMMAND...: runs COMMAND, killed after LIMIT_S seconds, and
# samples every 0.05 s (plus the time nvidia-smi takes) its peak resident memory (VmHWM, a
# high-water mark: only growth in the last interval before it exits can be missed) and, with
# nvidia-smi, the GPU memory in use above what was in use before it started (the device-wide
# figure: per-process figures are often hidden inside containers). Sets run_rc (124 when
# killed), run_seconds, peak_rss_bytes and peak_gpu_bytes: "null" without nvidia-smi, and
# both "null" for a process that ended before 3 samples (a dry run's), too short to measure.
measured() {
  local limit=$1 stdout=$2 stderr=$3
  shift 3
  local base=0 used key value start pid started=$SECONDS killed=false
  $gpu_memory && base=$(gpu_used_mib)
  start=$(now)
  "$@" >"$stdout" 2>"$stderr" &
  pid=$!
  local peak_rss_kib=0 peak_gpu_mib=0 samples=0
  while kill -0 "$pid" 2>/dev/null; do
    while read -r key value _; do
      [[ $key == VmHWM: ]] || continue
      samples=$((samples + 1))
      ((value > peak_rss_kib)) && peak_rss_kib=$value
    done <"/proc/$pid/status" 2>/dev/null
    if $gpu_memory; then
      used=$(gpu_used_mib)
      if [[ -n $used && -n $base ]] && ((used - base > peak_gpu_mib)); then
        peak_gpu_mib=$((used - base))
      fi
    fi
    if ((SECONDS - started > limit + 10)); then
      kill -KILL "$pid" 2>/dev/null # it ignored the first signal
    elif ((SECONDS - started > limit)); then
      kill "$pid" 2>/dev/null
      killed=true
    fi
    sleep 0.05
  done
  wait "$pid"
  run_rc=$?
  $killed && run_rc=124
  run_seconds=$(since "$start")
  peak_rss_bytes=null peak_gpu_bytes=null
  if ((samples >= 3)); then
    peak_rss_bytes=$((peak_rss_kib * 1024))
    $gpu_memory && peak_gpu_bytes=$((peak_gpu_mib * 1024 * 1024))
  fi
}

failed=false
total_start=$(now)

# ---------------------------------------------------------------------------------------------
# The machine and the binaries' backend

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
memory_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null)
gpu_json=null
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu_line=$(nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader,nounits -i "$gpu_index" 2>/dev/null | head -n 1)
  if [[ -n $gpu_line ]]; then
    IFS=',' read -r gpu_name gpu_driver gpu_total <<<"$gpu_line"
    gpu_total=${gpu_total//[^0-9]/}
    gpu_json="{\"name\": $(json_string "${gpu_name# }"), \"driver\": $(json_string "${gpu_driver# }"), \"memory_mib\": ${gpu_total:-null}}"
  fi
fi
host_json="{\"hostname\": $(json_string "$(uname -n)"), \"os\": $(json_string "$(uname -sr)"), \
\"cpu\": $(json_string "${cpu_model:-unknown}"), \"cores\": $(nproc), \
\"memory_bytes\": $((${memory_kib:-0} * 1024)), \"gpu\": $gpu_json}"

if ! binary_backend=$("$bench_run" backend 2>"$work/backend.err" | last_json) || [[ -z $binary_backend ]]; then
  echo "check.sh: $bench_run backend failed: $(tail -c 500 "$work/backend.err")" >&2
  exit 1
fi
backend_name=$(sed -n 's/.*"backend":"\([^"]*\)".*/\1/p' <<<"$binary_backend")
case $backend in
  cuda) [[ ${backend_name,,} == *cuda* ]] ;;
  cpu) [[ ${backend_name,,} != *cuda* && ${backend_name,,} != *wgpu* ]] ;;
esac || {
  echo "check.sh: --backend $backend but $bench_run runs on '$backend_name'" >&2
  exit 1
}
echo "check.sh: backend $backend_name, binaries in $bin_dir, work in $work" >&2

# ---------------------------------------------------------------------------------------------
# 1. Parity with the transformers references

# fixture_args KIND DIR REFERENCE: sets `args` to forward's flags for a fixture of that kind
# (the reference file holds the inputs too).
fixture_args() {
  local kind=$1 dir=$2 reference=$3
  case $kind in
    llm) args=(--llm "$dir" --ids "$reference") ;;
    tower)
      # LLaVA's selection -2, every token: transformers' hidden_states.2 of these 3-layer towers.
      args=(--vision "$dir" --pixels "$reference" --feature-layer -2 --feature-strategy full
        --reference-name image_features=hidden_states.2)
      ;;
    vlm) args=(--llava "$dir" --ids "$reference" --pixels "$reference") ;;
  esac
}

# NAME|KIND of every fixture forward can run: transformers 4.57 (data/fixtures/) and 5.25
# (data/fixtures/v5/) serialisations.
fixtures=()
for prefix in "" v5/; do
  for name in qwen2_tied qwen2_untied qwen3 qwen2_bf16_sharded qwen2_f16 qwen2_rope_linear \
    qwen2_rope_yarn; do
    fixtures+=("$prefix$name|llm")
  done
  for name in clip_vision siglip_vision clip_full siglip_full; do
    fixtures+=("$prefix$name|tower")
  done
  for name in llava llava_clip llava_state_dict; do
    fixtures+=("$prefix$name|vlm")
  done
done
fixtures+=("qwen_v1|llm") # Qwen-7B's layout, written by hand in one form only

parity_start=$(now)
parity_entries=()
parity_failures=0
mkdir -p "$work/parity"
for entry in "${fixtures[@]}"; do
  name=${entry%%|*}
  dir=$root/data/fixtures/$name
  reference=$dir/reference.safetensors
  fixture_args "${entry#*|}" "$dir" "$reference"
  file=$work/parity/${name//\//_}
  worst=""
  measured 300 "$file.out" "$file.err" "$forward" "${args[@]}" --out "$file.safetensors" \
    --reference "$reference" --tolerance "$tolerance"
  result=$(last_json "$file.out")
  if [[ ($run_rc == 0 || $run_rc == 2) && -n $result ]]; then
    pass=$(sed -n 's/.*"pass":\(true\|false\).*/\1/p' <<<"$result")
    worst=$(sed -n 's/.*"worst":\([^,}]*\).*/\1/p' <<<"$result")
    per_output=$(sed -n 's/.*"max_abs_diff":\({[^}]*}\).*/\1/p' <<<"$result")
    parity_entries+=("{\"fixture\": $(json_string "$name"), \"pass\": $pass, \
\"max_abs_diff\": $worst, \"per_output\": $per_output, \"seconds\": $run_seconds}")
  else
    pass=false
    parity_entries+=("{\"fixture\": $(json_string "$name"), \"pass\": false, \
\"max_abs_diff\": null, \"error\": $(error_tail "$file.err"), \"seconds\": $run_seconds}")
  fi
  [[ $pass == true ]] || parity_failures=$((parity_failures + 1))
  echo "check.sh: parity $name: ${pass} (max |diff| ${worst:-none}, ${run_seconds} s)" >&2
done
parity_seconds=$(since "$parity_start")
parity_passed=true
((parity_failures == 0)) || parity_passed=false failed=true
joined=$(printf '%s,\n    ' "${parity_entries[@]}")
parity_json="{\"tolerance\": $tolerance, \"passed\": $parity_passed, \
\"failures\": $parity_failures, \"seconds\": $parity_seconds, \"fixtures\": [
    ${joined%,*}
  ]}"

# ---------------------------------------------------------------------------------------------
# 2. Throughput figures: the bench config, the model folders, then our side

config=$work/bench_config.json
if $dry_run; then
  config_flags=(--config "$root/tools/gpu/dry_run_config.json")
  models_named="tiny random models of tools/gpu/dry_run_config.json"
else
  config_flags=(--config "$root/benches/bench_config.json"
    --llm-config "$root/data/configs/Qwen--Qwen2.5-0.5B-Instruct/config.json"
    --vision-config "$root/data/configs/google--siglip-so400m-patch14-384/config.json")
  models_named="random Qwen2.5-0.5B-Instruct + SigLIP so400m (sizes from data/configs/)"
fi
train_figures=train_step
inference_figures=vision_forward,prefill,decode_b1,decode_b8

# figures_json WHAT STDOUT STDERR: the throughput JSON of the run `measured` just made, with
# its peak memory; {"status": "failed", ...} when it failed.
figures_json() {
  local what=$1 stdout=$2 stderr=$3 timings
  timings=$(last_json "$stdout")
  if ((run_rc != 0)) || [[ -z $timings ]]; then
    printf '{"status": "failed", "exit": %s, "error": %s, "seconds": %s}' \
      "$run_rc" "$(error_tail "$stderr")" "$run_seconds"
    echo "check.sh: $what failed (exit $run_rc): $(tail -c 300 "$stderr")" >&2
    return
  fi
  printf '%s\n' "$timings" >"$stdout.timings.json"
  local rates
  if ! rates=$("$bench_run" --config "$config" throughput --timings "$stdout.timings.json" \
    2>"$stderr.throughput") || [[ -z $rates ]]; then
    printf '{"status": "failed", "error": %s}' "$(error_tail "$stderr.throughput")"
    return
  fi
  printf '{"status": "ok", "figures": %s, "peak_rss_bytes": %s, "peak_gpu_bytes": %s, "seconds": %s}' \
    "$rates" "$peak_rss_bytes" "$peak_gpu_bytes" "$run_seconds"
  echo "check.sh: $what: $rates" >&2
}

ours_json='{"status": "failed", "error": "the model folders could not be written"}'
torch_json='{"status": "skipped", "reason": "the model folders could not be written"}'
models=$work/models
models_seconds=0
models_ok=false
if "$bench_run" "${config_flags[@]}" show-config >"$config" 2>"$work/config.err"; then
  models_start=$(now)
  # The folders are kept between runs: rewritten only when the config changed.
  if cmp -s "$config" "$models/bench_config.json"; then
    models_ok=true
  else
    rm -rf "$models"
    measured 600 "$work/models.out" "$work/models.err" \
      "$bench_run" --config "$config" write-models --out "$models"
    if ((run_rc == 0)) && cp "$config" "$models/bench_config.json"; then
      models_ok=true
    else
      ours_json="{\"status\": \"failed\", \"error\": $(error_tail "$work/models.err")}"
    fi
  fi
  models_seconds=$(since "$models_start")
else
  ours_json="{\"status\": \"failed\", \"error\": $(error_tail "$work/config.err")}"
fi
$models_ok || failed=true

ours_seconds=0
if $models_ok; then
  ours_start=$(now)
  measured 600 "$work/ours_train.out" "$work/ours_train.err" "$bench_run" --config "$config" \
    run --models "$models" --figures "$train_figures" --iters "$train_steps"
  train=$(figures_json "ours train_step" "$work/ours_train.out" "$work/ours_train.err")
  measured 600 "$work/ours_inference.out" "$work/ours_inference.err" "$bench_run" \
    --config "$config" run --models "$models" --figures "$inference_figures" --iters "$iters"
  inference=$(figures_json "ours inference" "$work/ours_inference.out" "$work/ours_inference.err")
  [[ $train == *'"status": "ok"'* && $inference == *'"status": "ok"'* ]] || failed=true
  ours_json="{\"status\": \"ran\", \"backend\": $binary_backend, \"train\": $train, \
\"inference\": $inference}"
  ours_seconds=$(since "$ours_start")
fi

# ---------------------------------------------------------------------------------------------
# 3. PyTorch + transformers + peft on the same folders (compare.py's worker)

torch_seconds=0
if ! $torch_wanted; then
  torch_json='{"status": "skipped", "reason": "--no-torch"}'
elif ! import_error=$("$python" -c "import torch, transformers, peft" 2>&1); then
  torch_json="{\"status\": \"skipped\", \"reason\": $(json_string "$python cannot import torch, transformers, peft: $(tail -n 1 <<<"$import_error")")}"
elif $models_ok; then
  torch_device=cpu
  [[ $backend == cuda ]] && torch_device=cuda
  versions=$("$python" -c "import torch, transformers, peft, json; print(json.dumps({'torch': \
torch.__version__, 'transformers': transformers.__version__, 'peft': peft.__version__, \
'cuda': torch.cuda.is_available()}))" 2>&1 | tail -n 1)
  [[ $versions == {* ]] || versions=$(json_string "$versions")
  torch_start=$(now)
  worker=("$python" "$root/tools/bench/compare.py" --torch-worker --models "$models"
    --config "$config" --device "$torch_device" --threads "$(nproc)")
  measured 600 "$work/torch_train.out" "$work/torch_train.err" "${worker[@]}" \
    --figures "$train_figures" --iters "$train_steps"
  train=$(figures_json "PyTorch train_step" "$work/torch_train.out" "$work/torch_train.err")
  measured 600 "$work/torch_inference.out" "$work/torch_inference.err" "${worker[@]}" \
    --figures "$inference_figures" --iters "$iters"
  inference=$(figures_json "PyTorch inference" "$work/torch_inference.out" \
    "$work/torch_inference.err")
  [[ $train == *'"status": "ok"'* && $inference == *'"status": "ok"'* ]] || failed=true
  torch_json="{\"status\": \"ran\", \"device\": \"$torch_device\", \"versions\": $versions, \
\"train\": $train, \"inference\": $inference}"
  torch_seconds=$(since "$torch_start")
fi

# ---------------------------------------------------------------------------------------------
# 4. The report

passed=true
$failed && passed=false
config_json=$(cat "$config" 2>/dev/null)
cat >"$out.tmp" <<EOF
{
  "tool": "tools/gpu/check.sh",
  "format": 1,
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "command": $(json_string "$command_line"),
  "dry_run": $dry_run,
  "passed": $passed,
  "host": $host_json,
  "backend": {"requested": "$backend", "binary": $binary_backend},
  "bin_dir": $(json_string "$bin_dir"),
  "parity": $parity_json,
  "throughput": {
    "models": $(json_string "$models_named"),
    "config": ${config_json:-null},
    "train_steps": $train_steps,
    "iters": $iters,
    "f32": {"ours": $ours_json, "pytorch": $torch_json},
    "bf16": {"status": "not available in this build", "reason": "the models compute in f32 only; half precision is another issue"}
  },
  "seconds": {"parity": $parity_seconds, "models": $models_seconds, "ours": $ours_seconds, "pytorch": $torch_seconds, "total": $(since "$total_start")}
}
EOF
mv "$out.tmp" "$out" || exit 1
echo "check.sh: wrote $out (passed: $passed)" >&2
$passed
