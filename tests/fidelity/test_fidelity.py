"""nlflow's test-time scores against an independent reading of the original's test graph.

``caffe2_reference.py`` re-implements video-nonlocal-net's ``create_model(split='test')`` op by op
from Caffe2 blobs, written from the original's source without nlflow's model code. Here the same
official-format blobs (with ``model_iter``, ``lr`` and ``*_momentum``, as a released checkpoint has
them) go through ``nlflow weights convert`` and evaluation's scorer, and the per-view
probabilities must equal the original graph's within 1e-4, for BN and affine checkpoints, 8- and
32-frame models, ``resnet_video`` and ``resnet_video_org``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlflow.evaluate import ViewScorer
from nlflow.models import load_checkpoint
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.convert import convert_caffe2_to_checkpoint

from helpers import caffe2_reference as ref

# (zoo name the file carries, the original's config overrides, network width)
CASES = {
    "i3d_nonlocal_8x8_bn": (
        "i3d_nonlocal_8x8_IN_pretrain_400k",
        {"MODEL.VIDEO_ARC_CHOICE": 2, "TRAIN.VIDEO_LENGTH": 8},
        8,
    ),
    "c2d_nonlocal_32x2_bn_org": (
        "c2d_nonlocal_32x2_IN_pretrain_400k",
        {"MODEL.VIDEO_ARC_CHOICE": 1, "MODEL.MODEL_NAME": "resnet_video_org", "TRAIN.VIDEO_LENGTH": 32},
        4,
    ),
    "i3d_nonlocal_32x4_affine": (
        "i3d_nonlocal_32x4_I3D_pretrain_400k",
        {"MODEL.VIDEO_ARC_CHOICE": 2, "MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False, "TRAIN.VIDEO_LENGTH": 32},
        4,
    ),
    "i3d_baseline_32x4_affine": (
        "i3d_baseline_32x4_I3D_pretrain_400k",
        {"MODEL.VIDEO_ARC_CHOICE": 2, "MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False,
         "NONLOCAL.CONV3_NONLOCAL": False, "NONLOCAL.CONV4_NONLOCAL": False, "TRAIN.VIDEO_LENGTH": 32},
        4,
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_view_probabilities_equal_the_original_test_graph(tmp_path, case):
    zoo_name, overrides, width = CASES[case]
    cfg = ref.ref_config({**overrides, "MODEL.NUM_CLASSES": 7}, width=width)
    blobs = ref.make_blobs(cfg, seed=3, solver_state=True)
    blobs["pred_w"] = blobs["pred_w"] * 10  # a sharper softmax, so that a wrong graph shows
    pkl = write_caffe2_pickle(tmp_path / f"{zoo_name}.pkl", blobs)
    convert_caffe2_to_checkpoint(pkl, tmp_path / "model.pt")
    model = load_checkpoint(tmp_path / "model.pt")
    assert model.config.video_length == cfg.TRAIN.VIDEO_LENGTH

    # Two normalised 256 x 256 test views: res5 is 8 x 8, pool5 leaves 2 x 2 positions.
    views = torch.randn(2, 3, cfg.TRAIN.VIDEO_LENGTH, 256, 256, generator=torch.Generator().manual_seed(0))
    expected = ref.test_graph(blobs, cfg, views.double().numpy())
    probs, _ = ViewScorer(model, batch_size=2, device="cpu").score(views)
    assert expected.shape == probs.shape == (2, 7)
    assert float(expected.max() - expected.min()) > 0.2  # not a flat softmax: the test can see errors
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-4)
