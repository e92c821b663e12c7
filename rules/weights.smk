# Caffe2 weights (.pkl) -> a cleaned PyTorch checkpoint that starts fine-tuning at iteration 0.


rule download_weights:
    output:
        R("weights/download/{name}.pkl"),
    log:
        R("logs/download_weights/{name}.log"),
    wildcard_constraints:
        name="|".join(zoo_names()),
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        urls=lambda wildcards: [zoo_model(wildcards.name).url],
        sha256=None,
        preflight=preflight_params(),
        # No checksum is published: the first complete download is recorded and later ones verified.
        lock_file=lambda wildcards: R(f"weights/download/{wildcards.name}.pkl.sha256"),
    message:
        "Download the released model {wildcards.name} from {params.urls[0]}"
    script:
        # The same adapter as download_dataset: resumable, checksum-locked nlflow.workflow.stages.download.
        "../workflow/scripts/download.py"


rule clean_weights:
    input:
        pkl=pretrained_weights,
    output:
        R(f"{EXP}weights/init.pt"),
    log:
        R(f"logs/{EXP}clean_weights.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        model=model_params,
        drop_head=exp_setting("pretrained", "drop_head"),
        keep_bn_stats=exp_setting("pretrained", "keep_bn_stats"),
    script:
        "../workflow/scripts/clean_weights.py"
