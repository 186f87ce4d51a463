#!/usr/bin/env bash
# Regenerates the shipped datasets bit for bit (one process; about 15 minutes on one core).
set -euo pipefail
air-interp data generate maze --size 15 --train 1000 --test 1000 --seed 0 --out data/maze-15
air-interp data generate sudoku --tier hard --min-rating 8 --train 1000 --test 1000 --seed 0 --out data/sudoku-hard
