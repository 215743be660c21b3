import json

import numpy as np
import pytest
from plyfile import PlyData

from mtml.cli import run_command
from mtml.cli.infer import main as infer_main
from mtml.data.toy import generate_scene
from mtml.io.ply import scene_to_ply, write_ply
from mtml.model.model import load_checkpoint


def _run(argv, capsys):
    code = run_command(infer_main, argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_infer_writes_ply_and_json(tiny_checkpoint, tmp_path, capsys):
    scene = generate_scene(3)
    src = scene_to_ply(scene, tmp_path / "in" / "room.ply")
    code, out, err = _run([str(src), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    ply = PlyData.read(str(tmp_path / "out" / "room_instances.ply"))
    v = ply["vertex"].data
    assert len(v) == scene.num_points
    assert {"x", "y", "z", "red", "green", "blue", "instance", "label"} <= set(v.dtype.names)
    assert np.array_equal(v["label"], scene.labels)
    assert (v["instance"][scene.labels == 0] == -1).all()  # the floor is never an instance
    summary = json.loads((tmp_path / "out" / "room_instances.json").read_text())
    ids = set(np.unique(v["instance"][v["instance"] >= 0]).tolist())
    assert {i["id"] for i in summary["instances"]} == ids
    for inst in summary["instances"]:
        assert set(inst) == {"id", "label", "label_name", "score", "num_points", "bbox_min", "bbox_max"}
        assert inst["num_points"] == int((v["instance"] == inst["id"]).sum())
        assert inst["label"] in range(1, 6) and inst["label_name"] != str(inst["label"])
    timings = summary["timings_s"]
    assert set(timings) == {"setup", "read", "normalize", "voxelize", "network", "cluster", "point_labels", "writing",
                            "pictures", "other", "total"}
    assert summary["frame"]["up_axis"] == "z" and summary["frame"]["units"] == "m"  # a toy scene: z up, metres
    assert out.startswith(f"{src}: assumed z-up (detected), metres (detected), no turn about the vertical")
    assert sum(v for k, v in timings.items() if k != "total") == pytest.approx(timings["total"], abs=1e-3)
    assert (tmp_path / "out" / "room_instances.png").stat().st_size > 5000


def _bad_inputs(tmp_path):
    good = np.random.default_rng(0).uniform(0, 1, (50, 3)).astype(np.float32)
    labels = {"label": np.ones(50, dtype=np.int64)}
    (tmp_path / "notply.ply").write_text("hello, I am not a PLY file\n")
    no_xyz = np.empty(3, dtype=[("a", "f4"), ("b", "f4")])
    from plyfile import PlyElement
    PlyData([PlyElement.describe(no_xyz, "vertex")]).write(str(tmp_path / "noxyz.ply"))
    nan = good.copy()
    nan[7, 1] = np.nan
    write_ply(tmp_path / "nan.ply", nan, int_props=labels)
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3), np.float32), int_props={"label": np.zeros(0, np.int64)})
    huge = good.copy()
    huge[0] = [5000.0, 5000.0, 50.0]
    write_ply(tmp_path / "huge.ply", huge, int_props=labels)
    write_ply(tmp_path / "nolabel.ply", good)
    return {
        "missing.ply": "no such file",
        "notply.ply": "not a PLY file",
        "noxyz.ply": "x",
        "nan.ply": "NaN",
        "empty.ply": "empty",
        "huge.ply": "exceeds",
        "nolabel.ply": "no 'label' vertex property",
    }


@pytest.mark.parametrize("name", ["missing.ply", "notply.ply", "noxyz.ply", "nan.ply", "empty.ply", "huge.ply",
                                  "nolabel.ply"])
