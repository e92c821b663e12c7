# Official split files -> 0-based train / val / test lists and the class names.


rule make_lists:
    input:
        splits=R("extracted/splits"),
        videos=R("extracted/videos"),
    output:
        train=f"{LISTS}/train.txt",
        val=f"{LISTS}/val.txt",
        test=f"{LISTS}/test.txt",
        classes=f"{LISTS}/classes.txt",
    log:
        R(f"logs/make_lists/split{SPLIT}.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        split=SPLIT,
        num_classes=config["dataset"]["num_classes"],
    script:
        "../workflow/scripts/make_lists.py"
