"""nlflow export: the test-mode network as .onnx / .pt2 gives the .pt's 30-view probabilities.

The demo network (I3D non-local R50 at width 8, 112-pixel views, where pool5's 7 x 7 kernel is cut
to the 4 x 4 feature map) goes through the CLI, then predict with each backend on real videos.
Full-width R50 networks converted from official-format Caffe2 files are exported to ONNX and
checked against predict with the .pt: 8x8 BN at 256 pixels, also against an independent
re-implementation of the original's test graph (helpers/caffe2_reference.py); the 32x4 affine
model (norm-free non-local blocks attending within groups of 4 frames) at 112 pixels, where
pool5's kernel is cut to the 4 x 4 map (the reference models 256-pixel views only; the .pt's
affine graph is checked against it in tests/fidelity/test_fidelity.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlflow.cli import main
from nlflow.demo.dataset import DEMO_CLASSES, make_class_video
from nlflow.errors import NlflowError
from nlflow.export.backends import ExportError, OnnxViewScores, load_exported
from nlflow.export.exporter import check_parity, export_checkpoint, export_paths
from nlflow.models import ModelConfig, load_checkpoint, save_checkpoint
from nlflow.models.test_mode import ViewScores
from nlflow.predict import PredictError, predict_videos
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.convert import convert_caffe2_to_checkpoint

from helpers import caffe2_reference as ref
from helpers.weights import trained_model

DEMO_SCALE = 112
TOLERANCE = 1e-4


def _probabilities(prediction) -> dict[str, float]:
    assert prediction.ok, prediction.error
    return dict(prediction.top)


def assert_same_predictions(expected, actual, classes: int) -> None:
    """Every class's probability within the tolerance, and the same best class, video by video."""
    for want, got in zip(expected, actual, strict=True):
        want_probs, got_probs = _probabilities(want), _probabilities(got)
        assert len(want_probs) == classes and want_probs.keys() == got_probs.keys()
        for name, probability in want_probs.items():
            assert abs(got_probs[name] - probability) <= TOLERANCE, (name, probability, got_probs[name])
        assert got.labels[0] == want.labels[0]


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_demo")
    model = trained_model(ModelConfig(num_classes=len(DEMO_CLASSES), width=8, video_length=8, sample_rate=8), seed=2)
    checkpoint = save_checkpoint(tmp / "model_final.pt", model, list(DEMO_CLASSES),
                                 extra={"settings": {"scale_range": [DEMO_SCALE, 140]}})
    videos = []
    for index, name in enumerate(("Grow", "MoveUp")):
        videos.append(tmp / f"{name}.avi")
        make_class_video(videos[-1], name, np.random.default_rng(index), num_frames=144, size=(160, 120))
    torch.set_num_threads(1)
    assert main(["export", str(checkpoint), str(tmp / "demo")]) == 0
    return tmp, checkpoint, videos


def test_the_cli_writes_both_files_and_nothing_else(demo_export):
    tmp, _, _ = demo_export
    assert sorted(p.name for p in tmp.glob("demo.*")) == ["demo.onnx", "demo.pt2"]
    assert not list(tmp.glob(".*tmp"))  # nothing half-written left behind


def test_exported_demo_network_gives_the_30_view_probabilities_of_the_pt(demo_export):
    tmp, checkpoint, videos = demo_export
    expected = predict_videos(videos, checkpoint, topk=len(DEMO_CLASSES), views=30)
    spread = [max(p for _, p in pred.top) - min(p for _, p in pred.top) for pred in expected]
    assert min(spread) > 0.05  # not a flat softmax: a wrong graph would show
    for path in (tmp / "demo.onnx", tmp / "demo.pt2"):
        actual = predict_videos(videos, path, topk=len(DEMO_CLASSES), views=30, batch_size=7)
        assert [p.num_views for p in actual] == [30, 30]
        assert_same_predictions(expected, actual, len(DEMO_CLASSES))


def test_exported_files_carry_the_network_and_take_any_number_of_views(demo_export):
    tmp, checkpoint, _ = demo_export
    network = ViewScores(load_checkpoint(checkpoint)).eval()
    onnx = load_exported(tmp / "demo.onnx")
    assert isinstance(onnx, OnnxViewScores)
    assert onnx.info.classes == list(DEMO_CLASSES) and onnx.info.view_size == DEMO_SCALE
    assert onnx.info.model_config["width"] == 8
    (views_dim, *rest), = [tuple(i.shape) for i in onnx.session.get_inputs()]
    assert views_dim == "views" and rest == [3, 8, DEMO_SCALE, DEMO_SCALE]
    for count in (1, 5):
        views = torch.randn(count, 3, 8, DEMO_SCALE, DEMO_SCALE, generator=torch.Generator().manual_seed(count))
        with torch.inference_mode():
            want_probs, want_logits = network(views)
        for exported in (onnx, load_exported(tmp / "demo.pt2")):
            probs, logits = exported(views)
            assert probs.shape == (count, len(DEMO_CLASSES))
            np.testing.assert_allclose(probs, want_probs, atol=TOLERANCE)
            np.testing.assert_allclose(logits, want_logits, atol=1e-3)


