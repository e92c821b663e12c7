from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.shuffle_rep,
    train_list=snakemake.input.train,
    manifest=snakemake.input.manifest,
    out=snakemake.output[0],
    repeats=snakemake.params.repeats,
    seed=snakemake.params.seed,
)
