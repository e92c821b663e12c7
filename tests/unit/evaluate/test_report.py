"""Report figures are real PNGs and the summary carries the headline numbers."""

import json

import pytest

from nlflow.evaluate.report import ReportError, read_metrics_jsonl, write_report

from helpers.reports import write_eval_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_write_report(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"iter": i, "loss": 2.0 / (i + 1), "lr": 0.1, "top1": 0.1 * i}) for i in range(1, 6)]
    lines.insert(3, json.dumps({"iter": 3, "val_top1": 0.42}))
    lines.append(json.dumps({"iter": 6}))  # a line with keys missing
    lines.append('{"iter": 7, "loss": 0.')  # a run killed mid-write
    jsonl.write_text("\n".join(lines) + "\n")
    metrics = write_eval_metrics(tmp_path / "eval.json")

    written = write_report(jsonl, tmp_path / "eval.json", tmp_path / "report", {"crop_size": 256, "lr": 0.01})
    names = [p.name for p in written]
    assert names == ["training_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "report.md"]
    for path in written[:-1]:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    text = written[-1].read_text()
    assert f"{100 * metrics['top1']:.2f} %" in text
    assert "clip-level top-1" in text and "42.00 %" in text
    assert "`crop_size`: `256`" in text
    # nothing temporary left behind
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(names)
    assert len(read_metrics_jsonl(jsonl)) == 7


def test_report_without_training_log(tmp_path):
    write_eval_metrics(tmp_path / "eval.json")
    written = write_report(None, tmp_path / "eval.json", tmp_path / "out", {})
    assert written[0].read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ReportError, match="evaluate"):
        write_report(None, tmp_path / "missing.json", tmp_path / "out", {})
