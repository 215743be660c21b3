#!/usr/bin/env bash
# The plain-scan toy model, mtml/checkpoints/toy.pt, in its eight training stages. Each stage starts from the
# previous stage's best.pt (chosen on validation seeds) and trains what its config says (stages 4-8 freeze what
# came before and train one head); the bundled file is stage 8's best.pt. Hours on 2 cores.
#
#   bash recipe.sh [RUNS]        RUNS: folder of the runs (default: runs); rerunning resumes unfinished stages
#
# Stage 1 starts from the bundled one-hot model, mtml/checkpoints/toy_multitask.pt (itself toy.yaml, then
# toy_finetune.yaml); MULTITASK=<checkpoint> starts it from another. Stages 1-4 ran with one thread next to other
# jobs, stages 5-8 alone with two (the bundled files were trained so; THREADS_EARLY / THREADS_LATE change it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUNS="${1:-runs}"
MULTITASK="${MULTITASK:-$(python -c 'from mtml.predict.checkpoint import resolve_checkpoint; print(resolve_checkpoint("toy_multitask"))')}"
THREADS_EARLY="${THREADS_EARLY:-1}"
THREADS_LATE="${THREADS_LATE:-2}"

# stage <config in this folder> <run name> <checkpoint to start from> <threads>
stage() {
    echo "== $1 (from $3)"
    mtml-train --config "$HERE/$1" --out "$RUNS/$2" --init "$3" --threads "$4" --resume
}

stage semantic_pretrain.yaml   toy_semantic_pretrain   "$MULTITASK"                                "$THREADS_EARLY"
stage semantic.yaml            toy_semantic            "$RUNS/toy_semantic_pretrain/best.pt"       "$THREADS_EARLY"
stage semantic_refine.yaml     toy_semantic_refine     "$RUNS/toy_semantic/best.pt"                "$THREADS_EARLY"
stage instance_classifier.yaml toy_instance_classifier "$RUNS/toy_semantic_refine/best.pt"         "$THREADS_EARLY"
stage referring.yaml           referring_toy           "$RUNS/toy_instance_classifier/best.pt"     "$THREADS_LATE"
stage proposal_scorer.yaml     toy_proposal_scorer     "$RUNS/referring_toy/best.pt"               "$THREADS_LATE"
stage referring_rescored.yaml  referring_toy_rescored  "$RUNS/toy_proposal_scorer/best.pt"         "$THREADS_LATE"
stage referring_extra.yaml     referring_toy_extra     "$RUNS/referring_toy_rescored/best.pt"      "$THREADS_LATE"

echo "done: $RUNS/referring_toy_extra/best.pt is the model that mtml/checkpoints/toy.pt bundles"
