"""The smoke preset: the numbers every entry point's `--smoke-test` shares, so a seconds-long run of
any command trains and scores the same kind of tiny model (the tests run these)."""

from __future__ import annotations

WIDTH_SCALE = 0.125  # 1/8 of every seed layer width
EPOCHS = 2
TRAIN_IMAGES = 512  # a single run's training images (study.train, study.reproduce, study.featurenet x 4)
STUDY_TRAIN_IMAGES = 2_000  # a search's: ASHA needs trials that differ, which 512 images do not give
BATCH_SIZE = 64
EVAL_SAMPLES = 256  # generated images per FID/KID/IS/PRDC
STUDY_EVAL_SAMPLES = 500
IW_IMAGES = 200  # binarized test images behind a VAE's NLL
IW_K = 5  # importance samples per image
REFERENCE_IMAGES = 1_000  # real images per reference floor (study.evaluate --reference)
INCEPTION_SAMPLES = 8
KID_SUBSETS = 10
