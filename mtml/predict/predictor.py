"""The public inference API, in the style of detectron2's DefaultPredictor: load a model once, then segment scans
and find the objects sentences describe. It wraps the pipeline of ``mtml.predict.infer`` (what ``mtml-infer`` runs)
and returns plain typed results (``mtml.scene.Segmentation``, ``Referral``)::

    import mtml
    predictor = mtml.Predictor.from_checkpoint("toy")          # a bundled model, or a checkpoint file
    scene = mtml.read_scene("room.ply")                        # or a ScanNet scan folder
    seg = predictor.segment(scene)                             # seg.instances, seg.point_instances, ...
    [answer] = predictor.refer(scene, ["the flat box on the right side of the cabinet"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from mtml.data.dataset import label_channels
from mtml.data.normalize import normalize_scene
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.formats import read_any_scene
from mtml.model.model import MTMLNet, max_voxels_for_memory
from mtml.model.text import make_text_encoder
from mtml.predict.checkpoint import LoadedModel, load_model
from mtml.predict.infer import (
    encode_descriptions,
    network_outputs,
    refer_voxels,
    referring_superpoints,
    segment_grid,
)
from mtml.predict.tiling import (
    TILE_OVERLAP_M,
    TilePlan,
    grid_or_tiles,
    margin_voxels,
    segment_tiles,
)
from mtml.predict.voting import MAX_PASSES
from mtml.scene import (
    Instance,
    Referral,
    Scene,
    SceneResult,
    Segmentation,
    Transform,
    VoxelGrid,
)


def read_scene(path: str | os.PathLike, benchmark: str = "scannet20", label_map: str | None = None) -> Scene:
    """A Scene from a scan in any format ``mtml.io.formats.read_any_scene`` reads: a PLY file, a ScanNet scan folder
    (class names from ``label_map`` or the tsv found beside the scan), a VoteNet scan (``<scene>_vert.npy``) or a
    Pointcept scan folder; ScanNet labels in ``benchmark``'s ids. InputError naming the path for anything
    unreadable or in no accepted format (the message lists them)."""
    return read_any_scene(path, benchmark=benchmark, label_map=label_map)


def check_scene_labels(model: MTMLNet, scene: Scene, use_given_labels: bool) -> None:
    """InputError naming the scan when ``model`` cannot segment it: the model reads labels and the scan has none,
    or the labels it will use (given ones, when ``use_given_labels`` or the model reads labels) include a class the
    model does not know."""
    if model.cfg.needs_labels and scene.labels is None:
        raise InputError(scene.source, "no 'label' vertex property: this model reads per-point semantic labels "
                                       "as input (use a checkpoint with a semantic head for plain scans)")
    if scene.labels is not None and (model.cfg.needs_labels or use_given_labels):
        label_channels(scene.labels, model.cfg.channel_ids(), scene.source)


def segmentation_of(result: SceneResult, class_names: dict, timings: dict) -> Segmentation:
    """The pipeline's ``SceneResult`` as a ``Segmentation`` over the scene's points: each point joins its voxel's
    instance when its label is the instance's (as ``mtml-infer`` writes them); instances left with no point are
    dropped and the rest numbered 0.. in score order."""
    voxel_ids = result.instances.point_instance_ids(result.grid, result.point_labels)
    counts = np.bincount(voxel_ids[voxel_ids >= 0], minlength=len(result.instances))
    kept = np.flatnonzero(counts)
    renumber = np.full(len(result.instances) + 1, -1, dtype=np.int64)  # the last entry maps -1 (no instance)
    renumber[kept] = np.arange(len(kept))
    point_instances = renumber[voxel_ids]
    order = np.argsort(point_instances, kind="stable")  # stable: each instance's points stay sorted
    starts = np.searchsorted(point_instances[order], np.arange(len(kept) + 1))
    instances = []
    for new_id, k in enumerate(kept):
        label = int(result.instances.labels[k])
        instances.append(Instance(label, class_names.get(label, str(label)), float(result.instances.scores[k]),
                                  order[starts[new_id]:starts[new_id + 1]].astype(np.int64)))
    return Segmentation(point_instances, np.asarray(result.point_labels, dtype=np.int64), instances,
                        dict(class_names), timings, result.labels_source)


def aligns_walls(loaded: LoadedModel) -> bool:
    """Whether scans are turned about the vertical to put their walls on x/y before this model reads them
    (``mtml.data.normalize.normalize_scene``): yes for models trained on real scans; no for toy models (data.kind
    "toy"), trained on wall-less synthetic scenes with boxes at any yaw, whose demo and numbers stay as they were."""
    return loaded.config.data.kind != "toy"


class Predictor:
    """A loaded model that segments scans (``segment``) and, with a referring head, finds the objects sentences
    describe (``refer``). Build it with ``Predictor.from_checkpoint``; it keeps the model (and, once ``refer`` ran,
    the text encoder) for every later call.

    max_memory_gb: the network's memory bound (GiB). ``segment`` cuts a scan whose dense voxel grid would need more
    into overlapping tiles that fit (``mtml.predict.tiling``), as ``mtml-infer --max-memory-gb`` does; ``refer``
    refuses such a scan (InputError). tile_overlap_m: how far the tiles overlap (m).
    align_walls: whether scans are turned about the vertical to put their walls on x/y (``normalize``); None: the
    model's default (``aligns_walls``: yes, except for toy models).
    """

    def __init__(self, loaded: LoadedModel, device: str = "cpu", max_memory_gb: float = 8.0,
                 tile_overlap_m: float = TILE_OVERLAP_M, align_walls: bool | None = None):
        self.loaded = loaded
        self.model = loaded.model.to(device).eval()
        self.device = device
        self.max_voxels = max_voxels_for_memory(self.model.cfg, max_memory_gb)
        margin_voxels(tile_overlap_m, loaded.config.data.voxel_size)  # InputError for a bad overlap now
        self.tile_overlap_m = tile_overlap_m
        self.align_walls = aligns_walls(loaded) if align_walls is None else bool(align_walls)
        self._text_encoder = None

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike, device: str = "cpu",
                        max_memory_gb: float = 8.0, tile_overlap_m: float = TILE_OVERLAP_M,
                        align_walls: bool | None = None) -> Predictor:
        """A Predictor for a bundled model's name (``mtml.predict.checkpoint.bundled_checkpoints``) or a checkpoint
        file, on ``device``. InputError (one line) for an unknown name or a file that is not a plain mtml
        checkpoint."""
        return cls(load_model(name_or_path, device), device, max_memory_gb, tile_overlap_m, align_walls=align_walls)

    @property
    def class_names(self) -> dict:
        """Class id -> name, from the checkpoint."""
        return self.loaded.class_names

    def _scene(self, scene: Scene | str | os.PathLike) -> Scene:
        """The scene itself, or the one a path holds (``read_scene``, labels in the model's benchmark ids)."""
        return scene if isinstance(scene, Scene) else read_scene(scene, self.loaded.config.data.benchmark)

    def normalize(self, scene: Scene | str | os.PathLike, up_axis: str | None = None,
                  units: str | None = None) -> tuple[Scene, Transform, str]:
        """The scan in the frame the model reads (z up, metres, floor at z = 0; walls on x/y with ``align_walls``):
        (scene, Transform, one line saying what was assumed), as ``mtml.data.normalize.normalize_scene`` gives them.
        up_axis ("x", "-y", ...) and units ("m", "cm", "mm") override the detection; None or "auto" detect."""
        return normalize_scene(self._scene(scene), up_axis, units, align_walls=self.align_walls,
                               hint="overrides: up_axis=, units=")

    def _use_given_labels(self, scene: Scene, use_given_labels: bool | None) -> bool:
        """Whether the instances are built on the scene's own labels; InputError when the request cannot be met."""
        cfg = self.model.cfg
        if use_given_labels is True and scene.labels is None:
            raise InputError(scene.source, "use_given_labels=True, but the scene has no labels")
        if use_given_labels is False and (cfg.needs_labels or self.model.semantic_head is None):
            raise InputError(self.loaded.path, "use_given_labels=False, but this model cannot predict labels "
                                               "(it reads them as input, or has no semantic head)")
        use = use_given_labels is not False
        check_scene_labels(self.model, scene, use)
        if scene.labels is None and self.model.semantic_head is None:
            raise InputError(scene.source, "no labels, and this model has no semantic head to predict them")
        return use

    def _run(self, scene: Scene, use_given_labels: bool, vote_passes: int,
             grid: VoxelGrid | None = None) -> tuple[VoxelGrid, dict, SceneResult]:
        """(grid, network outputs, pipeline result) of a checked scene (on ``grid`` when given, else on its grid
        within ``max_memory_gb``); the result's timings start with voxelize."""
        t0 = time.perf_counter()
        if grid is None:
            grid = voxelize(scene, self.loaded.config.data.voxel_size, max_voxels=self.max_voxels)
        voxelize_s = time.perf_counter() - t0
        outputs = network_outputs(self.model, grid, self.device)
        result = segment_grid(self.model, scene, grid, self.loaded.config.cluster, device=self.device,
                              use_given_labels=use_given_labels, outputs=outputs, vote_passes=vote_passes,
                              max_voxels=self.max_voxels)
        result.timings = {"voxelize": voxelize_s, **result.timings}
        return grid, outputs, result

    def segment(self, scene: Scene | str | os.PathLike, use_given_labels: bool | None = None,
                vote_passes: int = 1, up_axis: str | None = None, units: str | None = None) -> Segmentation:
        """Instances and semantic labels of a scan (a Scene, or a path in any format ``read_scene`` reads).

        use_given_labels: None builds the instances on the scan's own labels when it has them and on the semantic
            head's predictions otherwise (``mtml-infer``'s default); True demands the scan's labels, False demands
            predicted ones (``--predict-labels``).
        vote_passes: on predicted labels, vote each point's label over this many turned, shifted and mirrored copies
            of the scan (1 to ``MAX_PASSES``, ``mtml.predict.voting``).
        A scan whose dense grid would need more than ``max_memory_gb`` is segmented in overlapping tiles and merged
        (``mtml.predict.tiling``).
        up_axis, units: the scan's up axis and units when detection should not decide (``normalize``); the model reads
            the scan in its canonical frame, and ``Segmentation.transform`` says what was assumed (points keep their
            order, so every per-point result is the scan's own).
        InputError (naming the scan or checkpoint) for a scan this model cannot segment, or one too tall for even one
        full-height tile within ``max_memory_gb``.
        """
        if not 1 <= vote_passes <= MAX_PASSES:
            raise InputError(None, f"vote_passes must be between 1 and {MAX_PASSES}, got {vote_passes}")
        t0 = time.perf_counter()
        scene, transform, _ = self.normalize(scene, up_axis, units)
        normalize_s = time.perf_counter() - t0
        use = self._use_given_labels(scene, use_given_labels)
        t0 = time.perf_counter()
        grid = grid_or_tiles(scene, self.loaded.config.data.voxel_size, self.max_voxels, self.tile_overlap_m)
        voxelize_s = time.perf_counter() - t0
        if isinstance(grid, TilePlan):  # too large for one grid within max_memory_gb
            result = segment_tiles(self.model, scene, grid, self.loaded.config.cluster, self.device, use, vote_passes)
            result.timings = {"voxelize": voxelize_s, **result.timings}
        else:
            _, _, result = self._run(scene, use, vote_passes, grid)
            result.timings["voxelize"] = voxelize_s
        segmentation = segmentation_of(result, self.class_names, {"normalize": normalize_s, **result.timings})
        segmentation.transform = transform
        return segmentation

    def refer(self, scene: Scene | str | os.PathLike, sentences: Sequence[str], up_axis: str | None = None,
              units: str | None = None) -> list[Referral]:
        """The object each sentence describes in a scan: one ``Referral`` per sentence, in order, all from one
        network pass (the referring head runs on the instances ``segment`` finds with its defaults, as
        ``mtml-infer --refer`` does; up_axis and units as there). InputError naming the checkpoint when the model
        has no referring head, and for an empty sentence."""
        if self.model.referring_head is None:
            raise InputError(self.loaded.path, "this checkpoint has no referring head (refer needs one)")
        sentences = list(sentences)
        if any(not isinstance(s, str) or not s.strip() for s in sentences):
            raise InputError(None, "refer got an empty sentence (or one that is not a string)")
        if not sentences:
            return []
        scene, _, _ = self.normalize(scene, up_axis, units)
        grid, outputs, result = self._run(scene, self._use_given_labels(scene, None), 1)
        if self._text_encoder is None:
            self._text_encoder = make_text_encoder(self.model.cfg.text_encoder)
        text = encode_descriptions(self._text_encoder, sentences, self.device)
        answer = refer_voxels(self.model, grid, text, self.device, outputs, referring_superpoints(result))
        point_masks = answer.masks[:, grid.point_to_voxel]
        found = (answer.probabilities > 0.5).any(axis=1)
        return [Referral(sentence, point_masks[k], float(answer.scores[k]), bool(found[k]))
                for k, sentence in enumerate(sentences)]
