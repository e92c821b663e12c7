"""Caffe2 pickles: py2-format files load, our files look like Caffe2's, malicious files never run."""

import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

from nlflow.errors import NlflowError
from nlflow.weights.caffe2_pickle import UnsafePickleError, WeightFileError, read_caffe2_pickle, write_caffe2_pickle


def _py2_pickle(values: tuple[float, float], lr: float) -> bytes:
    """Bytes exactly as Python 2 + numpy 1.x pickled {"blobs": {"conv1_w": float32[2], "lr": float}}."""
    data = struct.pack("<2f", *values)
    return (
        b"\x80\x02}q\x00U\x05blobsq\x01}q\x02(U\x07conv1_wq\x03"
        b"cnumpy.core.multiarray\n_reconstruct\nq\x04cnumpy\nndarray\nq\x05K\x00\x85q\x06U\x01b\x87q\x07Rq\x08"
        b"(K\x01K\x02\x85q\tcnumpy\ndtype\nq\nU\x02f4K\x00K\x01\x87Rq\x0b"
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x08" + data + b"tb"
        b"U\x02lrG" + struct.pack(">d", lr) + b"us."
    )


def test_reads_a_python2_pickle(tmp_path):
    path = tmp_path / "py2.pkl"
    path.write_bytes(_py2_pickle((1.5, -2.0), 0.01))
    blobs = read_caffe2_pickle(path)
    assert set(blobs) == {"conv1_w", "lr"}
    assert blobs["conv1_w"].dtype == np.float32
    np.testing.assert_array_equal(blobs["conv1_w"], [1.5, -2.0])
    assert blobs["lr"] == 0.01


def test_round_trip_and_the_written_file_is_python2_style(tmp_path):
    rng = np.random.default_rng(0)
    blobs = {
        "conv1_w": rng.standard_normal((4, 3, 5, 7, 7)).astype(np.float32),
        "res_conv1_bn_riv": rng.random(4).astype(np.float32),
        "model_iter": np.array([400000], dtype=np.int64),
        "lr": np.float32(0.001),
        "big": rng.standard_normal(300).astype(np.float64),  # > 255 bytes: BINSTRING
    }
    path = write_caffe2_pickle(tmp_path / "w.pkl", blobs)
    assert [p.name for p in tmp_path.iterdir()] == ["w.pkl"]
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02"  # protocol 2
    ops = list(pickletools.genops(data))
    globals_used = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_used <= {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype", "numpy.core.multiarray scalar"}
    assert not any(op.name in ("BINUNICODE", "SHORT_BINUNICODE") for op, _, _ in ops)  # py2 str only
    assert pickle.loads(data, encoding="latin1").keys() == {"blobs"}
    loaded = read_caffe2_pickle(path)
    assert loaded.keys() == blobs.keys()
    for name, value in blobs.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert np.asarray(loaded[name]).dtype == np.asarray(value).dtype


def test_flat_dict_without_blobs_key_is_accepted(tmp_path):
    path = tmp_path / "flat.pkl"
    path.write_bytes(pickle.dumps({"conv1_w": np.ones((2, 2), np.float32), "pred_b": np.zeros(3)}, protocol=2))
    assert set(read_caffe2_pickle(path)) == {"conv1_w", "pred_b"}


class _RunsShell:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _RunsExec:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('owned')",))


@pytest.mark.parametrize("payload_class, refused_name", [(_RunsShell, "system"), (_RunsExec, "exec")])
def test_malicious_pickles_are_refused_and_nothing_runs(tmp_path, payload_class, refused_name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    evil = {"blobs": {"conv1_w": np.ones(2, np.float32), "x": payload_class(str(marker))}}
    path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UnsafePickleError, match=refused_name) as info:
        read_caffe2_pickle(path)
    assert isinstance(info.value, NlflowError)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    path = tmp_path / "codec.pkl"
    # _codecs.encode("x", "rot13") — harmless, but no weight file needs it.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UnsafePickleError, match="latin1"):
        read_caffe2_pickle(path)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        read_caffe2_pickle(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x02}q\x00(U")  # truncated
    with pytest.raises(WeightFileError, match="not a readable pickle"):
        read_caffe2_pickle(tmp_path / "junk.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(WeightFileError, match="dict of blobs"):
        read_caffe2_pickle(tmp_path / "list.pkl")
