# Caffe2 weights (.pkl) -> a cleaned PyTorch checkpoint that starts fine-tuning at iteration 0: a
# released Kinetics model, or a starting point of the original's recipes (a member of its
# pretrained_model.tar.gz: ImageNet ResNets inflated into the network, the affine I3D baseline).


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
        # The zoo's URL, or the local copy pretrained.pkl names (offline: verified like a download).
        urls=zoo_sources,
        sha256=None,
        preflight=preflight_params(),
        # No checksum is published: the first complete download is recorded and later ones verified.
        lock_file=lambda wildcards: R(f"weights/download/{wildcards.name}.pkl.sha256"),
        # What the one-line error says to do when no source works.
        hint=lambda wildcards: offline_hint(wildcards.name),
    message:
        "Get the released model {wildcards.name} from {params.urls[0]}"
    script:
        # The same adapter as download_dataset: resumable, checksum-locked nlflow.workflow.stages.download.
        "../workflow/scripts/download.py"


rule download_pretrained_tarball:
    # The original's pretrained_model.tar.gz: the ImageNet ResNet-50 / 101 and the affine I3D
    # baseline its Kinetics recipes start from; one download for the three.
    output:
        R(f"weights/download/{TARBALL}"),
    log:
        R(f"logs/download_weights/{TARBALL}.log"),
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        urls=[TARBALL_URL],
        sha256=None,
        # No checksum is published: the first complete download is recorded and later ones verified.
        lock_file=R(f"weights/download/{TARBALL}.sha256"),
    message:
        "Download the original's starting points from {params.urls[0]}"
    script:
        "../workflow/scripts/download.py"


rule extract_pretrained_start:
    input:
        archive=R(f"weights/download/{TARBALL}"),
    output:
        R("weights/download/{name}.pkl"),
    log:
        R("logs/extract_pretrained_start/{name}.log"),
    wildcard_constraints:
        name="|".join(start_names()),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        member=lambda wildcards: zoo_entry(wildcards.name).member,
    script:
        "../workflow/scripts/extract_member.py"


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
        # Kinetics' class names; whether the network is evaluated as converted (train.enabled).
        **clean_weights_extra_params(),
        model=model_params,
        drop_head=exp_setting("pretrained", "drop_head"),
        keep_bn_stats=exp_setting("pretrained", "keep_bn_stats"),
    script:
        "../workflow/scripts/clean_weights.py"
