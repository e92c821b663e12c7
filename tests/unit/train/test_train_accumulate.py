"""Gradient accumulation (train.accumulate), the out-of-memory messages, and which settings are
operational (they change how a run goes, never its weights)."""

from __future__ import annotations

import shutil

import pytest
import torch

from nlflow.device_memory import largest_fitting_batch, requested_bytes
from nlflow.errors import TrainingError
from nlflow.evaluate import EvaluationError, ViewScorer
from nlflow.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from nlflow.train import train
from nlflow.train.loop import weights_digest
from nlflow.train.runtime import fitting_accumulate
from nlflow.train.snapshots import list_snapshots

from helpers.training import CLASSES, tiny_data, tiny_settings  # noqa: F401 (tiny_data is a fixture)

OOM_TEXT = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.64 GiB of "
            "which 1.06 GiB is free.")


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frozen_init(tmp_path_factory):
    """Frozen (affine) BN: a micro-batch's statistics cannot differ from the whole batch's."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, num_classes=len(CLASSES), video_length=4, sample_rate=2, frozen_bn=True))
    return save_checkpoint(tmp_path_factory.mktemp("frozen") / "init.pt", model, CLASSES)


def _state(path):
    return load_checkpoint(path).state_dict()


def test_accumulated_micro_batches_give_the_update_of_the_whole_batch(tiny_data, frozen_init, tmp_path):
    common = dict(batch_size=8, max_iter=4, dropout=0.0, val_period=0, val_videos=0, precise_bn_iters=0)
    whole = train(tiny_settings(**common), tiny_data["train"], None, frozen_init, tmp_path / "whole", CLASSES)
    split = train(tiny_settings(accumulate=2, **common), tiny_data["train"], None, frozen_init, tmp_path / "split",
                  CLASSES)
    a, b = _state(whole), _state(split)
    moved = max(float((a[k] - load_checkpoint(frozen_init).state_dict()[k]).abs().max()) for k in a)
    assert moved > 1e-3  # training changed the weights, so equality below means something
    # Same clips, same update; only the summation order of the gradients differs (float noise).
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=2e-6)


def test_with_trainable_bn_accumulate_keeps_the_bn_groups(tiny_data, tmp_path):
    """Trainable BN with bn_batch 4: one forward pass of 8 clips (two groups) and two accumulated
    micro-batches of 4 normalise the same clips together, so they end with the same weights and BN
    statistics; without groups the whole 8 are normalised together and the run differs."""
    common = dict(batch_size=8, max_iter=4, dropout=0.0, val_period=0, val_videos=0, precise_bn_iters=2)
    runs = {name: _state(train(tiny_settings(**common, **extra), tiny_data["train"], None, tiny_data["init"],
                               tmp_path / name, CLASSES))
            for name, extra in {"grouped": dict(bn_batch=4), "accumulated": dict(bn_batch=4, accumulate=2),
                                "whole": dict(bn_batch=0)}.items()}
    for key, value in runs["accumulated"].items():
        if key.endswith("num_batches_tracked"):  # counts groups in one pass, micro-batches in the other
            continue
        # Summing two micro-batches' gradients rounds differently from one backward pass: float
        # noise of ~1e-4 relative after 4 updates, far below the ~1e-2 effect of the groups.
        torch.testing.assert_close(runs["grouped"][key], value, rtol=1e-3, atol=1e-5,
                                   msg=lambda text, key=key: f"{key}: {text}")
    assert max(float((runs["whole"][k].float() - runs["grouped"][k].float()).abs().max()) for k in runs["whole"]) > 1e-3


def test_a_run_resumed_mid_way_with_accumulation_ends_bit_identical(tiny_data, tmp_path):
    settings = tiny_settings(accumulate=2, max_iter=6, checkpoint_period=2, keep_checkpoints=5, val_period=3)
    whole = tmp_path / "whole"
    reference = load_checkpoint(train(settings, tiny_data["train"], tiny_data["val"], tiny_data["init"], whole,
                                      CLASSES))
    # The same run as if killed right after its snapshot at iteration 4.
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    for iteration, path in list_snapshots(cut / "checkpoints"):
        if iteration > 4:
            path.unlink()
    (cut / "model_final.pt").unlink()
    resumed = load_checkpoint(train(settings, tiny_data["train"], tiny_data["val"], tiny_data["init"], cut, CLASSES))
    assert weights_digest(resumed) == weights_digest(reference)


def test_operational_settings_leave_the_weights_untouched(tiny_data, tmp_path):
    """Validation, logging and checkpoint periods, retention and loader workers: bit-identical weights
    (dropout on, so a validation pass that drew from the training RNG would show)."""
    base = tiny_settings(max_iter=6, val_period=0)
    other = tiny_settings(max_iter=6, val_period=2, log_period=3, checkpoint_period=5, keep_checkpoints=1,
                          num_workers=1)
    assert base.result_dict() == other.result_dict()
    a = train(base, tiny_data["train"], tiny_data["val"], tiny_data["init"], tmp_path / "a", CLASSES)
    b = train(other, tiny_data["train"], tiny_data["val"], tiny_data["init"], tmp_path / "b", CLASSES)
    assert weights_digest(load_checkpoint(a)) == weights_digest(load_checkpoint(b))


def test_batch_size_must_split_into_equal_micro_batches(tiny_data, tmp_path):
    with pytest.raises(Exception, match="does not divide"):
        train(tiny_settings(batch_size=6, accumulate=4), tiny_data["train"], None, tiny_data["init"], tmp_path, CLASSES)


class _OutOfMemory:
    """A module forward hook that fails like a full CUDA device once a batch reaches ``at`` items."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, module, args, output):
        if isinstance(args[0], torch.Tensor) and args[0].dim() == 5 and len(args[0]) >= self.at:
            raise torch.OutOfMemoryError(OOM_TEXT)


