"""Training-side parts of nlflow against an independent reading of the original.

* Precise BN (``lib/utils/bn_helper.py``): per batch the original reads the BN's saved mean ``sm``
  and inverse std ``siv`` (``1 / sqrt(var + eps)``, the biased batch variance), forms
  ``E[x^2] = (1 / siv)^2 - eps + sm^2``, averages ``sm`` and ``E[x^2]`` over every batch of every
  GPU and stores ``E[x^2] - E[x]^2`` as the running variance. Written out here with numpy from the
  activations at each BN's input (captured with the test's own hooks), and checked to be the
  variance of all those activations together.
* The BN batch: the original normalised the 8 clips of one GPU (``TRAIN.BATCH_SIZE / NUM_GPUS``:
  64 / 8 and 32 / 4 in its BN configs); a larger forward batch with ``bn_batch`` 8 must give what
  separate forward passes of 8 give.
* The downscale size: the original's ``ffmpeg -filter:v scale="trunc(oh*a/2)*2:256"``, run with
  a real FFmpeg binary (imageio-ffmpeg's), against :func:`nlflow.video.downscale.output_size`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import socket
import subprocess

import av
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from nlflow.models import ModelConfig, build_model
from nlflow.models.norm import set_bn_batch
from nlflow.train.distributed import DistInfo
from nlflow.train.measure import recompute_bn_stats
from nlflow.video.downscale import output_size
from nlflow.video.views import to_network_input

BN_EPSILON = 1e-5
CPU = torch.device("cpu")


def _tiny_network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(width=4, num_classes=5, video_length=4, sample_rate=2))


def _batches(count: int, clips: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 clips [N, T, H, W, 3], each batch around its own brightness, so that the batch means
    differ and the between-batch term of the variance matters."""
    rng = np.random.default_rng(seed)
    batches = []
    for index in range(count):
        centre = 60 + 60 * index
        frames = rng.normal(centre, 30, size=(clips, 4, 32, 32, 3)).clip(0, 255).astype(np.uint8)
        batches.append((torch.from_numpy(frames), torch.zeros(clips, dtype=torch.long)))
    return batches


@contextlib.contextmanager
def _bn_inputs(model: nn.Module):
    """The activations every BN layer receives, per layer and batch, as float64 arrays."""
    captured: dict[str, list[np.ndarray]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm3d):
            captured[name] = []
            hooks.append(module.register_forward_pre_hook(
                lambda _m, args, name=name: captured[name].append(args[0].detach().double().numpy())))
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()


