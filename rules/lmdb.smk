# The seeded, shuffled, repeated training list and the train / val / test LMDB stores.


rule shuffle_rep:
    input:
        train=f"{LISTS}/train.txt",
        manifest=R("downscaled/manifest.csv"),
    output:
        f"{LISTS}/train_shuffled.txt",
    params:
        repeats=config["shuffle_rep"]["repeats"],
        seed=config["shuffle_rep"]["seed"],
    log:
        R(f"logs/shuffle_rep/split{SPLIT}.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/shuffle_rep.py"


rule lmdb_train:
    input:
        entries=f"{LISTS}/train_shuffled.txt",
        classes=f"{LISTS}/classes.txt",
        videos=R("downscaled/videos"),
        manifest=R("downscaled/manifest.csv"),
    output:
        R(f"lmdb/split{SPLIT}/train.lmdb"),
    params:
        kind="train",
        embed=config["lmdb"]["embed_videos"],
    log:
        R(f"logs/lmdb/split{SPLIT}_train.log"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/write_lmdb.py"


rule lmdb_val:
    input:
        entries=f"{LISTS}/val.txt",
        classes=f"{LISTS}/classes.txt",
        videos=R("downscaled/videos"),
        manifest=R("downscaled/manifest.csv"),
    output:
        R(f"lmdb/split{SPLIT}/val.lmdb"),
    params:
        kind="val",
        embed=config["lmdb"]["embed_videos"],
    log:
        R(f"logs/lmdb/split{SPLIT}_val.log"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/write_lmdb.py"


rule lmdb_test:
    input:
        entries=f"{LISTS}/test.txt",
        classes=f"{LISTS}/classes.txt",
        videos=R("downscaled/videos"),
        manifest=R("downscaled/manifest.csv"),
    output:
        R(f"lmdb/split{SPLIT}/test.lmdb"),
    params:
        kind="test",
        embed=config["lmdb"]["embed_videos"],
    log:
        R(f"logs/lmdb/split{SPLIT}_test.log"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/write_lmdb.py"
