# Multi-view evaluation (10 clips x 3 crops, each video decoded once, per-view scores cached) and
# the report.


rule evaluate:
    input:
        model=R("train/model_final.pt"),
        test_lmdb=R(f"lmdb/split{SPLIT}/test.lmdb"),
    output:
        metrics=R("evaluate/metrics.json"),
        predictions=R("evaluate/predictions.csv"),
    params:
        views=view_params(),
        batch_size=config["test"]["batch_size"],
        num_workers=config["test"]["num_workers"],
        aggregate=config["test"]["aggregate"],
        cache_dir=R("evaluate/view_scores"),
    log:
        R("logs/evaluate.log"),
    threads: workflow.cores
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=min(config["train"]["gpus"], 1),
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/evaluate.py"


rule report:
    input:
        train_metrics=R("train/metrics.jsonl"),
        eval_metrics=R("evaluate/metrics.json"),
    output:
        directory(R("report")),
    params:
        settings={k: config[k] for k in ("dataset", "model", "train", "test")},
    log:
        R("logs/report.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/report.py"
