# Multi-view evaluation (10 clips x 3 crops, each video decoded once, per-view scores cached) and
# the report.


rule evaluate:
    input:
        model=R("train/model_final.pt"),
        test_lmdb=R(f"lmdb/split{SPLIT}/test.lmdb"),
    output:
        metrics=report(
            R("evaluate/metrics.json"),
            caption="../workflow/report/metrics.rst",
            category="Evaluation",
        ),
        predictions=report(
            R("evaluate/predictions.csv"),
            caption="../workflow/report/predictions.rst",
            category="Evaluation",
        ),
    log:
        R("logs/evaluate.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=min(config["train"]["gpus"], 1),
    params:
        views=canonical(view_params()),
        # views per forward pass and loader workers: how it runs, never what it finds
        operational=operational_params(config["test"], "test"),
        aggregate=config["test"]["aggregate"],
        amp=config["test"]["amp"],
        cache_dir=R("evaluate/view_scores"),
    script:
        "../workflow/scripts/evaluate.py"


rule report:
    input:
        train_metrics=R("train/metrics.jsonl"),
        eval_metrics=R("evaluate/metrics.json"),
    output:
        curves=report(
            R("report/training_curves.png"),
            caption="../workflow/report/training.rst",
            category="Training",
        ),
        confusion=report(
            R("report/confusion_matrix.png"),
            caption="../workflow/report/confusion.rst",
            category="Evaluation",
        ),
        per_class=report(
            R("report/per_class_accuracy.png"),
            caption="../workflow/report/per_class.rst",
            category="Evaluation",
        ),
        summary=report(
            R("report/report.md"),
            caption="../workflow/report/summary.rst",
            category="Summary",
        ),
    log:
        R("logs/report.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=canonical(
            {
                "dataset": config["dataset"],
                "model": config["model"],
                "train": result_params(config["train"], "train"),
                "test": result_params(config["test"], "test"),
            }
        ),
    script:
        "../workflow/scripts/report.py"
