#!/usr/bin/env bash
# The v8 training campaign: one sitting of it, resumable across sittings that keep only the repository.
#   bash scripts/campaign_v8.sh [MINUTES]     train for MINUTES (default 150) on one core, then stop
#   bash scripts/campaign_v8.sh --commit      plot the curve and commit the checkpoint and curve (end of a sitting)
# Each sitting: render the v8 corpus (deterministic: the same seed gives the same items on any machine, so the
# excerpt sampler's saved state stays valid), prepare its feature cache, then continue the run in campaign/v8
# from its committed checkpoint.pt (the first sitting starts from the bundled v7 model: every layer trained,
# front end included). Work files (corpus, cache) go to $PIANOMTL_CAMPAIGN_WORK (default .campaign-work, ignored).
# Environment: HOURS (corpus train hours, 2), STEPS (the cosine schedule's total, 40000), THREADS (1), DEVICE (cpu),
# BATCH (4), WORKERS (1: corpus rendering processes).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=campaign/v8
WORK="${PIANOMTL_CAMPAIGN_WORK:-.campaign-work}"
PIANOMTL=.venv/bin/pianomtl
if [ "${1:-}" = "--commit" ]; then
    .venv/bin/python scripts/plot_campaign.py "$RUN"
    git add "$RUN/checkpoint.pt" "$RUN/log.csv" "$RUN/curve.png" "$RUN/curve.csv"
    [ -f "$RUN/result.json" ] && git add "$RUN/result.json"
    step=$(tail -n 1 "$RUN/log.csv" | cut -d, -f1)
    git commit -m "campaign v8: checkpoint and curve at update $step" -- "$RUN" || echo "[campaign] nothing new to commit"
    exit 0
fi
MINUTES="${1:-150}"
mkdir -p "$WORK" "$RUN"
nice -n 5 $PIANOMTL synth --out "$WORK/corpus_v8" --recipe v8 --hours "${HOURS:-2}" --valid-minutes 8 --test-minutes 0 \
    --seed 8 --workers "${WORKERS:-1}" --no-progress
nice -n 5 $PIANOMTL prepare --dataset "$WORK/corpus_v8" --cache "$WORK/cache_v8" --workers "${WORKERS:-1}"
resume=""; init="--init-from src/pianomtl/assets/default.pt"
if [ -e "$RUN/checkpoint.pt" ]; then resume="--resume"; init=""; fi
# v7's architecture (hard+keyrnn on the compact front end); all five tasks with MSE velocity (v7's ranking loss,
# through an unfrozen front end, pulled the note tasks down: campaign/v8_attempt1, docs/experiments.md §12), the
# random equaliser, a gentler rate with clipped gradients; a long cosine schedule that every sitting continues
timeout --signal=TERM "$((MINUTES * 60))" $PIANOMTL train --cache "$WORK/cache_v8" --out "$RUN" $resume $init \
    --arch hard+keyrnn --small 16 --large 48 --head 10 \
    --lambda-on 1 --lambda-int 1 --lambda-off 1 --lambda-vel 1 --lambda-sus 0.5 --clip-grad-norm 1 \
    --optimizer adam --lr 0.0001 --lr-schedule cosine --equaliser 0.8 \
    --batch-size "${BATCH:-4}" --sequence-frames 500 --steps "${STEPS:-40000}" \
    --validate-every 500 --checkpoint-every 50 --validation-frames 1000 --seed 80 \
    --threads "${THREADS:-1}" --device "${DEVICE:-cpu}" || status=$?
# timeout's 124: the sitting's time is up (the checkpoint of the last 50 updates is on disk)
if [ "${status:-0}" -ne 0 ] && [ "${status:-0}" -ne 124 ]; then exit "$status"; fi
echo "[campaign] sitting over; commit with: bash scripts/campaign_v8.sh --commit"
