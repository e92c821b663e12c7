"""Fine-tuning: settings, the SGD solver, the resumable (optionally distributed) training loop."""

from nlflow.errors import TrainingError
from nlflow.train.loop import train
from nlflow.train.solver import TrainSettings, build_optimizer, lr_at, param_groups

__all__ = ["TrainSettings", "TrainingError", "build_optimizer", "lr_at", "param_groups", "train"]
