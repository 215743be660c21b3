"""``mtml-infer a.ply|SCAN_FOLDER [...] [--checkpoint CKPT] [--out DIR] [--scannet-export DIR]``: semantic labels
and instances of scans. A checkpoint with a semantic head segments plain scans (no 'label'); with a 'label'
property the scan's labels are used unless ``--predict-labels``.

Every input is read and checked before anything is written, and each output file is written atomically,
so bad input leaves no partial output behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mtml.cli import run_command
from mtml.errors import InputError
from mtml.predict.voting import MAX_PASSES

DEFAULT_CHECKPOINT = "toy.pt"
# what --demo asks the referring head about toy test scene 900 (object 5; true by the generator's geometry)
DEMO_SENTENCE = "the flat box on the right side of the cabinet"


def bundled_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """Path of a checkpoint shipped inside the package (mtml/checkpoints/)."""
    return Path(str(resources.files("mtml") / "checkpoints" / name))


def read_scan(path: str, benchmark: str, label_map: str | None = None):
    """A Scene from a PLY file or a ScanNet scan folder (labels in the benchmark's ids)."""
    import os

    if os.path.isdir(path):
        from mtml.io.scannet import read_scannet_scan

        return read_scannet_scan(path, benchmark=benchmark, label_map=label_map)
    from mtml.io.ply import read_ply

    return read_ply(path)


def write_demo_scene(out_dir: str, plain: bool, seed: int = 900) -> Path:
    """Write toy test scene ``seed`` to ``out_dir``: ``toy_<seed>_gt.ply`` with its ground-truth ``label`` and
    ``instance``, and, with ``plain``, ``toy_<seed>.ply`` with x y z only (what a user's plain scan looks like).
    Returns the file to segment: the plain one, or the ground truth for models that read labels."""
    from mtml.data.toy import generate_scene
    from mtml.io.ply import scene_to_ply, write_ply

    scene = generate_scene(seed)
    gt = scene_to_ply(scene, Path(out_dir) / f"{scene.name}_gt.ply")
    return write_ply(Path(out_dir) / f"{scene.name}.ply", scene.points) if plain else gt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mtml-infer", description="Segment object instances in PLY scans.")
    p.add_argument("inputs", nargs="*", help="PLY files (x y z, optional colour and per-vertex 'label' semantic ids), "
                                             "or ScanNet scan folders (<scene>_vh_clean_2.ply + segs + aggregation)")
    p.add_argument("--demo", action="store_true",
                   help="write a synthetic toy test scene (seed 900) to --out, as a plain PLY (x y z) and with its "
                        f"ground truth (_gt.ply), and segment it (with a referring head and no --refer, also "
                        f"'{DEMO_SENTENCE}')")
    p.add_argument("--checkpoint", default=None, help=f"model checkpoint (default: the bundled {DEFAULT_CHECKPOINT})")
    p.add_argument("--out", default="mtml_out", help="output folder (default: mtml_out)")
    p.add_argument("--max-memory-gb", type=float, default=8.0,
                   help="refuse scenes whose dense grid would need more memory than this (default 8)")
    p.add_argument("--scannet-export", default=None, metavar="DIR",
                   help="also write predictions in the ScanNet instance benchmark layout (DIR/<scene>.txt + pred_mask/)")
    p.add_argument("--label-map", default=None, help="scannetv2-labels.combined.tsv for scan folders "
                                                    "(default: found in the folder or its parent)")
    p.add_argument("--no-picture", action="store_true", help="do not write the top-view pictures (<name>_*.png)")
    p.add_argument("--predict-labels", action="store_true",
                   help="build instances on the semantic head's labels even when the scan has a 'label' property")
    p.add_argument("--vote", type=int, default=1, metavar="PASSES",
                   help="on predicted labels, vote each point's label over this many turned, shifted and mirrored "
                        f"copies of the scan (1-{MAX_PASSES}, PASSES times the time; default 1)")
    p.add_argument("--refer", action="append", default=[], metavar="SENTENCE",
                   help="segment the object this sentence describes (repeatable; all sentences share one network "
                        "pass): writes <name>_refer.ply (0/1 'target' per sentence) and <name>_refer.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.inputs and not args.demo:
        p.error("give at least one PLY file, or --demo")
    if not 1 <= args.vote <= MAX_PASSES:
        p.error(f"--vote must be between 1 and {MAX_PASSES}, got {args.vote}")

    from mtml.cluster.pipeline import ClusterConfig
    from mtml.config import config_from_dict
    from mtml.data.dataset import label_channels
    from mtml.data.voxelize import voxelize
    from mtml.io.instances import write_instance_outputs, write_instance_picture, write_semantic_outputs
    from mtml.model.model import inference_bytes_per_voxel, load_checkpoint
    from mtml.predict.infer import network_outputs, referring_superpoints, segment_grid

    ckpt = args.checkpoint or bundled_checkpoint()
    model, state = load_checkpoint(ckpt, map_location=args.device)
    if args.demo and not args.refer and model.referring_head is not None:
        args.refer = [DEMO_SENTENCE]
    if args.refer and model.referring_head is None:
        raise InputError(ckpt, "this checkpoint has no referring head (--refer needs one)")
    if any(not s.strip() for s in args.refer):
        raise InputError(None, "--refer got an empty sentence")
    model.to(args.device)
    exp = config_from_dict(state.get("experiment", {}), str(ckpt))
    cluster_cfg: ClusterConfig = exp.cluster
    class_names = {int(k): v for k, v in state.get("class_names", {}).items()}
    max_voxels = int(args.max_memory_gb * 2**30 / inference_bytes_per_voxel(model.cfg))

    text_features = None
    if args.refer:
        from mtml.model.text import make_text_encoder
        from mtml.predict.infer import encode_descriptions

        text_features = encode_descriptions(make_text_encoder(model.cfg.text_encoder), args.refer, args.device)
    inputs = list(args.inputs)
    if args.demo:
        inputs.append(str(write_demo_scene(args.out, plain=not model.cfg.needs_labels)))
    scenes = [read_scan(path, exp.data.benchmark, args.label_map) for path in inputs]
    grids, voxelize_s = [], []
    for scene in scenes:  # every input is checked (labels, grid size) before any output is written
        if model.cfg.needs_labels and scene.labels is None:
            raise InputError(scene.source, "no 'label' vertex property: this model reads per-point semantic labels "
                                           "as input (use a checkpoint with a semantic head for plain scans)")
        if scene.labels is not None and (model.cfg.needs_labels or not args.predict_labels):
            label_channels(scene.labels, model.cfg.channel_ids(), scene.source)  # InputError on unknown labels
        t0 = time.perf_counter()
        grids.append(voxelize(scene, exp.data.voxel_size, max_voxels=max_voxels))
        voxelize_s.append(time.perf_counter() - t0)
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        raise InputError(None, "two inputs share a file name; their outputs would overwrite each other")
    for scene, grid, t_vox in zip(scenes, grids, voxelize_s):
        t0 = time.perf_counter()
        outputs = network_outputs(model, grid, args.device)
        res = segment_grid(model, scene, grid, cluster_cfg, device=args.device,
                           use_given_labels=not args.predict_labels, outputs=outputs, vote_passes=args.vote,
                           max_voxels=max_voxels)
        res.timings = {"voxelize": t_vox, **res.timings}
        point_instance = res.instances.point_instance_ids(res.grid, res.point_labels)
        meta = {"scene": scene.name, "source": scene.source, "num_points": scene.num_points,
                "voxel_size": exp.data.voxel_size, "num_voxels": res.grid.num_voxels, "checkpoint": str(ckpt),
                "labels": res.labels_source, "vote_passes": args.vote if res.labels_source == "predicted" else 1,
                "timings_s": {k: round(v, 4) for k, v in res.timings.items()}}
        point_semantic = None
        if res.voxel_predictions.labels is not None:
            point_semantic = res.voxel_predictions.labels[res.grid.point_to_voxel]
            write_semantic_outputs(args.out, scene.name, scene.points, point_semantic, class_names,
                                   picture=not args.no_picture)
        ply_path, json_path = write_instance_outputs(args.out, scene.name, scene.points, point_instance,
                                                     res.point_labels, res.instances.labels, res.instances.scores,
                                                     class_names, meta, point_semantic)
        n = len(np.unique(point_instance[point_instance >= 0]))
        if args.scannet_export:
            from mtml.io.benchmark import write_scene_predictions

            write_scene_predictions(args.scannet_export, scene.name, res.instances.point_masks(res.grid, res.point_labels),
                                    res.instances.labels, res.instances.scores)
        if not args.no_picture:
            write_instance_picture(Path(args.out) / f"{scene.name}_instances.png", scene.points, point_instance,
                                   f"{scene.name}: {n} instances (top view)")
        print(f"{scene.source}: {n} instances ({res.labels_source} labels) in {t_vox + time.perf_counter() - t0:.2f} s "
              f"-> {ply_path}, {json_path}")
        if args.refer:
            _write_referring(args, model, scene, grid, outputs, text_features, referring_superpoints(res))
    return 0


def _write_referring(args, model, scene, grid, outputs, text_features, superpoints) -> None:
    """``<name>_refer.ply`` (x y z, int ``target`` per sentence: ``target`` for one sentence, ``target_<k>`` for
    several) and ``<name>_refer.json`` (per sentence: description, score, bounding box, point count); prints
    each sentence's box."""
    import json

    from mtml.eval.referring import box_of
    from mtml.io.atomic import atomic_write_text
    from mtml.io.ply import write_ply
    from mtml.predict.infer import refer_voxels

    pred = refer_voxels(model, grid, text_features, args.device, outputs, superpoints)
    point_masks = pred.masks[:, grid.point_to_voxel]
    names = ["target"] if len(args.refer) == 1 else [f"target_{k}" for k in range(len(args.refer))]
    ply = write_ply(Path(args.out) / f"{scene.name}_refer.ply", scene.points,
                    int_props={n: m.astype(np.int64) for n, m in zip(names, point_masks)})
    answers = []
    for k, (sentence, mask) in enumerate(zip(args.refer, point_masks)):
        lo, hi = box_of(scene.points, mask)
        answers.append({"description": sentence, "property": names[k], "score": round(float(pred.scores[k]), 4),
                        "num_points": int(mask.sum()), "bbox_min": [round(float(v), 4) for v in lo],
                        "bbox_max": [round(float(v), 4) for v in hi]})
        print(f"  '{sentence}': {int(mask.sum())} points, box {answers[-1]['bbox_min']} - {answers[-1]['bbox_max']} "
              f"(score {pred.scores[k]:.2f})")
    atomic_write_text(Path(args.out) / f"{scene.name}_refer.json",
                      json.dumps({"scene": scene.name, "ply": ply.name, "answers": answers}, indent=2) + "\n")
    if not args.no_picture:
        write_referring_picture(Path(args.out) / f"{scene.name}_refer.png", scene, args.refer, point_masks)


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
