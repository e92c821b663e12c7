# The seeded, shuffled, repeated training list and the train / val / test LMDB stores (one rule,
# one job per store).


rule shuffle_rep:
    input:
        train=f"{LISTS}/train.txt",
        manifest=R("downscaled/manifest.csv"),
    output:
        f"{LISTS}/train_shuffled.txt",
    log:
        R(f"logs/shuffle_rep/split{SPLIT}.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        repeats=config["shuffle_rep"]["repeats"],
        seed=config["shuffle_rep"]["seed"],
    script:
        "../workflow/scripts/shuffle_rep.py"


rule write_lmdb:
    input:
        # The training store takes the shuffled, repeated list; val and test take their lists as made.
        entries=lambda wildcards: f"{LISTS}/{LMDB_LISTS[wildcards.part]}",
        classes=f"{LISTS}/classes.txt",
        videos=R("downscaled/videos"),
        manifest=R("downscaled/manifest.csv"),
    output:
        R(f"lmdb/split{SPLIT}/{{part}}.lmdb"),
    log:
        R(f"logs/lmdb/split{SPLIT}_{{part}}.log"),
    wildcard_constraints:
        part="train|val|test",
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        kind=lambda wildcards: wildcards.part,
        embed=config["lmdb"]["embed_videos"],
        preflight=preflight_params(),
    script:
        "../workflow/scripts/write_lmdb.py"
