# The configured dataset's splits -> 0-based train / val / test lists, the class names, and
# lists.json (how the lists were made, e.g. whether validation uses the test list). How depends on
# dataset.name (nlflow.lists.datasets): official split files, the user's folder and lists, or a
# Kinetics copy and its annotations.


rule make_lists:
    input:
        unpack(lists_inputs),
    output:
        # Kinetics: missing.csv, the listed videos the copy lacks, by id (other kinds' lists hold
        # only videos on disk).
        **lists_extra_outputs(),
        train=f"{LISTS}/train.txt",
        val=f"{LISTS}/val.txt",
        test=f"{LISTS}/test.txt",
        classes=f"{LISTS}/classes.txt",
        summary=f"{LISTS}/lists.json",
    log:
        R(f"logs/make_lists/split{SPLIT}.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **copy_root_params(),
        dataset=LISTS_SETTINGS,
    script:
        "../workflow/scripts/make_lists.py"
