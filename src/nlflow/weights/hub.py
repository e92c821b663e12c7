"""``torch.hub`` entry points: one per released model (``hubconf.py`` at the repository root lists them).

``pretrained=False`` builds the network the name describes (fresh initialisation, as
:func:`nlflow.models.build_model`); ``pretrained=True`` downloads the released Caffe2 file
through nlflow's resumable, checksum-locked download (the first download's SHA-256 is recorded in
``<name>.pkl.sha256`` next to it and every later use is verified against it), converts it as
``nlflow weights convert`` does, into the zoo's network, and loads it (eval mode). Files go to
``<torch.hub.get_dir()>/nlflow/`` unless ``cache_dir`` says otherwise; a converted file is reused
while its download is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from nlflow.weights.zoo import ZOO, ZooModel, zoo_model

HUB_SUBDIR = "nlflow"
KINETICS_CLASSES = 400


def zoo_network(name: str, *, pretrained: bool = False, num_classes: int = KINETICS_CLASSES, url: str | None = None,
                cache_dir: str | os.PathLike | None = None) -> nn.Module:
    """The zoo model ``name`` (see the module docstring). ``num_classes`` other than 400 gives a new
    classifier (std 0.01, as fine-tuning starts); ``url``: another mirror of the released file."""
    from nlflow.archives.download import fetch
    from nlflow.models import build_model, load_checkpoint
    from nlflow.weights.convert import convert_caffe2_to_checkpoint

    entry = zoo_model(name)
    config = entry.model_config(num_classes)
    if not pretrained:
        return build_model(config)
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / HUB_SUBDIR
    pkl = folder / f"{name}.pkl"
    download = fetch([url or entry.url], pkl, lock_file=folder / f"{name}.pkl.sha256")
    converted = folder / f"{name}_{num_classes}_classes.pt"
    if not download.already_present or not converted.is_file():
        convert_caffe2_to_checkpoint(pkl, converted, model_cfg=config, num_classes=num_classes, zoo_name=name)
    return load_checkpoint(converted)


def _describe(entry: ZooModel) -> str:
    kind = f"{entry.arch.upper()}{' non-local' if entry.use_nonlocal else ''} ResNet-{entry.depth}"
    affine = ", affine (frozen BN)" if entry.affine else ""
    return (f"{entry.name}: {kind}, {entry.clip} clips{affine}; Kinetics-400 top-1 {entry.top1} / top-5 "
            f"{entry.top5} as released.\n\n"
            f"Arguments: pretrained=False (build it) or True (download and convert the released weights), "
            f"num_classes={KINETICS_CLASSES}, url=None (another mirror), cache_dir=None (default "
            f"<torch.hub.get_dir()>/{HUB_SUBDIR}).")


def hub_entrypoints() -> dict[str, Callable[..., nn.Module]]:
    """One function per zoo model, named as the model, for ``hubconf.py``."""

    def entrypoint(entry: ZooModel) -> Callable[..., nn.Module]:
        def load(pretrained: bool = False, num_classes: int = KINETICS_CLASSES, url: str | None = None,
                 cache_dir: str | os.PathLike | None = None) -> nn.Module:
            return zoo_network(entry.name, pretrained=pretrained, num_classes=num_classes, url=url, cache_dir=cache_dir)

        load.__name__ = load.__qualname__ = entry.name
        load.__doc__ = _describe(entry)
        return load

    return {entry.name: entrypoint(entry) for entry in ZOO}
