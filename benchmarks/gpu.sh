#!/usr/bin/env bash
# The speed set on a CUDA GPU, in one go (bf16-mixed): tokens/s and % of the GPU's measured bf16 matmul peak for a
# default epoch, with and without fused AdamW, and the linear-probe sweep with and without the token-state cache.
# Results: benchmarks/gpu.json. Every test still runs without a GPU; this script is for a machine that has one.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
python - <<'PY'
import subprocess, sys, json
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench import run_commands
run_commands([["profile"], ["epoch", "poolbench", "--precision", "bf16-mixed", "--fused"],
              ["epoch", "poolbench", "--precision", "bf16-mixed", "--no-fused"],
              ["frozen", "--cache"], ["frozen", "--no-cache"]], Path("benchmarks/gpu.json"))
PY
