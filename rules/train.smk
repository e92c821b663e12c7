# Fine-tuning from the cleaned weights: iteration-based, checkpointed, resumable.


rule train:
    input:
        train_lmdb=R(f"lmdb/split{SPLIT}/train.lmdb"),
        val_lmdb=R(f"lmdb/split{SPLIT}/val.lmdb"),
        init=R("weights/init.pt"),
        classes=f"{LISTS}/classes.txt",
    output:
        model=R("train/model_final.pt"),
        metrics=R("train/metrics.jsonl"),
    params:
        train={key: value for key, value in config["train"].items() if key != "gpus"},
        clip={key: config["model"][key] for key in ("video_length", "sample_rate")},
        checkpoint_dir=R("train/checkpoints"),
    log:
        R("logs/train.log"),
    threads: all_cores()
    resources:
        mem_mb=16000,
        runtime=2880,
        gpu=config["train"]["gpus"],
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/train.py"
