#!/usr/bin/env bash
# Train the ensemble that ships with fakelens and evaluate it on held-out forgeries — one command:
#
#   scripts/train_default.sh POOL OUT
#
# POOL: the real-photo pool (`fakelens data build-pool POOL`); OUT: run folder. Members: effnet-lite0 (ImageNet
# initialised) and $VIT (default vit-tiny-reg4-npr: ViT-Ti with registers on a trainable ImageNet Lite0 stem that
# reads NPR pixel residuals; VIT=vit-tiny-reg4-hybrid trains the second shipped ensemble's ViT, on the frozen stem
# and RGB; VIT=vit-tiny-reg4 the from-scratch ViT of the first), each trained on on-the-fly
# forgeries of every recipe made from the pool's train split (people and photos never cross splits), with the
# auxiliary blend-mask loss. The ensemble (float16 weights, log-odds mean; member weights and threshold fitted
# on the validation photos: `fakelens ensemble --fit-on`) lands in OUT/ensemble; test-split metrics per recipe
# for it and each member in OUT/eval/metrics.json.
#
# Environment: DEVICE (auto), WORKERS (data processes per member; default: CPUs / 2 - 1), EPOCHS (5),
# VIT_EPOCHS (8), PAIRS (forgery pairs per epoch, 16384), BATCH (128), TIME_LIMIT (minutes per member; unset:
# none), FIT_PAIRS (512), TEST_PAIRS (1536), VIT (vit-tiny-reg4-npr), VIT_LR (5e-4), FAKELENS (the command; default `fakelens`).
# On a GPU the two members train at the same time.
set -euo pipefail
POOL=${1:?usage: scripts/train_default.sh POOL OUT}
OUT=${2:?usage: scripts/train_default.sh POOL OUT}
read -r -a FL <<<"${FAKELENS:-fakelens}"
DEVICE=${DEVICE:-auto}
CPUS=$(nproc)
WORKERS=${WORKERS:-$(( CPUS / 2 > 1 ? CPUS / 2 - 1 : 1 ))}
mkdir -p "$OUT"

common=(--forgeries "$POOL" --pairs-per-epoch "${PAIRS:-16384}" --val-pairs 512
        --batch-size "${BATCH:-128}" --augment forensic --fit native --input-size 256 --forgery-size 256
        --aux-mask --patience 0 --seed 0
        --workers "$WORKERS" --device "$DEVICE")
[ -n "${TIME_LIMIT:-}" ] && common+=(--time-limit "$TIME_LIMIT")

CNN=effnet-lite0
VIT=${VIT:-vit-tiny-reg4-npr}
VIT_LR=${VIT_LR:-5e-4}
member() {  # name lr epochs
  "${FL[@]}" train "${common[@]}" --model "$1" --lr "$2" --epochs "$3" --out "$OUT/$1" >"$OUT/$1.log" 2>&1
}
gpu=$(python3 -c "import torch; print(int(torch.cuda.is_available() and '$DEVICE' != 'cpu'))")
if [ "$gpu" = 1 ]; then
  member $CNN 5e-4 "${EPOCHS:-5}" & a=$!
  member "$VIT" "$VIT_LR" "${VIT_EPOCHS:-8}" & b=$!
  wait $a && wait $b || { tail -5 "$OUT"/*.log; exit 1; }
else
  member $CNN 5e-4 "${EPOCHS:-5}" && member "$VIT" "$VIT_LR" "${VIT_EPOCHS:-8}" || { tail -5 "$OUT"/*.log; exit 1; }
fi
tail -n 2 "$OUT/$CNN.log" "$OUT/$VIT.log"

rm -rf "$OUT/ensemble"
"${FL[@]}" ensemble "$OUT/$CNN/best" "$OUT/$VIT/best" --out "$OUT/ensemble" --rule logit_mean --half \
  --fit-on "$POOL" --fit-pairs "${FIT_PAIRS:-512}" --device "$DEVICE" --workers "$WORKERS"
"${FL[@]}" evaluate --model "$OUT/ensemble" --forgeries "$POOL" --split test --pairs "${TEST_PAIRS:-1536}" \
  --batch-size 128 --workers "$WORKERS" --device "$DEVICE" --out "$OUT/eval" --json >"$OUT/eval.json"
python3 - "$OUT" <<'PY'
import json, sys
r = json.load(open(f"{sys.argv[1]}/eval/metrics.json"))
rows = [("ensemble", r["overall"], r["per_recipe"])]
rows += [(n, m, m["per_recipe"]) for n, m in r.get("members", {}).items()]
for name, overall, per in rows:
    print(f"{name:>16}  AUC {overall['auc']:.4f}  " + "  ".join(f"{k} {v['auc']:.3f}" for k, v in per.items()))
PY
