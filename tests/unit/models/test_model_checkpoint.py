"""Model checkpoints: atomic, self-describing, loadable with weights_only=True."""

import os

import pytest
import torch
from torch import nn

from nlflow.errors import NlflowError
from nlflow.models import CheckpointError, ModelConfig, build_model, load_checkpoint, read_checkpoint, save_checkpoint


def _trained_looking_model(cfg: ModelConfig) -> nn.Module:
    torch.manual_seed(1)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # make zero-initialised gammas matter
    model.train()
    model(torch.randn(2, 3, 4, 32, 32))  # moves BN running statistics away from defaults
    return model


def test_round_trip_gives_identical_outputs_and_metadata(tmp_path):
    cfg = ModelConfig(width=4, num_classes=3, video_length=4)
    model = _trained_looking_model(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, classes=["a", "b", "c"], extra={"iter": 10, "note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "nlflow-model" and raw["version"] == 1
    assert raw["model_config"] == cfg.to_dict() and raw["classes"] == ["a", "b", "c"]
    assert raw["extra"] == {"iter": 10, "note": "x"}

    loaded = load_checkpoint(path)
    assert not loaded.training and loaded.classes == ["a", "b", "c"] and loaded.config == cfg
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_wrapped_models_are_unwrapped(tmp_path):
    model = build_model(ModelConfig(width=4, num_classes=2, frozen_bn=True))
    save_checkpoint(tmp_path / "w.pt", nn.DataParallel(model))
    assert set(read_checkpoint(tmp_path / "w.pt")["state_dict"]) == set(model.state_dict())


def test_bad_inputs_give_clear_errors(tmp_path):
    model = build_model(ModelConfig(width=4, num_classes=2))
    with pytest.raises(CheckpointError, match="3 class names"):
        save_checkpoint(tmp_path / "a.pt", model, classes=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="only plain types"):
        save_checkpoint(tmp_path / "b.pt", model, extra={"bad": object()})
    assert not (tmp_path / "b.pt").exists()
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NlflowError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an nlflow model checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="ModelConfig"):
        save_checkpoint(tmp_path / "c.pt", nn.Linear(2, 2))


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_file_with_pickled_code_gets_one_line(tmp_path):
    torch.save({"format": "nlflow-model", "payload": _RunsCode()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(tmp_path / "code.pt")
    message = str(caught.value)
    assert "\n" not in message and "not a plain weights file" in message and "getcwd" in message


def test_weights_that_do_not_fit_the_config_are_reported(tmp_path):
    model = build_model(ModelConfig(width=4, num_classes=2))
    path = save_checkpoint(tmp_path / "m.pt", model)
    raw = torch.load(path, weights_only=True)
    raw["model_config"]["num_classes"] = 5
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)
