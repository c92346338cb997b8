#!/usr/bin/env bash
# Train the ensemble that ships with fakelens and evaluate it on held-out forgeries — one command:
#
#   scripts/train_default.sh POOL OUT
#
# POOL: the real-photo pool (`fakelens data build-pool POOL`); OUT: run folder. Members: effnet-lite0 (ImageNet
# initialised) and $VIT (default vit-tiny-reg4, from scratch: the shipped member; VIT=vit-tiny-reg4-hybrid puts
# the ViT on the frozen ImageNet Lite0 stem), each trained on on-the-fly forgeries of every recipe made from
# the pool's train split (people and photos never cross splits), with the auxiliary blend-mask loss. The
# ensemble (float16 weights, log-odds mean weighted by each member's validation AUC margin over chance) lands in
# OUT/ensemble; test-split metrics per recipe for it and each member in OUT/eval/metrics.json.
#
# Environment: DEVICE (auto), WORKERS (data processes per member; default: CPUs / 2 - 1), EPOCHS (5),
# PAIRS (forgery pairs per epoch, 16384), BATCH (128), TIME_LIMIT (minutes per member; unset: none), TEST_PAIRS (1536),
# VIT (the transformer member, vit-tiny-reg4), VIT_LR (5e-4), FAKELENS (the command; default `fakelens`).
# On a GPU the two members train at the same time.
set -euo pipefail
POOL=${1:?usage: scripts/train_default.sh POOL OUT}
OUT=${2:?usage: scripts/train_default.sh POOL OUT}
read -r -a FL <<<"${FAKELENS:-fakelens}"
DEVICE=${DEVICE:-auto}
CPUS=$(nproc)
WORKERS=${WORKERS:-$(( CPUS / 2 > 1 ? CPUS / 2 - 1 : 1 ))}
mkdir -p "$OUT"

common=(--forgeries "$POOL" --epochs "${EPOCHS:-5}" --pairs-per-epoch "${PAIRS:-16384}" --val-pairs 512
        --batch-size "${BATCH:-128}" --augment forensic --input-size 256 --forgery-size 256
        --aux-mask --patience 0 --seed 0
        --workers "$WORKERS" --device "$DEVICE")
[ -n "${TIME_LIMIT:-}" ] && common+=(--time-limit "$TIME_LIMIT")

CNN=effnet-lite0
VIT=${VIT:-vit-tiny-reg4}
VIT_LR=${VIT_LR:-5e-4}
member() {  # name lr
  "${FL[@]}" train "${common[@]}" --model "$1" --lr "$2" --out "$OUT/$1" >"$OUT/$1.log" 2>&1
}
gpu=$(python3 -c "import torch; print(int(torch.cuda.is_available() and '$DEVICE' != 'cpu'))")
if [ "$gpu" = 1 ]; then
  member $CNN 5e-4 & a=$!
  member "$VIT" "$VIT_LR" & b=$!
  wait $a && wait $b || { tail -5 "$OUT"/*.log; exit 1; }
else
  member $CNN 5e-4 && member "$VIT" "$VIT_LR" || { tail -5 "$OUT"/*.log; exit 1; }
fi
tail -n 2 "$OUT/$CNN.log" "$OUT/$VIT.log"

# weights: each member's best validation AUC margin over chance
W=$(python3 - "$OUT" "$CNN" "$VIT" <<'PY'
import json, sys
out = sys.argv[1]
m = [json.load(open(f"{out}/{n}/best/config.json"))["metrics"]["val"]["auc"] for n in sys.argv[2:]]
print(",".join(f"{max(a - 0.5, 0.01):.4f}" for a in m))
PY
)
rm -rf "$OUT/ensemble"
"${FL[@]}" ensemble "$OUT/$CNN/best" "$OUT/$VIT/best" --out "$OUT/ensemble" \
  --rule logit_mean --weights "$W" --half
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
