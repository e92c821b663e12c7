# Caffe2 weights (.pkl) -> a cleaned PyTorch checkpoint that starts fine-tuning at iteration 0.


rule clean_weights:
    input:
        pkl=[PRETRAINED_PKL] if PRETRAINED_PKL else [],
    output:
        R("weights/init.pt"),
    params:
        model=model_params(),
        drop_head=config["pretrained"]["drop_head"],
        keep_bn_stats=config["pretrained"]["keep_bn_stats"],
    log:
        R("logs/clean_weights.log"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/clean_weights.py"
