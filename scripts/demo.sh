#!/usr/bin/env bash
# Runs heat2d on 4 ranks twice through the Lifeline supervisor — once without failures, once
# with ranks SIGKILLed at points drawn from a seed — and compares the two results.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=$(swift build -c release --show-bin-path)
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
SIZE=${SIZE:-1024}
STEPS=${STEPS:-6000}
echo "demo seed: $SEED (run again with SEED=$SEED make demo)"

RANDOM=$SEED
KILL_STEP_RANK=$(( RANDOM % 4 ))
KILL_STEP=$(( 300 + RANDOM % (STEPS / 2) ))
CHECKPOINT_RANK=$(( RANDOM % 4 ))
KILL_TIME_RANK=$(( RANDOM % 4 ))
KILL_TIME_MS=$(( 1500 + RANDOM % 4000 ))

mkdir -p lifeline-runs
STAMP=$(date +%Y%m%d-%H%M%S)
CLEAN_DIR="lifeline-runs/demo-$STAMP-clean"
CRASH_DIR="lifeline-runs/demo-$STAMP-crashes"
PROGRAM=(heat2d --size "$SIZE" --steps "$STEPS")

echo
echo "== 1. heat2d on 4 ranks, no failures"
"$BIN/lifeline" run -n 4 --interval 1 --run-dir "$CLEAN_DIR" -- "${PROGRAM[@]}" | tee "$CLEAN_DIR.stdout"

INJECT=(--inject "kill:rank=$KILL_STEP_RANK,step=$KILL_STEP"
        --inject "kill:rank=$CHECKPOINT_RANK,phase=checkpoint"
        --inject "kill:rank=$KILL_TIME_RANK,after=${KILL_TIME_MS}ms")
echo
echo "== 2. the same with crashes: ${INJECT[*]}"
"$BIN/lifeline" run -n 4 --interval 1 --trace-deliveries --run-dir "$CRASH_DIR" "${INJECT[@]}" -- "${PROGRAM[@]}" | tee "$CRASH_DIR.stdout"
TIMELINE=$("$BIN/lifeline" timeline "$CRASH_DIR")

CLEAN=$(grep '^result sha256=' "$CLEAN_DIR.stdout" | sed 's/^result sha256=//')
CRASHED=$(grep '^result sha256=' "$CRASH_DIR.stdout" | sed 's/^result sha256=//')
echo
echo "failure-free: $CLEAN"
echo "with crashes: $CRASHED"
echo "run directories: $CLEAN_DIR $CRASH_DIR (events.jsonl tells what happened; lifeline inspect summarizes)"
echo "timeline of the run with crashes: $TIMELINE (open it in a browser)"
if [ -n "$CLEAN" ] && [ "$CLEAN" = "$CRASHED" ]; then
    echo "MATCH"
else
    echo "MISMATCH"
    exit 1
fi
