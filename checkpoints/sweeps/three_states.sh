#!/usr/bin/env bash
# Beyond the paper, three roles? (REPRODUCTION.md): the three-state models at the tables campaign's
# CPU recipe, on one core, with a model kept every 500 steps for `air-interp emergence`. Seed 0 of
# the asymmetric model and its symmetric control first, then seed 1, then the level-token model.
# Resumable: run it again after any stop.
#   nohup bash checkpoints/sweeps/three_states.sh > runs/three_states.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
AIR=${AIR:-.venv/bin/air-interp}
RECIPE=(--scale cpu --steps 3000 --no-act-continue --ema 0.999 --dtype float32 --threads 1
        --eval-every 1000 --checkpoint-every 250 --keep 1 --keep-models-every 500 --data data/sudoku-easy50)
for seed in 0 1; do
    $AIR sweep --out checkpoints/sweeps/three_states --jobs 1 --seeds "$seed" --presets L2x_Mx_H Lx_Mx_Hx \
        -- "${RECIPE[@]}"
done
$AIR sweep --out checkpoints/sweeps/three_states --jobs 1 --seeds 0 1 --presets Lx_Mx_Hx_token_prepend \
    -- "${RECIPE[@]}"
