from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.download_kinetics,
    split=snakemake.wildcards.split,
    root=snakemake.params.root,
    mirrors=snakemake.params.operational["mirrors"],
    done=snakemake.output[0],
    keep_tarballs=snakemake.params.operational["keep_tarballs"],
    check_disk=snakemake.params.operational["check_disk"],
)
