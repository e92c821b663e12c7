from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.extract_features,
    model=snakemake.input.model,
    store=snakemake.input.store,
    out=snakemake.output[0],
    views=snakemake.params.views,
    per_clip=snakemake.params.per_clip,
    cache_dir=snakemake.params.cache_dir,
    operational=snakemake.params.operational,
)
