#!/usr/bin/env bash
# Puts in .whl/ (ignored by git) the Python wheels the GPU machine lacks and the build and tests
# use there: tensorboard (the event files' message definitions at build time; test_tensorboard.py
# reads the files back) and what it imports; nvidia-nvjpeg (GPU JPEG decoding, 3 MB: header and
# library, which bench/device_run.sh hands to the build as NVJPEG_ROOT). bench/device_run.sh installs them on that machine
# into /tmp/site (PYTHONPATH). Name .whl in the device call's carry list (with .deps and .device).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# The GPU machine: Ubuntu 24.04, python 3.12, x86-64; numpy and pillow come with its torch.
pip download -q -d .whl --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  tensorboard tensorboard-data-server protobuf absl-py markdown werkzeug markupsafe six grpcio nvidia-nvjpeg==13.0.4.44
du -sh .whl
