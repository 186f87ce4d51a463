#!/usr/bin/env bash
# The tables campaign (docs/training.md, "The tables campaign"): every cell of the injection and
# level-token tables, 2 seeds, at the CPU recipe, on one core. Resumable: run it again after any stop.
#   nohup bash checkpoints/sweeps/campaign.sh > runs/campaign.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 TORCHINDUCTOR_COMPILE_THREADS=1
AIR=${AIR:-.venv/bin/air-interp}
RECIPE=(--scale cpu --steps 3000 --no-act-continue --ema 0.999 --dtype float32 --threads 1
        --eval-every 1000 --checkpoint-every 250 --keep 1)
SEEDS=(${SEEDS:-0 1})
# The AIR model and its symmetric control first, so the central pair has its seeds soonest.
$AIR sweep --out checkpoints/sweeps/sudoku --jobs 1 --seeds "${SEEDS[@]}" \
    --presets Lx_H Lx_Hx L_Hx L_H2x L2x_H Lx_H2x L2x_Hx L2x_H2x hrm \
    -- "${RECIPE[@]}" --data data/sudoku-easy50
$AIR sweep --out checkpoints/sweeps/sudoku --jobs 1 --seeds "${SEEDS[@]}" \
    --presets L2x_H2x_token_addition L2x_H2x_token_prepend L2x_H2x_token_prepend_persist \
    -- "${RECIPE[@]}" --data data/sudoku-easy50
$AIR sweep --out checkpoints/sweeps/maze --jobs 1 --seeds "${SEEDS[@]}" \
    --presets Lx_H Lx_Hx L_Hx L_H2x L2x_H Lx_H2x L2x_Hx L2x_H2x hrm \
    -- "${RECIPE[@]}" --data data/maze-8-unique --lr-warmup-steps 100
