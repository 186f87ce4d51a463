#!/usr/bin/env bash
# Regenerates the shipped datasets bit for bit (one process; about 16 minutes on one core).
# sudoku-easy34 and maze-8-unique are the data of the embedded default checkpoints (checkpoints/*.json);
# the Sudoku defaults were first trained on sudoku-easy50, then fine-tuned on the harder 34-clue tier
# (cells stay open for several ACT steps);
# maze-10, maze-15 and sudoku-hard were tried and dropped (docs/exploration/).
set -euo pipefail
air-interp data generate sudoku --tier easy --clues 50 --train 1000 --test 1000 --seed 0 --overwrite --out data/sudoku-easy50
air-interp data generate sudoku --tier easy --clues 34 --train 1000 --test 1000 --seed 0 --overwrite --out data/sudoku-easy34
air-interp data generate maze --size 8 --unique-path --train 4000 --test 1000 --seed 0 --overwrite --out data/maze-8-unique
air-interp data generate maze --size 10 --train 4000 --test 1000 --seed 0 --overwrite --out data/maze-10
air-interp data generate maze --size 15 --train 1000 --test 1000 --seed 0 --overwrite --out data/maze-15
air-interp data generate sudoku --tier hard --min-rating 8 --train 1000 --test 1000 --seed 0 --overwrite --out data/sudoku-hard
