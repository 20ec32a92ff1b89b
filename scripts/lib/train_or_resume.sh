# Sourced by the training scripts (scripts/release/train_shipped.sh, scripts/experiments/experiments_*.sh):
# one way to start a run, shared by the release and the lab.
# train RUN_DIR COMMAND...: runs COMMAND --run-dir RUN_DIR on one thread; resumes if the run has a
# checkpoint, skips it if done (history.json is written when a run ends).
train() {
  local dir=$1; shift
  if [ -f "$dir/history.json" ]; then echo "$dir: done"; return; fi
  local resume=(); [ -f "$dir/checkpoint.safetensors" ] && resume=(--resume)
  "$@" --run-dir "$dir" --set num_threads=1 "${resume[@]}"
}
