#!/usr/bin/env bash
# DALI for bench/dali_bench.py on the GPU machine (issue 15), which has no package registry. Its
# wheels (nvidia-dali-cuda130 and the ones it needs that the machine lacks) come to about 260 MB,
# more than one device call carries (64 MiB), so they travel in parts, one part a call, to a
# machine kept warm between calls (ignored folders already there stay):
#   here:           bash bench/dali_parts.sh fetch      # .dali/p1 ... .dali/pN, each under 60 MiB
#   device, call k: carry [".dali/pk"], any short command (`ls .dali`), the calls back to back
#   device, last:   bash bench/dali_parts.sh install    # checks the parts, installs into /tmp/site-dali
# then: PYTHONPATH=/tmp/site-dali:/tmp/site python3 bench/dali_bench.py --folder ... (nvJPEG comes
# from .whl, bench/fetch_device_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  fetch)
    wheels=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$wheels" \
      nvidia-dali-cuda130==2.4.0 nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-libnvcomp-cu13==5.3.0.16 libcst==1.9.0 \
      optree==0.20.0 nvtx==0.2.17 makefun==1.16.0 astunparse==1.6.3 gast==0.7.0
    rm -rf .dali
    mkdir -p .dali
    tar cf .dali/all.tar -C "$wheels" .
    (cd .dali && sha256sum all.tar > SHA256 && split -b 60M -d -a 1 all.tar part- && rm all.tar)
    i=1
    for part in .dali/part-*; do
      mkdir -p ".dali/p$i"
      mv "$part" ".dali/p$i/"
      i=$((i + 1))
    done
    mv .dali/SHA256 .dali/p1/
    rm -rf "$wheels"
    du -sh .dali/p*
    echo "carry each of: $(cd .dali && ls -d p* | sed 's|^|.dali/|' | tr '\n' ' ')(one a call)" ;;
  install)
    [ -f .dali/p1/SHA256 ] || { echo ".dali/p1/SHA256 missing: carry .dali/p1 first"; exit 1; }
    work=$(mktemp -d)
    cat .dali/p*/part-* > "$work/all.tar"
    (cd "$work" && sha256sum -c "$OLDPWD/.dali/p1/SHA256" --status) ||
      { echo "the parts in .dali do not add up to the fetched archive (a part missing?): $(ls .dali)"; exit 1; }
    tar xf "$work/all.tar" -C "$work"
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site-dali "$work"/*.whl
    rm -rf "$work"
    echo "DALI installed in /tmp/site-dali" ;;
  *)
    echo "usage: bench/dali_parts.sh fetch|install" >&2
    exit 2 ;;
esac
