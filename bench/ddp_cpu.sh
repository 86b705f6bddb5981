#!/usr/bin/env bash
# One run on one process against the same run on two torchrun processes (DDP, gloo), on this machine's CPU:
# `mnistbench train --model cnn --device cpu`, each command timed whole by /usr/bin/time.
#   bash bench/ddp_cpu.sh [DATA_DIR] [OUT] [MNISTBENCH ARGS...]   (defaults ../shared/data and runs/ddp-cpu)
# e.g. `bash bench/ddp_cpu.sh ../shared/data runs/ddp-cpu --set precision=fp32`: precision=auto times fp32
# against bf16 on a bf16 CPU in each command, and a busy machine can make the two commands choose differently.
# Run it on a quiet machine. The single process uses one thread per physical core; torchrun gives each of its
# processes OMP_NUM_THREADS=1 unless it is set (export OMP_NUM_THREADS=<cores / 2> to give each rank half).
# On 2 cores no speed-up is expected: the ranks share the cores the single process already used, and add
# an all-reduce of the gradients per step; what it shows is the cost of that synchronisation and that the
# accuracy is the same.
set -u
data=${1:-../shared/data}
out=${2:-runs/ddp-cpu}
shift $(( $# < 2 ? $# : 2 ))
extra=("$@")
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MNISTBENCH_BIN:-$here/.venv/bin}
mkdir -p "$out"

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "logical CPUs: $(nproc); physical cores: $("$bin/python" -c 'from mnistbench.device import physical_cores; print(physical_cores())')"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | tr '\n' ' ')"
echo "OMP_NUM_THREADS: ${OMP_NUM_THREADS:-unset}; torch $("$bin/python" -c 'import torch; print(torch.__version__)')"

summary() {  # run folder -> the numbers that matter, from its summary.json
    "$bin/python" - "$1" <<'EOF'
import json, sys
s = json.load(open(f"{sys.argv[1]}/summary.json"))
print(f"test accuracy {100 * s['test_accuracy']:.2f} %, train_seconds {s['train_seconds']:.1f}, "
      f"wall_seconds {s['wall_seconds']:.1f}, {s['train_images_per_second']:.0f} images/s, precision {s['precision']}, "
      f"device {s['device']}")
EOF
}

run() {  # name, then the command
    local name=$1; shift
    rm -rf "${out:?}/$name"
    /usr/bin/time -f "%e" -o "$out/$name.time" "$@" --data-dir "$data" --out "$out/$name" --quiet "${extra[@]}" \
        > "$out/$name.log" 2>&1 || { echo "$name: failed, see $out/$name.log"; tail -n 5 "$out/$name.log"; return; }
    echo "$name: $(cat "$out/$name.time") s wall for the whole command | $(summary "$out/$name")"
}

run one-process "$bin/mnistbench" train --model cnn --device cpu
run torchrun-2 "$bin/torchrun" --standalone --nproc_per_node 2 -m mnistbench train --model cnn --device cpu
