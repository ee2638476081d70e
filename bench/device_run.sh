#!/usr/bin/env bash
# One call on the GPU machine: build, run the whole test suite (CUDA parity included), and the
# side-by-side benchmark against the Python peer. Logs go to $OUT (or ./device-out).
# Expects .deps/ (../shared/tools/device-deps.sh libgtest-dev libgmock-dev libgloo-dev
# protobuf-compiler libprotoc32, cudnn-frontend's headers in .deps/usr/include), .whl/
# (bench/fetch_device_wheels.sh) and
# .device/peer_bench.py carried along (and .device/cifar-10-jpeg.tar.xz for the decode timing).
# SKIP_PEER=1 leaves out the side-by-side model benchmark; TESTS=REGEX runs only the matching
# tests (TESTS=none: no tests); TARGETS="resnet fused_conv_probe" builds only those; ROWS="graph-32 bf16-256" picks rows of compare_peer.py.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
export CPATH=$PWD/.deps/usr/include/x86_64-linux-gnu
export LD_LIBRARY_PATH=$PWD/.deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Python wheels the machine lacks (bench/fetch_device_wheels.sh: tensorboard), if carried in .whl/
if ls .whl/*.whl > /dev/null 2>&1; then
  pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl > "$out/wheels.log" 2>&1 || tail -5 "$out/wheels.log"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
nvjpeg=()  # nvJPEG from the carried wheel (bench/fetch_device_wheels.sh)
[ -f /tmp/site/nvidia/cu13/include/nvjpeg.h ] && nvjpeg=(-DNVJPEG_ROOT=/tmp/site/nvidia/cu13)
# (no precompiled header: on 16 cores its one serial step would lengthen a build measured at 75-81 s)
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESNET_PCH=OFF "${nvjpeg[@]}" \
  -DCMAKE_PREFIX_PATH="$PWD/.deps/usr;$torch_prefix" > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
grep -A7 'resnet.cpp configuration' "$out/configure.log"
targets=(); for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build-device -j"$(nproc)" "${targets[@]}" > "$out/build.log" 2>&1 || { grep -B2 -A10 error "$out/build.log" | head -60; exit 1; }
if [ "${TESTS:-}" != none ]; then
  ctest --test-dir build-device --output-on-failure -j8 ${TESTS:+-R "$TESTS"} > "$out/ctest.log" 2>&1
  echo "ctest exit code: $?"
  grep -E 'tests passed|Skipped|Failed|\*\*\*' "$out/ctest.log" | head -30
fi
[ "${SKIP_DATA:-0}" = 1 ] || build-device/data_bench transform --device cuda --batch-size 256 --image-size 224 | tee "$out/data_bench.jsonl"
[ "${SKIP_PEER:-0}" = 1 ] && exit 0
python3 bench/compare_peer.py --resnet build-device/resnet --peer .device/peer_bench.py \
  ${ROWS:+--rows $ROWS} --log "$out/bench.jsonl" "$@"
