from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.train,
    train_lmdb=snakemake.input.train_lmdb,
    val_lmdb=snakemake.input.val_lmdb,
    init=snakemake.input.init,
    classes_file=snakemake.input.classes,
    model_out=snakemake.output.model,
    metrics_out=snakemake.output.metrics,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    train_config=snakemake.params.train,
    operational=snakemake.params.operational,
    model=snakemake.params.model,
    gpus=snakemake.resources.gpu,
    nodes=snakemake.resources.nodes,
    threads=snakemake.threads,
    check_disk=snakemake.params.preflight["check_disk"],
)
