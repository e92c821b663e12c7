from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.extract_member,
    archive=snakemake.input.archive,
    member=snakemake.params.member,
    dest=snakemake.output[0],
)