def test_a_file_that_does_not_match_its_network_is_refused(demo_export):
    tmp, _, _ = demo_export
    other = ViewScores(trained_model(ModelConfig(num_classes=len(DEMO_CLASSES), width=8), seed=5)).eval()
    with pytest.raises(ExportError, match="does not match the checkpoint"):
        check_parity(other, tmp / "demo.onnx", tmp / "demo.onnx")


def test_foreign_damaged_and_bf16_uses_are_one_line_errors(demo_export, tmp_path, capsys):
    tmp, _, videos = demo_export
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2).eval(), (torch.randn(1, 3),), dynamo=True, verbose=False).save(plain)
    with pytest.raises(ExportError, match="not an nlflow export"):
        predict_videos(videos, plain)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes((tmp / "demo.pt2").read_bytes()[:5000])
    assert main(["predict", str(videos[0]), "--checkpoint", str(cut)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nlflow predict: cannot load") and "\n" not in error
    with pytest.raises(NlflowError, match="float32: bf16 needs the .pt checkpoint"):
        predict_videos(videos, tmp / "demo.onnx", amp="bf16")
    with pytest.raises(PredictError, match="checkpoint not found"):
        predict_videos(videos, tmp_path / "missing.onnx")


def test_export_paths():
    assert {k: p.name for k, p in export_paths("out/model").items()} == {"onnx": "model.onnx", "pt2": "model.pt2"}
    assert export_paths("out/model.onnx", ["onnx"])["onnx"].name == "model.onnx"
    assert export_paths("out/v1.2", ["pt2"])["pt2"].name == "v1.2.pt2"
    with pytest.raises(ExportError, match="formats"):
        export_paths("out/model", ["tflite"])


# (zoo name the file carries, the original's config overrides, test view size: None = 256 as released)
FULL_WIDTH = {
    "i3d_nonlocal_8x8_bn": ("i3d_nonlocal_8x8_IN_pretrain_400k", {"MODEL.VIDEO_ARC_CHOICE": 2, "TRAIN.VIDEO_LENGTH": 8},
                            None),
    "i3d_nonlocal_32x4_affine": (
        "i3d_nonlocal_32x4_I3D_pretrain_400k",
        {"MODEL.VIDEO_ARC_CHOICE": 2, "MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False, "TRAIN.VIDEO_LENGTH": 32},
        112,
    ),
}


@pytest.mark.parametrize("case", FULL_WIDTH, ids=list(FULL_WIDTH))
def test_full_width_official_networks_export_with_parity(tmp_path, case):
    zoo_name, overrides, view_size = FULL_WIDTH[case]
    cfg = ref.ref_config({**overrides, "MODEL.NUM_CLASSES": 7}, width=64)
    blobs = ref.make_blobs(cfg, seed=3, solver_state=True)
    blobs["pred_w"] = blobs["pred_w"] * 10  # a sharper softmax, so that a wrong graph shows
    convert_caffe2_to_checkpoint(write_caffe2_pickle(tmp_path / f"{zoo_name}.pkl", blobs), tmp_path / "model.pt")
    checkpoint = tmp_path / "model.pt"
    if view_size is not None:  # as a checkpoint trained at this scale records it
        model = load_checkpoint(checkpoint)
        save_checkpoint(checkpoint, model, extra={"settings": {"scale_range": [view_size, view_size + 28]}})
    size = view_size or 256
    report = export_checkpoint(checkpoint, tmp_path / "net", formats=["onnx"])
    assert [p.backend for p in report.parity] == ["onnxruntime"] and report.parity[0].max_prob_difference <= TOLERANCE

    onnx = load_exported(tmp_path / "net.onnx")
    assert onnx.info.model_config["width"] == 64 and onnx.info.view_size == size
    if view_size is None:  # the reference builds the original's test graph for 256-pixel views only
        views = torch.randn(1, 3, cfg.TRAIN.VIDEO_LENGTH, size, size, generator=torch.Generator().manual_seed(0))
        expected = ref.test_graph(blobs, cfg, views.double().numpy())
        probs, _ = onnx(views)
        assert float(expected.max() - expected.min()) > 0.2
        np.testing.assert_allclose(probs.numpy(), expected, rtol=0, atol=TOLERANCE)

    video = tmp_path / "clip.avi"
    make_class_video(video, "Grow", np.random.default_rng(0), num_frames=40, size=(128, 96))
    assert_same_predictions(predict_videos([video], checkpoint, topk=7, views=1),
                            predict_videos([video], tmp_path / "net.onnx", topk=7, views=1), 7)
