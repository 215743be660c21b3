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
from mtml.data.voxelize import voxelize
from mtml.errors import InputError
from mtml.io.ply import read_ply
from mtml.io.scannet import read_scannet_scan
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
from mtml.predict.voting import MAX_PASSES
from mtml.scene import Instance, Referral, Scene, SceneResult, Segmentation, VoxelGrid


def read_scene(path: str | os.PathLike, benchmark: str = "scannet20", label_map: str | None = None) -> Scene:
    """A Scene from a PLY file (``mtml.io.ply.read_ply``) or a ScanNet scan folder (``read_scannet_scan``, its labels
    in ``benchmark``'s ids, class names from ``label_map`` or the tsv found beside the scan). InputError naming the
    file for anything unreadable."""
    if os.path.isdir(path):
        return read_scannet_scan(path, benchmark=benchmark, label_map=label_map)
    return read_ply(path)


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


class Predictor:
    """A loaded model that segments scans (``segment``) and, with a referring head, finds the objects sentences
    describe (``refer``). Build it with ``Predictor.from_checkpoint``; it keeps the model (and, once ``refer`` ran,
    the text encoder) for every later call.

    max_memory_gb: scans whose dense voxel grid would need more memory than this are refused (InputError), as
    ``mtml-infer --max-memory-gb`` does.
    """

    def __init__(self, loaded: LoadedModel, device: str = "cpu", max_memory_gb: float = 8.0):
        self.loaded = loaded
        self.model = loaded.model.to(device).eval()
        self.device = device
        self.max_voxels = max_voxels_for_memory(self.model.cfg, max_memory_gb)
        self._text_encoder = None

    @classmethod
    def from_checkpoint(cls, name_or_path: str | os.PathLike, device: str = "cpu",
                        max_memory_gb: float = 8.0) -> Predictor:
        """A Predictor for a bundled model's name (``mtml.predict.checkpoint.bundled_checkpoints``) or a checkpoint
        file, on ``device``. InputError (one line) for an unknown name or a file that is not a plain mtml
        checkpoint."""
        return cls(load_model(name_or_path, device), device, max_memory_gb)

    @property
    def class_names(self) -> dict:
        """Class id -> name, from the checkpoint."""
        return self.loaded.class_names

    def _scene(self, scene: Scene | str | os.PathLike) -> Scene:
        """The scene itself, or the one a path holds (``read_scene``, labels in the model's benchmark ids)."""
        return scene if isinstance(scene, Scene) else read_scene(scene, self.loaded.config.data.benchmark)

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

    def _run(self, scene: Scene, use_given_labels: bool, vote_passes: int) -> tuple[VoxelGrid, dict, SceneResult]:
        """(grid, network outputs, pipeline result) of a checked scene; the result's timings start with voxelize."""
        t0 = time.perf_counter()
        grid = voxelize(scene, self.loaded.config.data.voxel_size, max_voxels=self.max_voxels)
        voxelize_s = time.perf_counter() - t0
        outputs = network_outputs(self.model, grid, self.device)
        result = segment_grid(self.model, scene, grid, self.loaded.config.cluster, device=self.device,
                              use_given_labels=use_given_labels, outputs=outputs, vote_passes=vote_passes,
                              max_voxels=self.max_voxels)
        result.timings = {"voxelize": voxelize_s, **result.timings}
        return grid, outputs, result

    def segment(self, scene: Scene | str | os.PathLike, use_given_labels: bool | None = None,
                vote_passes: int = 1) -> Segmentation:
        """Instances and semantic labels of a scan (a Scene, or a PLY file / ScanNet folder path, ``read_scene``).

        use_given_labels: None builds the instances on the scan's own labels when it has them and on the semantic
            head's predictions otherwise (``mtml-infer``'s default); True demands the scan's labels, False demands
            predicted ones (``--predict-labels``).
        vote_passes: on predicted labels, vote each point's label over this many turned, shifted and mirrored copies
            of the scan (1 to ``MAX_PASSES``, ``mtml.predict.voting``).
        InputError (naming the scan or checkpoint) for a scan this model cannot segment.
        """
        if not 1 <= vote_passes <= MAX_PASSES:
            raise InputError(None, f"vote_passes must be between 1 and {MAX_PASSES}, got {vote_passes}")
        scene = self._scene(scene)
        use = self._use_given_labels(scene, use_given_labels)
        _, _, result = self._run(scene, use, vote_passes)
        return segmentation_of(result, self.class_names, dict(result.timings))

    def refer(self, scene: Scene | str | os.PathLike, sentences: Sequence[str]) -> list[Referral]:
        """The object each sentence describes in a scan: one ``Referral`` per sentence, in order, all from one
        network pass (the referring head runs on the instances ``segment`` finds with its defaults, as
        ``mtml-infer --refer`` does). InputError naming the checkpoint when the model has no referring head, and
        for an empty sentence."""
        if self.model.referring_head is None:
            raise InputError(self.loaded.path, "this checkpoint has no referring head (refer needs one)")
        sentences = list(sentences)
        if any(not isinstance(s, str) or not s.strip() for s in sentences):
            raise InputError(None, "refer got an empty sentence (or one that is not a string)")
        if not sentences:
            return []
        scene = self._scene(scene)
        grid, outputs, result = self._run(scene, self._use_given_labels(scene, None), 1)
        if self._text_encoder is None:
            self._text_encoder = make_text_encoder(self.model.cfg.text_encoder)
        text = encode_descriptions(self._text_encoder, sentences, self.device)
        answer = refer_voxels(self.model, grid, text, self.device, outputs, referring_superpoints(result))
        point_masks = answer.masks[:, grid.point_to_voxel]
        found = (answer.probabilities > 0.5).any(axis=1)
        return [Referral(sentence, point_masks[k], float(answer.scores[k]), bool(found[k]))
                for k, sentence in enumerate(sentences)]
