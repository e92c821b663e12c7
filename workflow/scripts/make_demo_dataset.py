from nlflow import stages
from nlflow.adapter import run_stage

run_stage(
    snakemake,
    stages.make_demo_dataset,
    out_dir=snakemake.output.manifest.rsplit("/", 1)[0],
    **snakemake.params.demo,
)
