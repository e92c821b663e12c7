import os

from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.make_demo_dataset,
    out_dir=os.path.dirname(snakemake.output.manifest),
    n_jobs=snakemake.threads,
    **snakemake.params.demo,
    estimate_bytes=snakemake.params.preflight["estimate_bytes"],
    check_disk=snakemake.params.preflight["check_disk"],
)
