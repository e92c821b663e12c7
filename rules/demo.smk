# The embedded demo dataset: archives in the official UCF-101 layout and a Caffe2-format weight file.


rule make_demo_dataset:
    output:
        videos=R("demo_source/UCF101.rar"),
        splits=R("demo_source/UCF101TrainTestSplits-RecognitionTask.zip"),
        manifest=R("demo_source/demo_manifest.json"),
    log:
        R("logs/make_demo_dataset.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        demo=canonical(config.get("demo", {})),
        preflight=preflight_params(estimate_bytes=demo_dataset_estimate(config)),
    script:
        "../workflow/scripts/make_demo_dataset.py"


rule make_demo_weights:
    output:
        # One per architecture the experiments use (pretrained.pkl names it with {demo_model}).
        pkl=R("demo_source/{demo_model}_demo_init.pkl"),
    log:
        R("logs/make_demo_weights/{demo_model}.log"),
    wildcard_constraints:
        demo_model="|".join(DEMO_MODELS),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wildcards: canonical(DEMO_MODELS[wildcards.demo_model]),
        seed=config.get("demo", {}).get("seed", 0),
    script:
        "../workflow/scripts/make_demo_weights.py"
