"""seeds/002 (LESS) ablation on the synthetic referring benchmark: the full head against the head without
point-word cross-modal alignment (PWCA), without query-sentence alignment (QSA), without L_area and without L_p2p.
Each row trains the referring head alone on the same frozen model, data and step budget; rows report mIoU,
Acc@0.25, Acc@0.5 (on the validation split and on a hand-made set of descriptions) and time per scan."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional, Sequence

from mtml.data.referring import build_referring_split, evaluation_set_name, read_referring_json, records_of_kind
from mtml.model.text import make_text_encoder
from mtml.predict.checkpoint import load_model
from mtml.tables.methods import Method, train_methods
from mtml.train.referring import ReferringScenes, evaluate_referring

METHODS = (
    Method("full", "LESS (PWCA + QSA + L_area + L_p2p)", "referring/ablation.yaml", init_from="checkpoint"),
    Method("no_pwca", "w/o PWCA", "referring/ablation_no_pwca.yaml", init_from="checkpoint"),
    Method("no_qsa", "w/o QSA", "referring/ablation_no_qsa.yaml", init_from="checkpoint"),
    Method("no_area", "w/o L_area", "referring/ablation_no_area.yaml", init_from="checkpoint"),
    Method("no_p2p", "w/o L_p2p", "referring/ablation_no_p2p.yaml", init_from="checkpoint"),
)

# seeds/002 ablation tables (ScanRefer val, %): mIoU, Acc@0.25, Acc@0.5, for the rows it has
PAPER = {
    "full": (33.74, 53.23, 29.88),
    "no_qsa": (33.44, 52.73, 28.92),  # table (b): PWCA without QSA
    "no_p2p": (31.04, 49.61, 24.72),  # table (b): L_area without L_p2p
}
COLUMNS = ("miou", "acc@0.25", "acc@0.5")


def train_ablation(configs_dir: Optional[str | Path], out_dir: str | Path, init_checkpoint: str,
                   methods: Sequence[Method] = METHODS, progress: bool = True) -> dict[str, Path]:
    """Train every row's referring head on the model of ``init_checkpoint`` into ``out_dir/<key>/`` (resuming);
    ``configs_dir``: the configs folder (None: the packaged configs). Returns row key -> ``best.pt`` (chosen by
    validation Acc@0.5)."""
    last = train_methods(configs_dir, out_dir, methods, init_checkpoint=init_checkpoint, progress=progress)
    return {key: path.parent / "best.pt" for key, path in last.items()}


def evaluate_rows(checkpoints: dict, num_scenes: Optional[int] = None, handmade: Sequence[str] = (),
                  progress: bool = True) -> dict:
    """row key -> {"val": ReferringScores results on the validation split (its first ``num_scenes`` scenes), and
    for each ScanRefer-style file of ``handmade``, under its ``evaluation_set_name``, the results on its
    descriptions of scenes of the kind the row was trained on}. Times are per scan, backbone and head together."""
    out = {}
    for key, path in checkpoints.items():
        loaded = load_model(path)
        model, exp = loaded.model, loaded.config
        encoder = make_text_encoder(model.cfg.text_encoder)
        sets = {"val": build_referring_split(exp.data.kind, "val", num_scenes or exp.data.val_scenes,
                                             exp.data.referring_per_scene)}
        for path in handmade:
            sets[evaluation_set_name(path)] = records_of_kind(read_referring_json(path), exp.data.kind)
        out[key] = {name: evaluate_referring(model, ReferringScenes(records, model, encoder, exp.data.voxel_size,
                                                                    exp.cluster),
                                             progress, desc=f"{key} {name}").results()
                    for name, records in sets.items()}
    return out


def table_text(results: dict, methods: Sequence[Method] = METHODS) -> str:
    """The ablation as a text table, a line per row and evaluation set (validation first, then the hand-made sets
    in the order scored): descriptions, mIoU / Acc@0.25 / Acc@0.5 (%), and the row's ms per scan (validation)."""
    sets = list(dict.fromkeys(["val", *(name for r in results.values() for name in r)]))
    width = max(len("set"), *(len(s) for s in sets)) + 2
    shown = [m for m in methods if m.key in results]
    title_width = max(36, *(len(m.title) + 2 for m in shown)) if shown else 36
    head = f"{'method':<{title_width}}{'set':<{width}}{'n':>6}{'mIoU':>8}{'A@25':>8}{'A@50':>8}{'ms/scan':>10}"
    lines = [head, "-" * len(head)]
    for m in methods:
        if m.key not in results:
            continue
        r = results[m.key]
        for k, s in enumerate(name for name in sets if name in r):
            title = m.title if k == 0 else ""
            ms = f"{1000 * r[s]['seconds_per_scan']:>10.1f}" if s == "val" else ""
            lines.append(f"{title:<{title_width}}{s:<{width}}{r[s]['descriptions']:>6}" +
                         "".join(f"{100 * r[s][c]:>8.1f}" for c in COLUMNS) + ms)
    paper = [m for m in methods if m.key in PAPER and m.key in results]
    if paper:
        lines.append("")
        lines.append("seeds/002 ablation on ScanRefer (mIoU / Acc@0.25 / Acc@0.5): " + "; ".join(
            f"{m.title} {' / '.join(f'{v:.1f}' for v in PAPER[m.key])}" for m in paper))
    return "\n".join(lines)


def table_csv(results: dict, methods: Sequence[Method] = METHODS) -> str:
    """CSV: method, set, descriptions, miou, acc@0.25, acc@0.5 (%), ms_per_scan."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "set", "descriptions", *COLUMNS, "ms_per_scan"])
    for m in methods:
        for name, r in results.get(m.key, {}).items():
            w.writerow([m.key, name, r["descriptions"], *[f"{100 * r[c]:.2f}" for c in COLUMNS],
                        f"{1000 * r['seconds_per_scan']:.2f}"])
    return buf.getvalue()
