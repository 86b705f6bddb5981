#!/usr/bin/env bash
# The CPU bars of docs/BENCHMARKS.md, each as a user runs it: the whole command timed by /usr/bin/time.
#   bash bench/cpu_bars.sh [DATA_DIR] [OUT]     (defaults ../shared/data and runs/cpu-bars)
# Run it on a quiet machine: a second busy process on 2 cores slows PyTorch's threads many times over.
set -u
data=${1:-../shared/data}
out=${2:-runs/cpu-bars}
mkdir -p "$out"
bar() {  # name, then mnistbench arguments
    local name=$1; shift
    /usr/bin/time -f "$name: %e s wall for the whole command" -o "$out/$name.time" \
        mnistbench "$@" --quiet > "$out/$name.log" 2>&1
    echo "$(cat "$out/$name.time") | $(tail -n 1 "$out/$name.log")"
}
bar cnn-seed0     train --model cnn --data-dir "$data" --out "$out/cnn-seed0" --seed 0
bar cnn-seed1     train --model cnn --data-dir "$data" --out "$out/cnn-seed1" --seed 1
bar cnn-seed2     train --model cnn --data-dir "$data" --out "$out/cnn-seed2" --seed 2
bar cnn-long      train --model cnn --data-dir "$data" --out "$out/cnn-long" --set recipe=long
bar vit           train --model vit --data-dir "$data" --out "$out/vit"
bar alexnet       train --model alexnet --data-dir "$data" --out "$out/alexnet" --set pretrained=false
bar vgg16-12800   train --model vgg16 --data-dir "$data" --out "$out/vgg16-12800" --set pretrained=false \
                  --set train_limit=12800
bar frcnn         train --model frcnn --data-dir "$data" --out "$out/frcnn"
bar compare-quick compare --data-dir "$data" --out "$out/compare-quick"