def _bn_helper_statistics(per_batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``bn_helper.py``'s ``_collect_bn_stats`` + ``_finalize_bn_stats`` for one layer."""
    mean_x = mean_x2 = 0.0
    for x in per_batch:
        flat = x.transpose(1, 0, 2, 3, 4).reshape(x.shape[1], -1)  # as its docstring: channels first
        sm = flat.mean(axis=1)
        siv = 1.0 / np.sqrt(flat.var(axis=1) + BN_EPSILON)
        single_batch_var = (1.0 / siv) ** 2 - BN_EPSILON
        mean_x = mean_x + sm
        mean_x2 = mean_x2 + single_batch_var + sm ** 2
    mean_x, mean_x2 = mean_x / len(per_batch), mean_x2 / len(per_batch)
    return mean_x, mean_x2 - mean_x ** 2


@pytest.mark.parametrize("bn_batch", [0, 2], ids=["whole batch", "groups of 2"])
def test_precise_bn_pools_mean_and_variance_over_all_batches_as_bn_helper(bn_batch):
    model = _tiny_network()
    set_bn_batch(model, bn_batch)
    batches = _batches(count=3, clips=4, seed=1)
    with _bn_inputs(model) as captured:
        used = recompute_bn_stats(model, iter(batches), 3, CPU, contextlib.nullcontext, False, DistInfo())
    assert used == 3
    bns = dict(model.named_modules())
    between_batch_share = []
    for name, per_batch in captured.items():
        assert len(per_batch) == 3, name
        everything = np.concatenate(per_batch)
        numpy_mean, numpy_var = everything.mean(axis=(0, 2, 3, 4)), everything.var(axis=(0, 2, 3, 4))
        helper_mean, helper_var = _bn_helper_statistics(per_batch)
        np.testing.assert_allclose(helper_mean, numpy_mean, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(helper_var, numpy_var, rtol=1e-6, atol=1e-9)
        bn = bns[name]
        np.testing.assert_allclose(bn.running_mean.double().numpy(), numpy_mean, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(bn.running_var.double().numpy(), numpy_var, rtol=1e-4, atol=1e-6, err_msg=name)
        assert int(bn.num_batches_tracked) == 3 * (2 if bn_batch else 1)  # one per normalised group
        # What the mean of the batches' own variances (the rule nlflow had) would lose.
        within = np.mean([x.var(axis=(0, 2, 3, 4)) for x in per_batch], axis=0)
        between_batch_share.append(float(np.max((numpy_var - within) / numpy_var)))
    # The batches differ in brightness: at the first BNs the between-batch term is a large share.
    assert max(between_batch_share) > 0.3, between_batch_share


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _precise_bn_process(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = _tiny_network()
        batches = _batches(count=2, clips=2, seed=10 + rank)  # each process its own clips
        with _bn_inputs(model) as captured:
            recompute_bn_stats(model, iter(batches), 2, CPU, contextlib.nullcontext, False, DistInfo(rank, 2, rank))
        stats = {name: (module.running_mean.clone(), module.running_var.clone())
                 for name, module in model.named_modules() if isinstance(module, nn.BatchNorm3d)}
        torch.save({"captured": captured, "stats": stats}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_precise_bn_pools_over_every_process_as_over_every_gpu(tmp_path):
    """Two gloo processes with different clips end with the same statistics: those of all four
    batches together, as the original pooled every GPU's batches."""
    mp.spawn(_precise_bn_process, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    for name, (mean, var) in ranks[0]["stats"].items():
        assert torch.equal(mean, ranks[1]["stats"][name][0]) and torch.equal(var, ranks[1]["stats"][name][1])
        everything = np.concatenate(ranks[0]["captured"][name] + ranks[1]["captured"][name])
        np.testing.assert_allclose(mean.double().numpy(), everything.mean(axis=(0, 2, 3, 4)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var.double().numpy(), everything.var(axis=(0, 2, 3, 4)), rtol=1e-4, atol=1e-6)


def _forward_and_grads(model: nn.Module, parts: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad()
    outputs = [model(part) for part in parts]
    torch.cat(outputs).square().mean().backward()
    return torch.cat(outputs).detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_bn_groups_of_8_equal_separate_forward_passes_of_8():
    """16 clips in one forward pass with bn_batch 8 = two passes of 8 (outputs, gradients and the
    running statistics, updated group after group); without groups they differ."""
    torch.manual_seed(3)
    network = build_model(ModelConfig(width=4, num_classes=5, video_length=4, sample_rate=2, dropout=0.0))
    clips = to_network_input(_batches(count=1, clips=16, seed=4)[0][0], CPU)
    clips[8:] += 0.5  # the two halves differ, so per-half statistics are not the whole batch's
    separate, grouped, whole = network, copy.deepcopy(network), copy.deepcopy(network)
    set_bn_batch(grouped, 8)
    reference, reference_grads = _forward_and_grads(separate, [clips[:8], clips[8:]])
    output, grads = _forward_and_grads(grouped, [clips])
    torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-3, atol=1e-6, msg=name)
    for key, value in separate.state_dict().items():
        torch.testing.assert_close(grouped.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    unsplit, _ = _forward_and_grads(whole, [clips])
    assert float((unsplit - reference).abs().max()) > 1e-2
    # Evaluation uses the running statistics: groups change nothing there.
    grouped.eval(), separate.eval()
    with torch.no_grad():
        torch.testing.assert_close(grouped(clips), separate(clips), rtol=1e-5, atol=1e-6)


# Landscape sizes (the original fixes the height, nlflow the short side: the same for these).
FFMPEG_SIZES = [(320, 240), (1920, 1080), (331, 200), (400, 320), (176, 144), (640, 360), (352, 288), (482, 271)]


def test_downscale_size_is_the_original_ffmpeg_filter():
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    for width, height in FFMPEG_SIZES:
        command = [ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"color=c=gray:s={width}x{height}:d=0.04:r=25",
                   "-filter:v", "scale=trunc(oh*a/2)*2:256", "-c:v", "rawvideo", "-pix_fmt", "rgb24",
                   "-f", "nut", "-"]
        data = subprocess.run(command, check=True, capture_output=True).stdout
        with av.open(io.BytesIO(data), format="nut") as container:
            stream = container.streams.video[0]
            produced = (stream.codec_context.width, stream.codec_context.height)
        assert output_size(width, height, 256, upsample=True) == produced, (width, height)
