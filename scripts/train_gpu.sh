#!/usr/bin/env bash
# The v8 campaign on a lent GPU machine (16 cores, one GPU, nothing reachable): one short, prepared run.
#   bash scripts/train_gpu.sh            on the device: render a corpus on every core, train <= MINUTES, results in $OUT
# It renders only the parametric piano (synthesis/modal.py needs no sample files, so nothing large travels),
# with the v8 recipe's pedal-free share, high transpositions and effect chain; starts from the campaign's
# committed checkpoint (campaign/v8/checkpoint.pt; else the bundled v7) and writes checkpoint.pt, log.csv and
# curve files to $OUT, which the session copies back into campaign/v8_gpu/ and commits.
# The device's python3 holds torch, numpy and scipy; soundfile, soxr and mido travel as wheels in .whl/
# (scripts/fetch_gpu_wheels.sh downloads them here). Test it on the CPU with a tiny budget:
#   OUT=/tmp/gpu DEVICE=cpu PYTHON=.venv/bin/python HOURS=0.01 VALID_MINUTES=0.3 MINUTES=3 WORKERS=1 BATCH=2 STEPS=4 CKPT_EVERY=2 VALIDATE_EVERY=4 bash scripts/train_gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder that comes back}"
PYTHON="${PYTHON:-python3}"
MINUTES="${MINUTES:-9}"
WORK="${WORK:-/tmp/pianomtl-gpu}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
PIANOMTL=("$PYTHON" -m pianomtl.cli)
start=$(date +%s)
synth() {  # SOURCES: the MAESTRO MIDI travel only if fetched there; else the procedural material alone
    "${PIANOMTL[@]}" synth --out "$WORK/corpus" --recipe v8 --timbres modal --sources "$1" --hours "${HOURS:-3}" \
        --valid-minutes "${VALID_MINUTES:-4}" --test-minutes 0 --seed "${SEED:-81}" --workers "${WORKERS:-16}" --no-progress
}
synth procedural,maestro || synth procedural
"${PIANOMTL[@]}" prepare --dataset "$WORK/corpus" --cache "$WORK/cache" --workers "${WORKERS:-16}"
init=campaign/v8/checkpoint.pt
[ -e "$init" ] || init=src/pianomtl/assets/default.pt
left=$(( MINUTES * 60 - ($(date +%s) - start) ))
[ "$left" -gt 30 ] || { echo "[gpu] no time left to train after rendering"; exit 1; }
echo "[gpu] training for ${left} s from $init"
timeout --signal=TERM "$left" "${PIANOMTL[@]}" train --cache "$WORK/cache" --out "$WORK/run" --init-from "$init" \
    --arch hard+keyrnn --small 16 --large 48 --head 10 \
    --lambda-on 1 --lambda-int 1 --lambda-off 1 --lambda-vel 1 --lambda-sus 0.5 --clip-grad-norm 1 \
    --optimizer adam --lr 0.0001 --lr-schedule cosine --equaliser 0.8 \
    --batch-size "${BATCH:-32}" --sequence-frames 500 --steps "${STEPS:-4000}" \
    --validate-every "${VALIDATE_EVERY:-200}" --checkpoint-every "${CKPT_EVERY:-25}" --validation-frames 1000 --seed 82 \
    --device "${DEVICE:-cuda}" $([ "${DEVICE:-cuda}" = cuda ] && echo --amp) || status=$?
if [ "${status:-0}" -ne 0 ] && [ "${status:-0}" -ne 124 ]; then exit "$status"; fi
mkdir -p "$OUT"
cp "$WORK/run/checkpoint.pt" "$WORK/run/log.csv" "$OUT/"
"$PYTHON" scripts/plot_campaign.py "$OUT" || echo "[gpu] no plot (matplotlib missing?)"
echo "[gpu] done: $(tail -n 1 "$OUT/log.csv" | cut -d, -f1) updates; files in $OUT"
