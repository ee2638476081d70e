#!/usr/bin/env bash
# On the GPU machine (issue 12): one saved model tested under several sets of test-time views, on
# the same images, so that the views are compared on one model (a paired comparison: the spread
# between training runs does not enter it). Choices are made on held-out training images:
#   bench/tta_views.sh CHECKPOINT DATA HOLDOUT [VIEWS...]
# CHECKPOINT is a checkpoint.pth written by `resnet train --holdout HOLDOUT --save-model` on DATA;
# each VIEWS is a set of `resnet test` flags with the spaces written as commas ("--tta-flip",
# "--tta-flip,--tta-shift,14"; "plain" for none). Default: none, the mirror, and the mirror with
# shifts of 7, 14, 21 and 28 pixels. RESNET (default /tmp/resnet-recipe, recipe_search.sh's copy)
# is the binary, AMP (default fp16) the precision. Prints a table of top-1 on the held-out images, each view set's test time, and
# writes each test's output to $OUT/tta-N.log (N counts the view sets from 0; $OUT defaults to
# device-out).
set -uo pipefail
[ $# -ge 3 ] || { sed -n 2,11p "$0"; exit 2; }
checkpoint=$1 data=$2 holdout=$3
shift 3
out=${OUT:-device-out}
resnet=${RESNET:-/tmp/resnet-recipe}
mkdir -p "$out" || exit 1
views=("$@")
[ ${#views[@]} -gt 0 ] || views=(plain --tta-flip --tta-flip,--tta-shift,7 --tta-flip,--tta-shift,14
                                 --tta-flip,--tta-shift,21 --tta-flip,--tta-shift,28)
echo "| views (\`resnet test\` flags) | held-out top-1 | loss | s (process) |"
echo "|---|---|---|---|"
for i in "${!views[@]}"; do
  v=${views[$i]}
  flags=()
  [ "$v" = plain ] || IFS=, read -r -a flags <<< "$v"
  log="$out/tta-$i.log"
  start=$(date +%s.%N)
  if ! "$resnet" test --checkpoint "$checkpoint" --data "$data" --holdout "$holdout" --batch-size 256 \
      --amp "${AMP:-fp16}" ${flags[@]+"${flags[@]}"} > "$log" 2>&1; then
    echo "| ${flags[*]:-(none)} | failed: $(tail -1 "$log" | tr '|' '/') | | |"
    continue
  fi
  seconds=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
  top1=$(sed -n 's/.*top-1 \([0-9.]*%\)).*/\1/p' "$log")
  loss=$(sed -n 's/.*Avg loss: *\([0-9.]*\).*/\1/p' "$log")
  echo "| ${flags[*]:-(none)} | $top1 | $loss | $seconds |"
done
