#!/usr/bin/env bash
# Mutation testing of the core (issue #29) with mutmut: one module at a time, with only that
# module's fast tests, one process. Not in CI (minutes to an hour per module on two cores);
# re-run when a module below changes, and update docs/testing.md with the numbers.
#
#   bash scripts/mutation.sh                 every module below, in order
#   bash scripts/mutation.sh files midi      only these (names from the table below)
#   MUTATION_RESUME=1 bash scripts/mutation.sh midi   go on with an interrupted run (mutmut keeps
#                                            each mutant's verdict in the scratch copy)
#   MUTATION_ONLY='pianomtl.core.midi.x_read_midi* ...' bash scripts/mutation.sh midi
#                                            only the mutants whose names match these globs
#
# Each module is mutated in its own scratch copy of the tree ($MUTATION_WORK/<name>, default
# /tmp/pianomtl-mutation), never in the checkout: mutmut writes its mutants/ folder there.
# Results: $MUTATION_WORK/<name>/summary.txt (killed / survived / ... counts) and
# $MUTATION_WORK/<name>/survivors.txt (each surviving mutant's diff, for docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON="$ROOT/.venv/bin/python"
WORK=${MUTATION_WORK:-/tmp/pianomtl-mutation}

# name | module (under src/pianomtl) | the tests that select it (fast ones only)
MODULES="
files|core/files.py|tests/test_planted.py tests/test_robustness.py::test_exclusive_create_keeps_a_file_that_appears_meanwhile
midi|core/midi.py|tests/test_midi.py tests/test_targets.py
decoders|transcription/decoders.py|tests/test_decoders.py tests/test_planted.py tests/test_stream.py::test_peak_tracker_equals_offline_peak_picking
causal|transcription/causal.py|tests/test_planted.py tests/test_decoders.py tests/test_stream.py::test_peak_tracker_equals_offline_peak_picking
targets|core/targets.py|tests/test_targets.py tests/test_planted.py
scoring|core/scoring.py|tests/test_decoders.py tests/test_planted.py tests/test_metrics.py tests/test_scoring.py
metrics|core/metrics.py|tests/test_metrics.py
stream|transcription/stream.py|tests/test_stream.py
"

if ! "$PYTHON" -c "import mutmut" 2>/dev/null; then
    echo "[mutation] installing mutmut"
    "$PYTHON" -m pip install -q "mutmut>=3.8,<4" 2>&1 | grep -v "^WARNING: Location" || [ "${PIPESTATUS[0]}" -eq 0 ]
fi

wanted=("$@")
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0
run_module() {
    local name=$1 module=$2 tests=$3
    local dir="$WORK/$name"
    echo "[mutation] $name: mutating src/pianomtl/$module with: $tests"
    if [ "${MUTATION_RESUME:-0}" = 1 ] && [ -d "$dir/mutants" ]; then
        # shellcheck disable=SC2086  # MUTATION_ONLY: globs, one word each
        (cd "$dir" && "$ROOT/.venv/bin/mutmut" run --max-children 1 ${MUTATION_ONLY:-} > run.log 2>&1) || true
        summarise "$name" "$module" "$dir"
        return
    fi
    rm -rf "$dir"
    mkdir -p "$dir/tests"
    cp -r "$ROOT/src" "$dir/src"
    find "$dir/src" -name __pycache__ -prune -exec rm -rf {} +
    cp "$ROOT/pyproject.toml" "$dir/"
    cp "$ROOT"/tests/conftest.py "$ROOT"/tests/tiny_cache.py "$dir/tests/"
    cp -r "$ROOT/tests/data" "$dir/tests/"
    local selection=""
    for test in $tests; do
        cp "$ROOT/${test%%::*}" "$dir/tests/"
        selection="$selection
    $test"
    done
    # mutmut reads [tool.mutmut] from pyproject.toml, else setup.cfg: the copy's pyproject has none
    cat > "$dir/setup.cfg" <<EOF
[mutmut]
source_paths = src
only_mutate = src/pianomtl/$module
pytest_add_cli_args = -p no:cacheprovider -q
pytest_add_cli_args_test_selection = $selection
process_isolation = forkserver
use_git_change_detection = false
EOF
    (
        cd "$dir"
        # mutmut's own exit status is not the verdict: the counts below are
        # shellcheck disable=SC2086
        "$ROOT/.venv/bin/mutmut" run --max-children 1 ${MUTATION_ONLY:-} > run.log 2>&1 \
            || echo "[mutation] mutmut exited $? (see $dir/run.log)"
    )
    summarise "$name" "$module" "$dir"
}

summarise() {
    local name=$1 module=$2 dir=$3
    (
        cd "$dir"
        "$ROOT/.venv/bin/mutmut" results --all true > results.txt 2>&1 || true
        # counts per verdict, and per function (mutmut's own stats count unchecked mutants as well)
        "$PYTHON" - "$name" "$module" > summary.txt <<'PY'
import collections, re, sys
name, module = sys.argv[1:]
total, by_function = collections.Counter(), collections.defaultdict(collections.Counter)
for line in open("results.txt", encoding="utf-8"):
    match = re.match(r"\s*(\S+)__mutmut_\d+: (.+)$", line)
    if match:
        function = re.sub(r"^x[_\u01c1]", "", match.group(1).rsplit(".", 1)[-1]).replace("\u01c1", ".")
        total[match.group(2)] += 1
        by_function[function][match.group(2)] += 1
checked = total["killed"] + total["survived"] + total["timeout"] + total["no tests"] + total["suspicious"]
caught = total["killed"] + total["timeout"]
print(f"{name} (src/pianomtl/{module}): {dict(sorted(total.items()))}; killed or timed out {caught} of {checked} checked")
for function, counts in by_function.items():
    print(f"  {function}: {dict(sorted(counts.items()))}")
PY
        grep -v "not checked\|: killed" results.txt > survivors_list.txt || true
        : > survivors.txt
        grep -E ": survived|: no tests|: timeout|: suspicious" survivors_list.txt | sed -E 's/^ *//; s/: .*//' | while read -r mutant; do
            { echo "### $mutant"; "$ROOT/.venv/bin/mutmut" show "$mutant" 2>&1; echo; } >> survivors.txt
        done
    )
    cat "$dir/summary.txt"
}

echo "$MODULES" | while IFS='|' read -r name module tests; do
    [ -n "$name" ] || continue
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
    run_module "$name" "$module" "$tests"
done
