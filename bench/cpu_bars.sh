#!/usr/bin/env bash
# The CPU targets of docs/BENCHMARKS.md, each as a user runs it: the whole command timed by /usr/bin/time.
# Each measured row becomes a file in bench/results/ (bench/new_result.py), rendered by bench/results.py.
#   bash bench/cpu_bars.sh [DATA_DIR] [OUT] [ROWS]   (defaults ../shared/data, runs/cpu-bars, all rows)
# Every row runs in fp32 (--set precision=fp32), again under an AVX2-only emulation of a laptop CPU
# (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2), and, where this CPU has native bf16, with
# precision=auto. ROWS: a regular expression on the row names, e.g. 'cnn' or 'cnn-s0|vit'.
# Run it on a quiet machine: a second busy process on 2 cores slows PyTorch's threads many times over.
# Every row in every mode takes well over an hour on a 2-core CPU (fp32 alone ~60 min: the ViT ~15 for its
# three seeds, AlexNet ~12, VGG16 ~11, the detector ~10, the study ~8-9; the sum of the rows measured in
# docs/BENCHMARKS.md).
set -u
data=${1:-../shared/data}
out=${2:-runs/cpu-bars}
only=${3:-.}
mkdir -p "$out"
flags=$(grep -o 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; flags: $flags"
echo "torch $(python -c 'import torch; print(torch.__version__)'); load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# name, then mnistbench arguments (train or compare)
ROWS=(
  "cnn-s0|train --model cnn --seed 0"
  "cnn-s1|train --model cnn --seed 1"
  "cnn-s2|train --model cnn --seed 2"
  "cnn-long-s0|train --model cnn --set recipe=long --seed 0"
  "cnn-long-s1|train --model cnn --set recipe=long --seed 1"
  "cnn-long-s2|train --model cnn --set recipe=long --seed 2"
  "vit-s0|train --model vit --seed 0"
  "vit-s1|train --model vit --seed 1"
  "vit-s2|train --model vit --seed 2"
  "alexnet-s0|train --model alexnet --set pretrained=false --seed 0"
  "alexnet-s1|train --model alexnet --set pretrained=false --seed 1"
  "alexnet-s2|train --model alexnet --set pretrained=false --seed 2"
  "vgg16|train --model vgg16 --set pretrained=false"
  "frcnn|train --model frcnn"
  "compare-quick|compare"
)

bar() {  # mode (fp32 | avx2 | auto), name, then mnistbench arguments
  local mode=$1 name=$2; shift 2
  local env=() precision=(--set precision=fp32)
  [ "$mode" = avx2 ] && env=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2)
  [ "$mode" = auto ] && precision=()
  local dir="$out/$mode-$name"
  rm -rf "$dir"
  env "${env[@]}" /usr/bin/time -f "%e" -o "$dir.time" \
      mnistbench "$@" --data-dir "$data" --out "$dir" --quiet "${precision[@]}" > "$dir.log" 2>&1
  echo "$mode $name: $(cat "$dir.time") s whole command (load $(cut -d' ' -f1 /proc/loadavg)) | $(tail -n 1 "$dir.log")"
}

modes=(fp32 avx2)
case "$flags" in *avx512_bf16*|*amx_bf16*) modes+=(auto) ;; esac
for mode in "${modes[@]}"; do
  for row in "${ROWS[@]}"; do
    name=${row%%|*}
    [[ $name =~ $only ]] || continue
    [ "$mode" = avx2 ] && [[ ! $name =~ ^cnn-s ]] && continue   # the AVX2 bar is the CNN's
    read -r -a args <<< "${row#*|}"
    bar "$mode" "$name" "${args[@]}"
  done
done
