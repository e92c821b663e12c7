"""The members of the original's pretrained_model.tar.gz by name: zoo entries, what they fix in a
config, one member taken safely out of the tarball, and converted into the configured network."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import yaml

from nlflow.archives.extract import ExtractError, UnsafeArchiveError, extract_tar_member
from nlflow.cli import main
from nlflow.errors import ConfigError
from nlflow.models import ModelConfig, build_model, read_checkpoint
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.name_map import state_dict_to_blobs
from nlflow.weights.zoo import (
    STARTS,
    TARBALL_URL,
    format_zoo_table,
    network_of_config,
    resolve_pretrained,
    zoo_entry,
)
from nlflow.workflow import stages

from helpers import REPO

R50 = "r50_pretrain_c2_model_iter450450_clean"
AFFINE = "run_i3d_baseline_400k_affine_model_400k"


def test_the_three_members_are_zoo_entries():
    names = [start.name for start in STARTS]
    assert names == [R50, "r101_pretrain_c2_model_iter450450_clean", AFFINE]
    assert [start.member for start in STARTS] == [
        "r50_pretrain_c2_model_iter450450_clean.pkl", "r101_pretrain_c2_model_iter450450_clean.pkl",
        "run_i3d_baseline_400k/affine_model_400k.pkl"]
    assert all(zoo_entry(name).url == TARBALL_URL == "https://dl.fbaipublicfiles.com/video-nonlocal/pretrained_model.tar.gz"
               for name in names)
    table = format_zoo_table()
    assert all(name in table for name in names) and "pretrained_model.tar.gz" in table


def test_a_start_fixes_only_what_its_tensors_fix():
    model = {"arch": "i3d", "use_nonlocal": True, "video_length": 8, "sample_rate": 8}
    resolved = resolve_pretrained(model, {"name": R50}).model
    assert (resolved["depth"], resolved["width"], resolved["arch"]) == (50, 64, "i3d")
    with pytest.raises(ConfigError, match=r"model.arch, model.use_nonlocal, model.video_length, model.sample_rate must be "
                                          r"set \(r50_pretrain_c2_model_iter450450_clean fixes only depth, width\)"):
        resolve_pretrained({}, {"name": R50})
    with pytest.raises(ConfigError, match=r"model.depth is 101 in the config but 50 for the zoo model"):
        resolve_pretrained(dict(model, depth=101), {"name": R50})
    affine = resolve_pretrained({"use_nonlocal": True, "video_length": 32, "sample_rate": 4}, {"name": AFFINE}).model
    assert affine["frozen_bn"] is True and affine["arch"] == "i3d"
    with pytest.raises(ConfigError, match=r"neither a released video-nonlocal-net model nor a file of pretrained_model.tar.gz "
                                          r"\(did you mean r50_pretrain_c2_model_iter450450_clean"):
        zoo_entry("r50_pretrain_c2_model_iter450450")


def tarball(path, members: dict[str, bytes], links: dict[str, str] | None = None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def test_one_member_is_taken_out_of_the_tarball(tmp_path):
    archive = tarball(tmp_path / "pretrained_model.tar.gz", {
        "pretrained_model/r50_pretrain_c2_model_iter450450_clean.pkl": b"r50",
        "pretrained_model/run_i3d_baseline_400k/affine_model_400k.pkl": b"affine",
    })
    assert extract_tar_member(archive, "run_i3d_baseline_400k/affine_model_400k.pkl", tmp_path / "a.pkl") == 6
    assert (tmp_path / "a.pkl").read_bytes() == b"affine"
    flat = tarball(tmp_path / "flat.tar.gz", {"r50_pretrain_c2_model_iter450450_clean.pkl": b"r50"})
    extract_tar_member(flat, "r50_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "r50.pkl")
    assert (tmp_path / "r50.pkl").read_bytes() == b"r50"
    with pytest.raises(ExtractError, match=r"holds no r101_pretrain_c2_model_iter450450_clean.pkl"):
        extract_tar_member(archive, "r101_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "r101.pkl")


def test_a_hostile_tarball_is_refused(tmp_path):
    link = tarball(tmp_path / "link.tar.gz", {}, {"pretrained_model/r50_pretrain_c2_model_iter450450_clean.pkl": "/etc/passwd"})
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        extract_tar_member(link, "r50_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "x.pkl")
    escape = tarball(tmp_path / "escape.tar.gz", {"../r50_pretrain_c2_model_iter450450_clean.pkl": b"x"})
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.' in path"):
        extract_tar_member(escape, "r50_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "x.pkl")
    twice = tarball(tmp_path / "twice.tar.gz", {"a/r50_pretrain_c2_model_iter450450_clean.pkl": b"1",
                                                 "b/r50_pretrain_c2_model_iter450450_clean.pkl": b"2"})
    with pytest.raises(ExtractError, match="twice"):
        extract_tar_member(twice, "r50_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "x.pkl")
    (tmp_path / "cut.tar.gz").write_bytes((tmp_path / "twice.tar.gz").read_bytes()[:40])
    with pytest.raises(ExtractError, match="damaged or unreadable"):
        extract_tar_member(tmp_path / "cut.tar.gz", "r50_pretrain_c2_model_iter450450_clean.pkl", tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


def imagenet_like(path, depth: int = 50, width: int = 8):
    """A 2-D file of the ImageNet ResNets' form: C2D blobs with the time axis dropped, 1000 classes."""
    blobs = state_dict_to_blobs(build_model(ModelConfig(arch="c2d", depth=depth, use_nonlocal=False, width=width,
                                                        num_classes=1000)))
    write_caffe2_pickle(path, {k: v[:, :, 0] if v.ndim == 5 else v for k, v in blobs.items()})
    return path


