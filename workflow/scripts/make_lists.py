from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.make_lists,
    videos_dir=snakemake.input.get("videos") or snakemake.params.copy_root,
    splits_dir=snakemake.input.get("splits"),
    dataset=snakemake.params.dataset,
    out=dict(snakemake.output.items()),
)
