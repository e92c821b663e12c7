"""Multi-view test evaluation, metrics and the report (``write_report`` imports matplotlib lazily)."""

from nlflow.errors import EvaluationError
from nlflow.evaluate.metrics import AGGREGATES, compute_metrics, view_subset_indices
from nlflow.evaluate.run import evaluate, reaggregate
from nlflow.evaluate.scorer import ViewScorer

__all__ = [
    "AGGREGATES",
    "EvaluationError",
    "ViewScorer",
    "compute_metrics",
    "evaluate",
    "reaggregate",
    "view_subset_indices",
    "write_report",
]


def __getattr__(name: str):
    if name == "write_report":
        from nlflow.evaluate.report import write_report

        return write_report
    raise AttributeError(f"module 'nlflow.evaluate' has no attribute {name!r}")
