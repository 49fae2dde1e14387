#!/usr/bin/env bash
# Rebuild the shipped default model (saved_models/mobilefacenet/) from ../shared/data on CPU.
# Every step resumes: re-running the script continues where a killed run stopped.
#   WORK=/work bash scripts/train_default_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
WORK=${WORK:-/work}
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-6}      # stage 1: from scratch
EPOCHS2=${EPOCHS2:-26}   # stage 2: a second cosine cycle from stage 1's model
EPOCHS3=${EPOCHS3:-22}   # stage 3: function matching with the teacher model on the fly
RUN=$WORK/runs/mfn_relu_distill$EPOCHS
RUN2=$WORK/runs/mfn_relu_ft$EPOCHS2
RUN3=$WORK/runs/mfn_relu_fm$EPOCHS3
TEACHER=saved_models/dlib_resnet/dlib_resnet_int8.tflite

# 1. Align CelebA and UTKFace with the TensorFlow-free TFLite MTCNN (faces are centred).
for set in celeba utkface; do
  $PY -m tfface.cli.align "$DATA/$set" "$WORK/aligned/$set" --detector tflite --policy central
done
# 2. Training view: crops with teacher rows; every 5th CelebA identity held out for calibration.
$PY -m training.prepare_distill --aligned "$WORK/aligned" \
  --teacher "$DATA/teacher/celeba.npz" "$DATA/teacher/utkface.npz" --out "$WORK/distill_data"
# 3. Distil dlib's embeddings into MobileFaceNet (ReLU: full-int8 PReLU is 7x slower in TFLite).
$PY -m training.distill --data "$WORK/distill_data" \
  --teacher "$WORK/distill_data/teacher_celeba.npz" "$WORK/distill_data/teacher_utkface.npz" \
  --out "$RUN" --backbone mobilefacenet --backbone-options activation=relu \
  --embedding-size 128 --batch-size 64 --epochs "$EPOCHS" --optimizer adamw --lr 0.002 \
  --weight-decay 0.0001 --lr-schedule cosine --warmup-epochs 0.5 --checkpoint-every 50 \
  --cache --no-progress --seed 1234
# 3b. A second, longer cosine cycle at half the peak LR, starting from stage 1's model
#     (the loss was still falling when stage 1's schedule ended).
$PY -m training.distill --data "$WORK/distill_data" \
  --teacher "$WORK/distill_data/teacher_celeba.npz" "$WORK/distill_data/teacher_utkface.npz" \
  --out "$RUN2" --backbone mobilefacenet --backbone-options activation=relu \
  --embedding-size 128 --batch-size 64 --epochs "$EPOCHS2" --optimizer adamw --lr 0.001 \
  --weight-decay 0.0001 --lr-schedule cosine --warmup-epochs 0.3 --checkpoint-every 50 \
  --cache --no-progress --seed 4321 --init-weights "$RUN/embedding.keras"
# 3c. Function matching (Beyer et al. 2022): the imported dlib model embeds every augmented
#     crop on the fly (rotation/scale/shift, colour, grey, blur; half of each batch blended
#     with mixup), so the student matches the teacher on far more than 8,865 fixed images.
#     The training folder holds the training crops only (no holdout identities).
mkdir -p "$WORK/otf_data"
ln -sfn "$WORK/distill_data/celeba" "$WORK/otf_data/celeba"
ln -sfn "$WORK/distill_data/utkface" "$WORK/otf_data/utkface"
$PY -m training.distill --data "$WORK/otf_data" --teacher-model "$TEACHER" \
  --out "$RUN3" --backbone mobilefacenet --backbone-options activation=relu \
  --embedding-size 128 --batch-size 64 --epochs "$EPOCHS3" --optimizer adamw --lr 0.0007 \
  --weight-decay 0.0001 --lr-schedule cosine --warmup-epochs 0.2 --checkpoint-every 50 \
  --augmentation strong --mixup 1.0 --mixup-prob 0.5 --cache --no-progress --seed 2026 \
  --init-weights "$RUN2/embedding.keras" \
  --pairs "$WORK/distill_data/holdout_pairs.csv" --pairs-images "$WORK/distill_data/holdout"
# 4. Export float32/float16/dynamic/int8, calibrate the threshold on held-out CelebA pairs,
#    and measure the accuracy delta of each variant on LFW.
mkdir -p saved_models/mobilefacenet
cp "$RUN3/embedding.keras" saved_models/mobilefacenet/mobilefacenet.keras
cp "$RUN3/embedding.json" saved_models/mobilefacenet/mobilefacenet.json
$PY -m tfface.export.cli saved_models/mobilefacenet/mobilefacenet.keras \
  --out saved_models/mobilefacenet --variants float16,int8 \
  --representative "$WORK/distill_data/celeba" --num-representative 500 \
  --calib-pairs "$WORK/distill_data/holdout_pairs.csv" --calib-images "$WORK/distill_data/holdout" --calib-aligned \
  --pairs "$DATA/lfw/pairs.txt" --images "$DATA/lfw/images" --cache "$WORK/lfw_cache" \
  --detector tflite
