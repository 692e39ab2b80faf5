#!/usr/bin/env bash
# From a folder of photos to the file that goes in your app, with the `mobilevit` command alone
# (`pip install git+https://github.com/mobilevit-keras/mobilevit-keras`), in a folder of your
# own, offline. docs/guide.md, "From a folder of photos to your app", explains each step.
#
# Run it in a folder that holds
#   my_photos/<class>/*.jpg    the photos to learn from, one folder per class, any sizes (photos
#                              in a class's subfolders count: my_photos/<class>/more/*.jpg)
#   new_photos/                photos to label, in any layout
# It writes runs/mine/ (the model and its MODEL_CARD.md), reports/mine/ (scores and a card with
# them), predictions.csv and tflite/ (mine_<precision>.tflite, each with its .json).
#
#   HEAD_EPOCHS=1 EPOCHS=2 bash photos_to_phone.sh    # a quick try; default the preset's 3 and 12
#
# After each step it prints "== STEP: exit status N, S s" and stops at a failure (predict's
# status 1, some files unreadable, is not one: they are named and the others labelled).
set -u
HEAD_EPOCHS=${HEAD_EPOCHS:-3}
EPOCHS=${EPOCHS:-12}
SECONDS=0
finished() {  # finished STEP STATUS [ANOTHER_STATUS_THAT_IS_FINE]
  echo "== $1: exit status $2, $SECONDS s"
  SECONDS=0
  if [ "$2" -ne 0 ] && [ "$2" -ne "${3:-0}" ]; then exit "$2"; fi
}

# 1. Fine-tune the CIFAR-10 model on my_photos: the new head alone, then every layer; a fifth
#    of the photos is held out to validate. Writes runs/mine/model.keras and MODEL_CARD.md.
mobilevit train --preset finetune --data-dir my_photos --out runs/mine --head-epochs "$HEAD_EPOCHS" --epochs "$EPOCHS"
finished train $?

# 2. Its scores on the held-out fifth (never trained on), with the model card updated.
mobilevit evaluate --model runs/mine/model.keras --data-dir my_photos --split val --out reports/mine
finished evaluate $?

# 3. Labels for new photos, the top 3 classes of each; a file that cannot be read is named on
#    the way, the others are still labelled, and the exit status is 1.
mobilevit predict --model runs/mine/model.keras new_photos --output predictions.csv
finished predict $? 1

# 4. The app's files: four precisions, int8 calibrated on the photos the model trained on,
#    each file checked against the Keras model and scored on the held-out fifth.
mobilevit export --model runs/mine/model.keras --quantization all --out tflite --eval-data my_photos
finished export $?
