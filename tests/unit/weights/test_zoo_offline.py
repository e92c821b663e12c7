"""Zoo weights without a network: pretrained.name says which network, pretrained.pkl where a copy
of its released file is (a file or a folder); the copy is verified like a download, and a failed
download says how to go offline or train from scratch."""

from __future__ import annotations

import pytest

from nlflow.archives.download import DownloadError, NoSourceWorkedError
from nlflow.errors import ConfigError
from nlflow.weights.zoo import ZOO_URL, check_pretrained, offline_hint, resolve_pretrained
from nlflow.workflow import stages

from helpers.http_server import server  # noqa: F401  (fixture)

NAME = "i3d_nonlocal_8x8_IN_pretrain_400k"
MODEL = {"pool1_padding": 0, "dropout": 0.5}


def test_a_local_file_or_folder_serves_the_zoo_name_with_the_zoo_model_keys(tmp_path):
    (tmp_path / f"{NAME}.pkl").write_bytes(b"weights")
    for pkl in (tmp_path / f"{NAME}.pkl", tmp_path):
        source = resolve_pretrained(MODEL, {"name": NAME, "pkl": str(pkl)})
        assert source.sources == [str(tmp_path / f"{NAME}.pkl")]
        assert (source.model["arch"], source.model["width"], source.model["video_length"]) == ("i3d", 64, 8)
    renamed = tmp_path / "mine.pkl"
    renamed.write_bytes(b"weights")
    assert resolve_pretrained(MODEL, {"name": NAME, "pkl": str(renamed)}).sources == [str(renamed)]
    assert resolve_pretrained(MODEL, {"name": NAME}).sources == [ZOO_URL.format(name=NAME)]


def test_the_results_dir_is_expanded_in_the_local_path(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / f"{NAME}.pkl").write_bytes(b"w")
    source = resolve_pretrained(MODEL, {"name": NAME, "pkl": "{results_dir}/zoo"},
                                expand=lambda text: text.replace("{results_dir}", str(tmp_path)))
    assert source.sources == [str(tmp_path / "zoo" / f"{NAME}.pkl")]


def test_a_missing_copy_or_another_models_file_is_refused_with_every_other_problem(tmp_path):
    source, problems = check_pretrained(dict(MODEL, width=8), {"name": NAME, "pkl": str(tmp_path / "nowhere.pkl")})
    assert source is None and len(problems) == 2
    assert problems[0].startswith("model.width is 8 in the config but 64 for the zoo model")
    assert f"pretrained.pkl {tmp_path / 'nowhere.pkl'} does not exist" in problems[1]
    assert "https://dl.fbaipublicfiles.com/video-nonlocal/" in problems[1]
    _, (empty_folder,) = check_pretrained(MODEL, {"name": NAME, "pkl": str(tmp_path)})
    assert f"the folder pretrained.pkl {tmp_path} holds no {NAME}.pkl" in empty_folder
    other = tmp_path / "c2d_baseline_8x8_IN_pretrain_400k.pkl"
    other.write_bytes(b"w")
    with pytest.raises(ConfigError, match=f"is the released file of c2d_baseline_8x8_IN_pretrain_400k, but "
                                          f"pretrained.name is {NAME}"):
        resolve_pretrained(MODEL, {"name": NAME, "pkl": str(other)})


def test_a_relative_missing_path_shows_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, (problem,) = check_pretrained(MODEL, {"name": NAME, "pkl": "zoo/x.pkl"})
    assert f"pretrained.pkl zoo/x.pkl (= {tmp_path / 'zoo' / 'x.pkl'}) does not exist" in problem
    (tmp_path / "zoo").mkdir()
    _, (problem,) = check_pretrained(MODEL, {"name": NAME, "pkl": "zoo"})
    assert f"the folder pretrained.pkl zoo (= {tmp_path / 'zoo'}) holds no {NAME}.pkl" in problem


def test_a_failed_download_names_the_offline_route_and_training_from_scratch(server, tmp_path):  # noqa: F811
    base, state = server  # nothing served: every request answers 404
    with pytest.raises(NoSourceWorkedError) as info:
        stages.download([f"{base}/{NAME}.pkl"], str(tmp_path / f"{NAME}.pkl"), None, None, hint=offline_hint(NAME))
    message = str(info.value)
    assert "could not download" in message and "HTTP 404" in message and "\n" not in message
    assert f"download {NAME}.pkl elsewhere and set pretrained.pkl" in message
    assert "pretrained.name: null to train from scratch" in message
    assert state.requests == [(f"/{NAME}.pkl", None)]
    assert not (tmp_path / f"{NAME}.pkl").exists()


def test_the_local_copy_is_verified_against_the_lock_of_an_earlier_download(server, tmp_path):  # noqa: F811
    base, state = server
    state.files[f"/{NAME}.pkl"] = b"the released file"
    dest, lock = tmp_path / "results" / f"{NAME}.pkl", tmp_path / "results" / f"{NAME}.pkl.sha256"
    stages.download([f"{base}/{NAME}.pkl"], str(dest), None, str(lock), hint=offline_hint(NAME))
    assert lock.read_text().endswith(f"  {NAME}.pkl\n")
    dest.unlink()  # e.g. a new results folder that kept the lock, or a cleaned-up download

    copy = tmp_path / "elsewhere" / f"{NAME}.pkl"
    copy.parent.mkdir()
    copy.write_bytes(b"the released file")
    stages.download([str(copy)], str(dest), None, str(lock), hint=offline_hint(NAME))
    assert dest.read_bytes() == b"the released file"

    dest.unlink()
    copy.write_bytes(b"another file under that name")
    with pytest.raises(DownloadError, match="SHA-256 mismatch") as info:
        stages.download([str(copy)], str(dest), None, str(lock), hint=offline_hint(NAME))
    assert "pretrained.pkl" not in str(info.value)  # the hint is for sources that fail, not for a wrong file
    assert not dest.exists()
