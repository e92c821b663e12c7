from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.download,
    urls=snakemake.params.urls,
    dest=snakemake.output[0],
    sha256=snakemake.params.sha256,
    lock_file=snakemake.params.lock_file,
    # download_weights has no md5 param: zoo files have no published checksum at all.
    md5=snakemake.params.get("md5"),
    hint=snakemake.params.hint,
    check_disk=snakemake.params.preflight["check_disk"],
)