@pytest.mark.parametrize("arch", ["c2d", "i3d"])
@pytest.mark.parametrize("depth", [50, 101])
def test_a_2d_file_starts_c2d_and_i3d_nonlocal_networks_in_the_workflow(tmp_path, arch, depth):
    pkl = imagenet_like(tmp_path / f"r{depth}_pretrain_c2_model_iter450450_clean.pkl", depth)
    model = {"arch": arch, "depth": depth, "use_nonlocal": True, "width": 8, "video_length": 8, "sample_rate": 8,
             "num_classes": 400}
    stages.clean_weights(str(pkl), str(tmp_path / "init.pt"), model, drop_head=True, keep_bn_stats=True)
    payload = read_checkpoint(tmp_path / "init.pt")
    convert = payload["extra"]["convert"]
    assert payload["model_config"]["arch"] == arch and convert["head_reinitialised"]
    # 5 new blocks, each theta, phi, g and out (weight, bias) and a BN (4 tensors)
    assert sum(".nl" in key for key in convert["load"]["defaults"]) == 5 * 12
    assert ("conv1_w" in convert["load"]["inflated"]) == (arch == "i3d")


def test_evaluating_as_converted_refuses_a_file_without_the_blocks(tmp_path):
    pkl = imagenet_like(tmp_path / "r50.pkl")
    model = {"arch": "i3d", "depth": 50, "use_nonlocal": True, "width": 8, "video_length": 8, "sample_rate": 8,
             "num_classes": 1000}
    with pytest.raises(Exception, match="nonlocal_conv3_1"):
        stages.clean_weights(str(pkl), str(tmp_path / "init.pt"), model, drop_head=False, keep_bn_stats=True,
                             evaluate_as_is=True)


def test_convert_takes_the_target_network_from_a_zoo_name_or_a_config(tmp_path, capsys):
    pkl = imagenet_like(tmp_path / "r50_pretrain_c2_model_iter450450_clean.pkl", width=64)
    assert main(["weights", "convert", str(pkl), str(tmp_path / "nl.pt"), "--network",
                 "i3d_nonlocal_8x8_IN_pretrain_400k"]) == 0
    config = read_checkpoint(tmp_path / "nl.pt")["model_config"]
    assert (config["arch"], config["use_nonlocal"], config["num_classes"]) == ("i3d", True, 400)
    capsys.readouterr()
    small = imagenet_like(tmp_path / "r101.pkl", depth=101)
    workflow = yaml.safe_load((REPO / "config" / "kinetics400.yaml").read_text())
    workflow["pretrained"] = {"name": None, "pkl": str(small)}
    workflow["model"].update(arch="c2d", depth=101, use_nonlocal=True, width=8, video_length=8, sample_rate=8)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow))
    assert main(["weights", "convert", str(small), str(tmp_path / "c2d.pt"), "--config", str(tmp_path / "config.yaml"),
                 "--num-classes", "7"]) == 0
    config = read_checkpoint(tmp_path / "c2d.pt")["model_config"]
    assert (config["arch"], config["depth"], config["num_classes"]) == ("c2d", 101, 7)
    assert network_of_config(workflow, 400).depth == 101
    # without a target, a 2-D file says how to name one
    assert main(["weights", "convert", str(small), str(tmp_path / "x.pt")]) == 2
    assert "--network <released model> or --config <config.yaml>" in capsys.readouterr().err
    np.testing.assert_equal(tmp_path.joinpath("x.pt").exists(), False)