def test_bad_input_one_line_exit_2_no_output(name, tiny_checkpoint, tmp_path, capsys):
    expected = _bad_inputs(tmp_path)[name]
    good = scene_to_ply(generate_scene(1), tmp_path / "good.ply")
    out_dir = tmp_path / "out"
    # the good scene comes first: a bad one later in the list must still leave nothing behind
    code, out, err = _run([str(good), str(tmp_path / name), "--checkpoint", str(tiny_checkpoint),
                           "--out", str(out_dir), "--max-memory-gb", "1"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and expected.lower() in lines[0].lower(), lines[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_demo_runs_on_bundled_style_checkpoint(tiny_checkpoint, tmp_path, capsys):
    code, out, err = _run(["--demo", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert (tmp_path / "toy_00900_gt.ply").exists() and (tmp_path / "toy_00900_gt_instances.json").exists()


def test_demo_of_a_semantic_model_segments_the_plain_scene(tiny_semantic_checkpoint, tmp_path, capsys):
    code, out, err = _run(["--demo", "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path)], capsys)
    assert code == 0, err
    plain = PlyData.read(str(tmp_path / "toy_00900.ply"))["vertex"].data
    assert set(plain.dtype.names) == {"x", "y", "z"}
    assert "predicted labels" in out
    assert (tmp_path / "toy_00900_instances.ply").exists() and (tmp_path / "toy_00900_semantic.ply").exists()
    gt = PlyData.read(str(tmp_path / "toy_00900_gt.ply"))["vertex"].data
    assert {"label", "instance"} <= set(gt.dtype.names) and len(gt) == len(plain)


# --- plain scans: a model with a semantic head predicts the labels, then the instances


def test_plain_scan_gets_semantic_labels_and_instances(tiny_semantic_checkpoint, tmp_path, capsys):
    scene = generate_scene(5)
    src = write_ply(tmp_path / "plain.ply", scene.points)  # x y z only
    code, out, err = _run([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert "predicted labels" in out
    v = PlyData.read(str(tmp_path / "o" / "plain_instances.ply"))["vertex"].data
    assert {"instance", "label", "semantic"} <= set(v.dtype.names)
    assert np.array_equal(v["label"], v["semantic"])  # instances were built on the predicted labels
    assert set(np.unique(v["semantic"])) <= set(range(6))
    sem = PlyData.read(str(tmp_path / "o" / "plain_semantic.ply"))["vertex"].data
    assert np.array_equal(sem["semantic"], v["semantic"])
    colors = np.c_[sem["red"], sem["green"], sem["blue"]]
    for label in np.unique(sem["semantic"]):  # one colour per class
        assert len(np.unique(colors[sem["semantic"] == label], axis=0)) == 1
    summary = json.loads((tmp_path / "o" / "plain_instances.json").read_text())
    assert summary["labels"] == "predicted"
    assert (tmp_path / "o" / "plain_semantic.png").stat().st_size > 5000


def test_given_labels_are_used_unless_told_otherwise(tiny_semantic_checkpoint, tmp_path, capsys):
    scene = generate_scene(6)
    src = scene_to_ply(scene, tmp_path / "labelled.ply")
    code, out, err = _run([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "a"),
                           "--no-picture"], capsys)
    assert code == 0, err
    v = PlyData.read(str(tmp_path / "a" / "labelled_instances.ply"))["vertex"].data
    assert np.array_equal(v["label"], scene.labels)  # the scan's own labels
    assert "semantic" in v.dtype.names  # the head's prediction is still written beside them
    assert json.loads((tmp_path / "a" / "labelled_instances.json").read_text())["labels"] == "given"
    code, out, err = _run([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "b"),
                           "--no-picture", "--predict-labels"], capsys)
    assert code == 0, err
    v = PlyData.read(str(tmp_path / "b" / "labelled_instances.ply"))["vertex"].data
    assert np.array_equal(v["label"], v["semantic"])
    assert not (tmp_path / "b" / "labelled_semantic.png").exists()


def test_one_hot_model_still_demands_labels(tiny_checkpoint, tmp_path, capsys):
    src = write_ply(tmp_path / "plain.ply", generate_scene(5).points)
    code, out, err = _run([str(src), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "plain.ply" in err and "label" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_checkpoint_carries_anchors_and_class_counts(tiny_semantic_checkpoint):
    model, state = load_checkpoint(tiny_semantic_checkpoint)
    anchors = model.semantic_head.anchors
    assert anchors.shape == (6, 384)
    assert np.allclose(anchors.norm(dim=1).numpy(), 1.0, atol=1e-5)  # MiniLM features of the class names
    assert len(state["class_voxel_counts"]) == 6 and min(state["class_voxel_counts"]) > 0


def test_vote_labels_of_a_plain_scan(tiny_semantic_checkpoint, tmp_path, capsys):
    scene = generate_scene(7)
    src = write_ply(tmp_path / "plain.ply", scene.points)
    code, out, err = _run([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "o"),
                           "--vote", "4", "--no-picture"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "plain_instances.json").read_text())
    assert summary["labels"] == "predicted" and summary["vote_passes"] == 4
    assert summary["timings_s"]["voting_voxelize"] > 0  # the three other copies were voxelised and segmented
    v = PlyData.read(str(tmp_path / "o" / "plain_instances.ply"))["vertex"].data
    assert len(v) == scene.num_points and set(np.unique(v["label"])) <= set(range(6))


@pytest.mark.parametrize("passes", ["0", "17"])
def test_vote_out_of_range_is_refused(passes, tiny_semantic_checkpoint, tmp_path, capsys):
    src = write_ply(tmp_path / "plain.ply", generate_scene(7).points)
    with pytest.raises(SystemExit) as exc:
        infer_main([str(src), "--checkpoint", str(tiny_semantic_checkpoint), "--out", str(tmp_path / "o"),
                    "--vote", passes])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--vote" in err and "must be between 1 and 16" in err
    assert not (tmp_path / "o").exists()


# --- scans as users have them: another up axis, other units (mtml.data.normalize)

Y_UP = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # a y-up export of a z-up scan: (x, y, z) -> (x, z, -y)
MINUS_Y_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # (x, y, z) -> (x, -z, y): up is -y


def test_y_up_millimetre_scan_is_segmented_as_the_original(tiny_checkpoint, tmp_path, capsys):
    """mtml-infer says in one line what it assumed, segments a y-up millimetre export as the z-up metre original
    and writes the scan's own coordinates; --up-axis / --units override the detection (negative axes as =-y)."""
    scene = generate_scene(3)
    users_points = (scene.points.astype(np.float64) @ Y_UP.T * 1000).astype(np.float32)
    original = scene_to_ply(scene, tmp_path / "z" / "room.ply")
    users = write_ply(tmp_path / "y" / "room.ply", users_points, int_props={"label": scene.labels})
    code, out, err = _run([str(original), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "oz"),
                           "--no-picture"], capsys)
    assert code == 0, err
    code, out, err = _run([str(users), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "oy"),
                           "--no-picture"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (f"{users}: assumed y-up (detected), millimetres (detected), no turn about the "
                                   "vertical, floor at z=0 (overrides: --up-axis, --units)")
    as_original = PlyData.read(str(tmp_path / "oz" / "room_instances.ply"))["vertex"].data
    as_users = PlyData.read(str(tmp_path / "oy" / "room_instances.ply"))["vertex"].data
    np.testing.assert_array_equal(np.c_[as_users["x"], as_users["y"], as_users["z"]], users_points)
    np.testing.assert_array_equal(as_users["instance"], as_original["instance"])
    frame = json.loads((tmp_path / "oy" / "room_instances.json").read_text())["frame"]
    assert (frame["up_axis"], frame["units"], frame["scale"]) == ("y", "mm", 0.001)

    minus_y_cm = write_ply(tmp_path / "m" / "room.ply",
                           (scene.points.astype(np.float64) @ MINUS_Y_UP.T * 100).astype(np.float32),
                           int_props={"label": scene.labels})
    code, out, err = _run([str(minus_y_cm), "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "om"),
                           "--no-picture", "--up-axis=-y", "--units", "cm"], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == (f"{minus_y_cm}: assumed -y-up (given), centimetres (given), no turn about the "
                                   "vertical, floor at z=0")
    as_given = PlyData.read(str(tmp_path / "om" / "room_instances.ply"))["vertex"].data
    np.testing.assert_array_equal(as_given["instance"], as_original["instance"])
