"""``mtml-infer a.ply|SCAN_FOLDER|SCENE_vert.npy|POINTCEPT_FOLDER [...] [--checkpoint CKPT] [--out DIR]
[--scannet-export DIR]``: semantic labels and instances of scans (``mtml.io.formats.read_any_scene`` reads them).
A checkpoint with a semantic head segments plain scans (no 'label'); with a 'label' property the scan's labels are
used unless ``--predict-labels``.

Every input is read and checked before anything is written, and all outputs of one scan are written to a staging
folder and moved into place together (``mtml.io.atomic.staged_outputs``), so bad input or a full disk leaves no
partial output behind. ``timings_s`` in each scan's JSON has every stage and ``total``, their sum.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mtml.cli import StageTimes, int_between, positive_float_up_to, run_command
from mtml.data.normalize import UNITS, UP_AXES, normalize_scene
from mtml.errors import InputError
from mtml.io.atomic import check_output_folder, staged_outputs
from mtml.predict.checkpoint import bundled_checkpoints, load_model
from mtml.predict.predictor import aligns_walls, check_scene_labels, read_scene
from mtml.predict.voting import MAX_PASSES

DEFAULT_CHECKPOINT = "toy"
# what --demo asks the referring head about toy test scene 900 (object 5; true by the generator's geometry)
DEMO_SENTENCE = "the flat box on the right side of the cabinet"


def write_demo_scene(out_dir: str, plain: bool, seed: int = 900) -> Path:
    """Write toy test scene ``seed`` to ``out_dir``: ``toy_<seed>_gt.ply`` with its ground-truth ``label`` and
    ``instance``, and, with ``plain``, ``toy_<seed>.ply`` with x y z only (what a user's plain scan looks like).
    Returns the file to segment: the plain one, or the ground truth for models that read labels."""
    from mtml.data.toy import generate_scene
    from mtml.io.ply import scene_to_ply, write_ply

    scene = generate_scene(seed)
    gt = scene_to_ply(scene, Path(out_dir) / f"{scene.name}_gt.ply")
    return write_ply(Path(out_dir) / f"{scene.name}.ply", scene.points) if plain else gt


@contextlib.contextmanager
def _memory_limit_named_by_its_flag():
    """Name ``--max-memory-gb`` in the grid-size error: the library speaks of "the memory limit", which mtml-infer
    takes from --max-memory-gb."""
    try:
        yield
    except InputError as err:
        if "raise the memory limit" not in err.problem:
            raise
        raise InputError(err.source, err.problem.replace("raise the memory limit", "raise --max-memory-gb")) from None


def main(argv=None) -> int:
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(prog="mtml-infer", description="Segment object instances in scans.")
    p.add_argument("inputs", nargs="*", help="PLY files (x y z, optional colour and per-vertex 'label' semantic ids), "
                                             "ScanNet scan folders (<scene>_vh_clean_2.ply + segs + aggregation), "
                                             "VoteNet scans (<scene>_vert.npy [+ _sem_label.npy, _ins_label.npy]) "
                                             "or Pointcept scan folders (coord.npy, color.npy, ...)")
    p.add_argument("--demo", action="store_true",
                   help="write a synthetic toy test scene (seed 900) to --out, as a plain PLY (x y z) and with its "
                        f"ground truth (_gt.ply), and segment it (with a referring head and no --refer, also "
                        f"'{DEMO_SENTENCE}')")
    p.add_argument("--checkpoint", default=None, help=f"model checkpoint file, or a bundled model's name "
                                                      f"({', '.join(bundled_checkpoints())}; default: the bundled "
                                                      f"{DEFAULT_CHECKPOINT})")
    p.add_argument("--out", default="mtml_out", help="output folder (default: mtml_out)")
    p.add_argument("--max-memory-gb", type=positive_float_up_to(1e6), default=8.0,
                   help="memory bound of the network (GiB, default 8): a scan whose dense grid would need more is "
                        "segmented in overlapping full-height tiles that fit, and merged")
    p.add_argument("--scannet-export", default=None, metavar="DIR",
                   help="also write predictions in the ScanNet instance benchmark layout (DIR/<scene>.txt + pred_mask/)")
    p.add_argument("--label-map", default=None, help="scannetv2-labels.combined.tsv for scan folders "
                                                    "(default: found in the folder or its parent)")
    p.add_argument("--no-picture", action="store_true", help="do not write the top-view pictures (<name>_*.png)")
    p.add_argument("--predict-labels", action="store_true",
                   help="build instances on the semantic head's labels even when the scan has a 'label' property")
    p.add_argument("--vote", type=int_between(1, MAX_PASSES), default=1, metavar="PASSES",
                   help="on predicted labels, vote each point's label over this many turned, shifted and mirrored "
                        f"copies of the scan (1-{MAX_PASSES}, PASSES times the time; default 1)")
    p.add_argument("--refer", action="append", default=[], metavar="SENTENCE",
                   help="segment the object this sentence describes (repeatable; all sentences share one network "
                        "pass): writes <name>_refer.ply (0/1 'target' per sentence) and <name>_refer.json")
    p.add_argument("--up-axis", choices=[*UP_AXES, "auto"], default="auto",
                   help="the scans' up axis (write a negative one as --up-axis=-y); auto (default): measured on each "
                        "scan (the axis with the floor at its low end), z when nothing tells")
    p.add_argument("--units", choices=[*UNITS, "auto"], default="auto",
                   help="the scans' units; auto (default): from the height along the up axis (rooms are 0.8-8 m "
                        "high), metres when it fits no unit")
    p.add_argument("--align-walls", choices=["auto", "on", "off"], default="auto",
                   help="turn each scan about the vertical so that its walls lie along x and y before the model "
                        "reads it; auto (default): on, except for toy models (trained on wall-less scenes). Outputs "
                        "keep the scan's own coordinates either way")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.inputs and not args.demo:
        p.error("give at least one scan (PLY file, scan folder, <scene>_vert.npy, ...), or --demo")
    check_output_folder(args.out, "--out")
    if args.scannet_export:
        check_output_folder(args.scannet_export, "--scannet-export")

    from mtml.cluster.pipeline import ClusterConfig
    from mtml.io.instances import (
        write_instance_picture,
        write_instance_ply,
        write_instance_summary,
        write_semantic_picture,
        write_semantic_ply,
    )
    from mtml.model.model import max_voxels_for_memory
    from mtml.predict.infer import (
        network_outputs,
        refer_voxels,
        referring_superpoints,
        segment_grid,
    )
    from mtml.predict.tiling import TilePlan, grid_or_tiles, segment_tiles

    loaded = load_model(args.checkpoint or DEFAULT_CHECKPOINT, device=args.device)
    ckpt, model = loaded.path, loaded.model
    if args.demo and not args.refer and model.referring_head is not None:
        args.refer = [DEMO_SENTENCE]
    if args.refer and model.referring_head is None:
        raise InputError(ckpt, "this checkpoint has no referring head (--refer needs one)")
    if any(not s.strip() for s in args.refer):
        raise InputError(None, "--refer got an empty sentence")
    exp = loaded.config
    cluster_cfg: ClusterConfig = exp.cluster
    class_names = loaded.class_names
    max_voxels = max_voxels_for_memory(model.cfg, args.max_memory_gb)
    align_walls = aligns_walls(loaded) if args.align_walls == "auto" else args.align_walls == "on"

    text_features = None
    if args.refer:
        from mtml.model.text import make_text_encoder
        from mtml.predict.infer import encode_descriptions

        text_features = encode_descriptions(make_text_encoder(model.cfg.text_encoder), args.refer, args.device)
    inputs = list(args.inputs)
    if args.demo:
        inputs.append(str(write_demo_scene(args.out, plain=not model.cfg.needs_labels)))
    setup_s = time.perf_counter() - t_start
    scenes, frames, grids, times = [], [], [], []  # frames: (the scan in the model's frame, its Transform)
    for path in inputs:  # every input is read and checked (labels, grid size) before any output is written
        scan_times = StageTimes()
        if not times:  # the run's setup (arguments, model, sentences) counts in the first scan's total
            scan_times.add("setup", setup_s, outside=True)
        with scan_times.running():
            with scan_times.stage("read"):
                scene = read_scene(path, exp.data.benchmark, args.label_map)
                check_scene_labels(model, scene, use_given_labels=not args.predict_labels)
            with scan_times.stage("normalize"):
                canonical, transform, _ = normalize_scene(scene, args.up_axis, args.units, align_walls,
                                                          hint="overrides: --up-axis, --units")
            with scan_times.stage("voxelize"), _memory_limit_named_by_its_flag():
                grids.append(grid_or_tiles(canonical, exp.data.voxel_size, max_voxels))  # a TilePlan when too large
            if args.refer and isinstance(grids[-1], TilePlan):
                shape = "x".join(map(str, grids[-1].grid.shape))
                raise InputError(scene.source, f"--refer needs the whole scan in one grid, and its {shape} voxel grid "
                                               "is over --max-memory-gb (raise --max-memory-gb)")
        scenes.append(scene)
        frames.append((canonical, transform))
        times.append(scan_times)
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise InputError(None, "two inputs share a file name; their outputs would overwrite each other")
    # the model reads each scan in its canonical frame; the PLYs and JSON keep the scan's own coordinates
    for scene, (canonical, transform), grid, scan_times in zip(scenes, frames, grids, times):
        with scan_times.running():
            if isinstance(grid, TilePlan):  # each tile runs the network within --max-memory-gb
                with _memory_limit_named_by_its_flag():
                    res = segment_tiles(model, canonical, grid, cluster_cfg, args.device, not args.predict_labels,
                                        args.vote)
            else:
                with scan_times.stage("network"):
                    outputs = network_outputs(model, grid, args.device)
                with _memory_limit_named_by_its_flag():
                    res = segment_grid(model, canonical, grid, cluster_cfg, device=args.device,
                                       use_given_labels=not args.predict_labels, outputs=outputs,
                                       vote_passes=args.vote, max_voxels=max_voxels)
            for stage, seconds in res.timings.items():  # network (the heads), cluster, point_labels, voting
                scan_times.add(stage, seconds)
            point_instance = res.instances.point_instance_ids(res.grid, res.point_labels)
            n = len(np.unique(point_instance[point_instance >= 0]))
            refer = None
            if args.refer:
                with scan_times.stage("referring"):
                    refer = refer_voxels(model, grid, text_features, args.device, outputs, referring_superpoints(res))
            point_semantic = None
            if res.voxel_predictions.labels is not None:
                point_semantic = res.voxel_predictions.labels[res.grid.point_to_voxel]
            with staged_outputs(f"the outputs of {scene.name}", source=f"{Path(args.out) / scene.name}_*") as stage:
                out_dir = stage.folder(args.out)
                with scan_times.stage("writing"):
                    if point_semantic is not None:
                        write_semantic_ply(out_dir, scene.name, scene.points, point_semantic)
                    write_instance_ply(out_dir, scene.name, scene.points, point_instance, res.point_labels,
                                       len(res.instances.labels), point_semantic)
                    if args.scannet_export:
                        from mtml.io.benchmark import write_scene_predictions

                        write_scene_predictions(stage.folder(args.scannet_export), scene.name,
                                                res.instances.point_masks(res.grid, res.point_labels),
                                                res.instances.labels, res.instances.scores)
                    answers = _write_referring(out_dir, args.refer, scene, grid, refer) if refer is not None else []
                if not args.no_picture:
                    with scan_times.stage("pictures"):
                        # top views: seen from the canonical frame's +z
                        if point_semantic is not None:
                            write_semantic_picture(out_dir, scene.name, canonical.points, point_semantic, class_names)
                        write_instance_picture(out_dir / f"{scene.name}_instances.png", canonical.points,
                                               point_instance, f"{scene.name}: {n} instances (top view)")
                        if refer is not None:
                            write_referring_picture(out_dir / f"{scene.name}_refer.png", canonical, args.refer,
                                                    refer.masks[:, grid.point_to_voxel])
                timings = scan_times.summary()  # the summary JSON is written last, so they cover everything else
                meta = {"scene": scene.name, "source": scene.source, "num_points": scene.num_points,
                        "voxel_size": exp.data.voxel_size, "num_voxels": res.grid.num_voxels,
                        "checkpoint": str(ckpt), "labels": res.labels_source,
                        "vote_passes": args.vote if res.labels_source == "predicted" else 1,
                        "frame": transform.to_dict(), "timings_s": timings}
                write_instance_summary(out_dir, scene.name, scene.points, point_instance, res.instances.labels,
                                       res.instances.scores, class_names, meta)
        stem = Path(args.out) / f"{scene.name}_instances"
        print(transform.message)  # what was assumed about the scan's frame, one line
        print(f"{scene.source}: {n} instances ({res.labels_source} labels) in {timings['total']:.2f} s "
              f"-> {stem}.ply, {stem}.json")
        for answer in answers:
            print(f"  '{answer['description']}': {answer['num_points']} points, box {answer['bbox_min']} - "
                  f"{answer['bbox_max']} (score {answer['score']:.2f})")
    return 0


def _write_referring(out_dir: Path, sentences: list, scene, grid, pred) -> list:
    """Write ``<name>_refer.ply`` (x y z, int ``target`` per sentence: ``target`` for one sentence, ``target_<k>``
    for several) and ``<name>_refer.json`` (per sentence: description, score, bounding box, point count) to
    ``out_dir``, from the referring head's answer ``pred`` (``refer_voxels`` on ``grid``). Returns the answers
    (dicts, as in the JSON)."""
    from mtml.eval.referring import box_of
    from mtml.io.atomic import atomic_write_text
    from mtml.io.ply import write_ply

    point_masks = pred.masks[:, grid.point_to_voxel]
    names = ["target"] if len(sentences) == 1 else [f"target_{k}" for k in range(len(sentences))]
    ply = write_ply(out_dir / f"{scene.name}_refer.ply", scene.points,
                    int_props={n: m.astype(np.int64) for n, m in zip(names, point_masks)})
    answers = []
    for k, (sentence, mask) in enumerate(zip(sentences, point_masks)):
        lo, hi = box_of(scene.points, mask)
        answers.append({"description": sentence, "property": names[k], "score": round(float(pred.scores[k]), 4),
                        "num_points": int(mask.sum()), "bbox_min": [round(float(v), 4) for v in lo],
                        "bbox_max": [round(float(v), 4) for v in hi]})
    atomic_write_text(out_dir / f"{scene.name}_refer.json",
                      json.dumps({"scene": scene.name, "ply": ply.name, "answers": answers}, indent=2) + "\n")
    return answers


def write_referring_picture(path: Path, scene, sentences: list, point_masks: np.ndarray) -> Path:
    """Top view of a scene in grey with each sentence's answer in its own colour (legend: the sentences)."""
    from mtml.io.instances import instance_colors, write_top_view

    palette = instance_colors(len(sentences) + 1)[1:]
    colors = np.full((scene.num_points, 3), 190, dtype=np.uint8)
    for k in range(len(sentences)):
        colors[point_masks[k]] = palette[k]
    legend = {(s if len(s) <= 48 else s[:45] + "..."): palette[k] for k, s in enumerate(sentences)}
    return write_top_view(path, scene.points, colors, f"{scene.name}: referred objects (top view)", legend)


def entry() -> None:
    sys.exit(run_command(main))


if __name__ == "__main__":
    entry()
