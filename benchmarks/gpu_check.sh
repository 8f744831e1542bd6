#!/usr/bin/env bash
# For the owner of a CUDA GPU: everything npgen claims about cupy, checked and measured in one go.
#   1. the whole test suite, which on a GPU runs every device test on the real cupy (not its double);
#   2. one short epoch of each example with --backend cupy;
#   3. benchmarks/run.py, whose numpy-vs-cupy tables are appended to benchmarks/RESULTS.md.
# Needs: pip install -e ".[gpu,test]" (and torch for the PyTorch rows). Outputs go to runs/gpu_check/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/gpu_check

python -c "import npgen; npgen.use_backend('cupy'); print('cupy backend:', npgen.backend.get_backend().xp.__version__)"
python -m pytest
python examples/mnist_classifier.py --backend cupy --epochs 1 --out "$out/classifier"
python examples/vae.py --backend cupy --epochs 1 --iw-samples 10 --out "$out/vae"
python examples/gan.py --backend cupy --epochs 1 --n-eval 1000 --out "$out/gan"
python examples/flow.py --backend cupy --epochs 1 --out "$out/flow"
python benchmarks/run.py "$@"
echo "all checks passed; the tables are at the end of benchmarks/RESULTS.md, the runs in $out/"
