from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.extract,
    archive=snakemake.input.archive,
    target_dir=snakemake.output[0],
    nested=snakemake.params.nested,
    check_disk=snakemake.params.preflight["check_disk"],
)