def test_out_of_memory_in_training_is_one_line_naming_the_micro_batch(tiny_data, tmp_path):
    handle = torch.nn.modules.module.register_module_forward_hook(_OutOfMemory(at=4))
    try:
        with pytest.raises(TrainingError) as caught:
            train(tiny_settings(batch_size=4), tiny_data["train"], None, tiny_data["init"], tmp_path, CLASSES)
    finally:
        handle.remove()
    message = str(caught.value)
    assert "\n" not in message and "out of memory with micro-batches of 4 clips" in message
    assert "train.accumulate" in message


def test_out_of_memory_in_evaluation_is_one_line_naming_the_batch(tiny_data):
    model = build_model(ModelConfig(width=4, num_classes=len(CLASSES), video_length=4, sample_rate=2))
    scorer = ViewScorer(model, batch_size=6, device="cpu")
    handle = torch.nn.modules.module.register_module_forward_hook(_OutOfMemory(at=6))
    try:
        with pytest.raises(EvaluationError) as caught:
            scorer.score(torch.zeros(6, 4, 32, 32, 3, dtype=torch.uint8))
    finally:
        handle.remove()
    message = str(caught.value)
    assert "\n" not in message and "6 views per forward pass" in message and "test.batch_size" in message


def test_the_accumulate_that_fits_is_estimated_from_the_failure():
    assert requested_bytes(OOM_TEXT) == 2 * 2**30
    assert requested_bytes("no size here") == 0
    gib = 2**30
    # 16 clips needed 30 GiB with 6 GiB of weights and optimizer state: 1.5 GiB a clip; 24 GiB x 0.9 holds 10.
    assert largest_fitting_batch(16, 6 * gib, 30 * gib, 24 * gib) == 10
    assert largest_fitting_batch(16, 23 * gib, 30 * gib, 24 * gib) == 0
    # 64 clips per process: micro-batches of at most 10 clips need accumulate 8 (8 clips each).
    assert fitting_accumulate(64, 1, 10) == 8
    assert fitting_accumulate(64, 8, 10) == 16  # always more than today's
    assert fitting_accumulate(6, 1, 0) is None
