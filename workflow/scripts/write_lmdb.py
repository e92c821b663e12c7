from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.write_lmdb,
    entries_list=snakemake.input.entries,
    classes_file=snakemake.input.classes,
    videos_dir=snakemake.input.videos,
    manifest=snakemake.input.manifest,
    out=snakemake.output[0],
    kind=snakemake.params.kind,
    embed=snakemake.params.embed,
    check_disk=snakemake.params.preflight["check_disk"],
)
