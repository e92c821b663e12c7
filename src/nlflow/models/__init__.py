"""C2D / I3D ResNets with non-local blocks (video-nonlocal-net's architecture) and their checkpoints."""

from nlflow.models.builder import ModelConfig, build_model, count_parameters, stage_layout
from nlflow.models.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint

__all__ = [
    "CheckpointError",
    "ModelConfig",
    "build_model",
    "count_parameters",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "stage_layout",
]
