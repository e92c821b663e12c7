# Video embeddings: pool5 averaged over each listed video's test views (or over each clip's crops),
# for the stores named by features.splits, per experiment. Not part of `all`: `snakemake features`.


rule extract_features:
    input:
        model=R(f"{EXP}train/model_final.pt"),
        store=R(f"lmdb/split{SPLIT}/{{part}}.lmdb"),
    output:
        R(f"{EXP}features/{{part}}.parquet"),
    log:
        R(f"logs/{EXP}features_{{part}}.log"),
    wildcard_constraints:
        part="|".join(LMDB_LISTS),
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=evaluate_job_gpus,
    params:
        # The test views (test.*), so the embeddings come from the views evaluation scores.
        views=view_params,
        per_clip=exp_setting("features", "per_clip"),
        # views per forward pass and loader workers: how it runs, never what it finds
        operational=section_params("test", result=False),
        cache_dir=features_cache,
    script:
        "../workflow/scripts/extract_features.py"
