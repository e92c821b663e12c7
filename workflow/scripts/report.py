import os

from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.report,
    # none when the experiment evaluates its pretrained network without training
    train_metrics=snakemake.input.train_metrics or None,
    eval_metrics=snakemake.input.eval_metrics,
    out_dir=os.path.dirname(snakemake.output.summary),
    settings=snakemake.params.settings,
    lists={name: snakemake.input[name] for name in ("train", "val", "test", "classes", "summary")},
    manifest=snakemake.input.manifest,
)
