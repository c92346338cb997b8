#!/usr/bin/env bash
# One prepared GPU session (the lent H100/H200): every GPU benchmark in one go, results under $OUT.
# Carry .whl (grad-cam, ttach, torchcam wheels built with `pip wheel --no-deps`); torch/timm are on the machine.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD/src"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
run() { local limit=$1; shift; echo "== $*"; timeout "$limit" python3 "$@" 2>&1 | tail -40; }
run 150 benchmarks/bench_cam.py --device cuda --batch 8 --repeats 20 --peer-repeats 3 --out "$OUT/cam_resnet50.json"
run 120 benchmarks/bench_cam.py --device cuda --model vit_b16 --batch 4 --repeats 20 --peer-repeats 3 --out "$OUT/cam_vitb16.json"
[ -f benchmarks/bench_perturbation.py ] && run 200 benchmarks/bench_perturbation.py --device cuda --out "$OUT/perturbation.json"
[ -f benchmarks/bench_attention.py ] && run 120 benchmarks/bench_attention.py --device cuda --out "$OUT/attention.json"
[ -f benchmarks/bench_train.py ] && run 120 benchmarks/bench_train.py --device cuda --out "$OUT/train.json"
echo done
