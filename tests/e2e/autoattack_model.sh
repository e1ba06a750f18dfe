#!/usr/bin/env bash
# Fixture (aa_model) for the AutoAttack e2e tests: a normally trained (standard, clean CE)
# SmallCNN on a Fashion-MNIST subset, plus two gradient-masking variants of it made by
# tests/aa/mask_ckpt.py: "prob" (constant probability outputs, zero input gradient) and
# "scale" (logits x 1e4: the cross-entropy gradient underflows to 0, Square still works).
source "$(dirname "$0")/lib.sh"
"$ADVLAB" train "$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini" \
  --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set run.name=std \
  --set train.method=standard --set data.n_train=${AL_AA_N_TRAIN:-2500} --set data.n_test=200 \
  --set train.epochs=2 --set data.batch_size=32 --set train.lr=0.02 \
  --set train.lr_schedule=constant --set eval.steps=1 --set run.threads=1
cp runs/std/checkpoint.h5 std.h5
"$PY" "$SRC/tests/aa/mask_ckpt.py" std.h5 prob.h5 prob
"$PY" "$SRC/tests/aa/mask_ckpt.py" std.h5 scale.h5 scale
echo "e2e autoattack_model: ok"
