#!/usr/bin/env bash
# The GPU checks behind bench/RESULTS.md, in one run on a CUDA machine:
#   1. tests/test_cuda.py (GPU paths against CPU / stock ones),
#   2. each bench at the real setup's sizes (ViT-B/16 at 320, SAM ViT-H at 1024, random weights),
#   3. the embedded default's masks → train → train_official → evaluate on the GPU, from the
#      tiny CLIP in data/models/tinyclip (pretrain's output), in a temporary folder (the repo's
#      data/ is not touched); eval.json and the runs' summaries and log land in OUT_DIR.
# Usage: bench/gpu.sh OUT_DIR [extra --set KEY=VALUE for step 3]; a log per step in OUT_DIR.
# STEPS="tests default" bench/gpu.sh OUT_DIR runs only the steps named (tests, train_step,
# masks, sam2, loader_train, evaluate, options, refine, default).
set -uo pipefail
out=${1:?usage: bench/gpu.sh OUT_DIR [--set KEY=VALUE ...]}
shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
steps=" ${STEPS:-tests train_step masks sam2 loader_train evaluate options refine default} "

step() {  # step NAME SECONDS CMD...: run with a time limit, log to OUT_DIR/NAME.log
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  [[ $steps == *" $name "* ]] || return 0
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "== $name: rc ${PIPESTATUS[0]}, $((SECONDS - start)) s" | tee -a "$out/$name.log"
}

default_on_gpu() {  # the embedded default's stages after pretrain, on the GPU
  # in a scratch folder with params.yaml's own relative paths, the tiny CLIP linked in
  local repo=$PWD work stage start python
  python="$(cd "$(dirname "$(command -v "$py")")" && pwd)/$(basename "$py")"
  work=$(mktemp -d)
  mkdir -p "$work/data/models"
  ln -s "$repo/data/models/tinyclip" "$work/data/models/tinyclip"
  # no dvclive curves, so the GPU box needs neither dvc nor dvclive
  local sets=(--set train.device=cuda --set evaluate.device=cuda --set train.live= "$@")
  cd "$work" || return
  for stage in synth masks train train_official evaluate; do
    start=$SECONDS
    case $stage in
      synth) "$python" "$repo/cli.py" synth "${sets[@]}" --web 0 ;;
      train_official) "$python" "$repo/cli.py" train --official "${sets[@]}" ;;
      *) "$python" "$repo/cli.py" "$stage" "${sets[@]}" ;;
    esac || return
    echo "-- $stage: $((SECONDS - start)) s"
  done
  cp metrics/eval.json "$out/eval.json"
  cp data/models/pixelclip/summary.json "$out/train_summary.json"
  cp data/models/pixelclip/log.jsonl "$out/train_log.jsonl"
  cp data/models/pixelclip_official/summary.json "$out/train_official_summary.json"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.log"
"$py" -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip',
open_clip.__version__)" | tee -a "$out/gpu.log"
step tests 180 "$py" -m pytest -q tests/test_cuda.py
step train_step 180 "$py" bench/train_step.py --model ViT-B-16 --resolution 320 \
  --mask-resolution 256 --batch 48 --prompts 64 --masks 100 --head-widths 64 64 32 \
  --precision bf16 --device cuda --steps 10 --pool-repeats 3
step masks 240 "$py" bench/masks.py --device cuda --sam-model vit_h --points-per-side 32 \
  --dino-model vit_base_patch8_224.dino --size 1024 --images 3
step sam2 300 "$py" bench/masks.py --device cuda --generators sam2 --sam2-model hiera_l \
  --points-per-side 32 --size 1024 --images 3
loader_train() {  # the real setup's train step with its real loader, on this box's cores
  local work
  work=$(mktemp -d)
  "$py" bench/loader.py --samples 192 --write-shards "$work/shards" || return
  "$py" cli.py train --params params/real.yaml --set "train.shards=$work/shards" \
    --set "train.out=$work/run" --set train.clip_pretrained= --set train.steps=40 \
    --set "train.num_workers=$(( $(nproc) - 2 ))" --set train.live= --set train.log_every=5
  tail -n 3 "$work/run/log.jsonl"
}
export -f loader_train
step loader_train 420 bash -c loader_train
step evaluate 120 "$py" bench/evaluate.py --model ViT-B-16 --resolution 320 --device cuda \
  --image-size 512 --images 256 --batch-size 16
step options 180 "$py" bench/evaluate.py --options --model ViT-B-16-quickgelu --resolution 320 \
  --device cuda --image-size 512 --images 64 --batch-size 16 --masks 100
step refine 300 "$py" bench/refine.py --device cuda
export -f default_on_gpu
export out py
step default 300 bash -c 'default_on_gpu "$@"' _ "$@"
