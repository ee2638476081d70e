#!/usr/bin/env bash
# The quick start on a machine without the CUDA toolkit. Clones this repository (its committed
# HEAD) into a temporary folder and runs the README's first quick-start command there, as written,
# with the toolkit hidden: in a private mount namespace, every CUDA toolkit folder found
# (/usr/local/cuda*, /opt/cuda*, $CUDA_HOME) is covered by an empty one, and nvcc and the other
# wrappers on PATH by an empty file; CUDA_HOME, CUDA_PATH, CUDACXX and LIBRARY_PATH are unset.
# Then checks that the build took PyPI's nvcc (CUDA: ON), that it compiles a CUDA kernel, and that
# the run trained and predicted.
#
#   tests/fresh_machine.sh [--cold] [--keep]
#     --cold  use an empty ccache (the time of a really fresh machine)
#     --keep  keep the clone (its path is printed)
# Exit status 77 (CTest: skipped) where no mount namespace can be made (unprivileged containers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cold=0 keep=0
for a in "$@"; do
  case "$a" in --cold) cold=1 ;; --keep) keep=1 ;; *) echo "usage: $0 [--cold] [--keep]" >&2; exit 2 ;; esac
done

if [ -z "${RESNET_FRESH_NS:-}" ]; then
  ns=(unshare -m)
  [ "$(id -u)" -eq 0 ] || ns=(unshare -r -m)  # a user namespace where user namespaces are allowed
  if ! "${ns[@]}" true 2>/dev/null; then
    echo "fresh_machine: cannot make a mount namespace here (${ns[*]}); skipped" >&2
    exit 77
  fi
  RESNET_FRESH_NS=1 exec "${ns[@]}" "$0" "$@"
fi

# --- hide the toolkit ------------------------------------------------------------------------------
mount --make-rprivate / 2>/dev/null || true
tmp=$(mktemp -d /tmp/fresh-machine.XXXXXX)
mkdir "$tmp/empty"
: >"$tmp/blank"  # not executable: find_program and `command -v` pass over it
mounted=()  # undone before the clean-up: a file that is mounted somewhere cannot be removed
for d in /usr/local/cuda /usr/local/cuda-* /opt/cuda* ${CUDA_HOME:-} ${CUDA_PATH:-}; do
  [ -d "$d" ] || continue
  d=$(readlink -f "$d")
  grep -q " $d " /proc/self/mountinfo 2>/dev/null && continue  # covered already
  mount --bind "$tmp/empty" "$d" && mounted+=("$d")
done
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}" /usr/local/bin; do
  for tool in nvcc ptxas nvlink fatbinary cudafe++ cicc; do
    [ -f "$dir/$tool" ] && mount --bind "$tmp/blank" "$dir/$tool" && mounted+=("$dir/$tool")
  done
done
unset CUDA_HOME CUDA_PATH CUDACXX LIBRARY_PATH
PATH=$(tr : '\n' <<<"$PATH" | grep -v -i cuda | paste -sd:)
export PATH
# (bash's `command -v` names a file that is not executable when it finds nothing better)
if [ -x "$(command -v nvcc)" ] || [ -e /usr/local/cuda/bin/nvcc ]; then
  echo "fresh_machine: could not hide nvcc ($(command -v nvcc) /usr/local/cuda/bin/nvcc)" >&2
  exit 1
fi
if [ $cold = 1 ]; then export CCACHE_DIR=$tmp/ccache; fi
unmount_all() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; }
if [ $keep = 1 ]; then trap unmount_all EXIT; else trap 'unmount_all; rm -rf "$tmp"' EXIT; fi

# --- the quick start, as the README has it ------------------------------------------------------------
git clone -q "$root" "$tmp/resnet.cpp"
cd "$tmp/resnet.cpp"
quick_start=$(awk '/^## Quick start/ {q = 1} q && /^    [^ ]/ {sub(/^    /, ""); print; exit}' README.md)
[ -n "$quick_start" ] || { echo "fresh_machine: no quick-start command in README.md" >&2; exit 1; }
echo "fresh_machine: in $PWD, toolkit hidden, ccache $([ $cold = 1 ] && echo empty || echo as it is):"
echo "  $quick_start"
start=$(date +%s)
bash -c "$quick_start" 2>&1 | tee "$tmp/quick-start.log"
echo "fresh_machine: quick start took $(( $(date +%s) - start )) s on $(nproc) cores"

# --- what it must have done ---------------------------------------------------------------------------
fail() { echo "fresh_machine: FAILED: $*" >&2; exit 1; }
grep -q "CUDA: *ON (PyPI's nvcc" "$tmp/quick-start.log" || fail "configure did not take PyPI's nvcc (CUDA: ON)"
grep -q "Test Error:" "$tmp/quick-start.log" || fail "train printed no test result"
[ -f checkpoints/resnet18/checkpoint.pth ] || fail "no checkpoint.pth"
# top-5 lines: "<class> <probability>"
[ "$(grep -c -E '^[a-z]+ [0-9.]+$' "$tmp/quick-start.log")" -ge 5 ] || fail "predict printed no top-5"
# The CUDA language works with that nvcc: a kernel compiles and links for Hopper.
cat >"$tmp/kernel.cu" <<'CU'
__global__ void scale(float* x, float a, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] *= a; }
int main() { float* x; cudaMalloc(&x, 4); scale<<<1, 1>>>(x, 2.f, 1); return cudaFree(x) == cudaSuccess ? 0 : 1; }
CU
build/cuda-toolkit/bin/nvcc -arch=sm_90 "$tmp/kernel.cu" -o "$tmp/kernel" || fail "nvcc could not build a CUDA kernel"
[ $keep = 0 ] || echo "fresh_machine: kept $tmp"
echo "fresh_machine: OK"
