from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.compare,
    experiments=snakemake.params.experiments,
    eval_metrics=list(snakemake.input.eval_metrics),
    train_metrics=list(snakemake.input.train_metrics),
    models=list(snakemake.input.models),
    out=dict(snakemake.output.items()),
    trains=snakemake.params.trains,
)
