from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.downscale,
    extracted_dir=snakemake.input.get("videos") or snakemake.params.copy_root,
    out_dir=snakemake.output.videos,
    manifest=snakemake.output.manifest,
    short_side=snakemake.params.short_side,
    upsample=snakemake.params.upsample,
    keyframe_interval=snakemake.params.keyframe_interval,
    qscale=snakemake.params.qscale,
    n_jobs=snakemake.threads,
    folders=snakemake.params.get("folders"),
    estimate_bytes=snakemake.params.preflight["estimate_bytes"],
    check_disk=snakemake.params.preflight["check_disk"],
)
