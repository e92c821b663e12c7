from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.evaluate,
    model=snakemake.input.model,
    test_lmdb=snakemake.input.test_lmdb,
    metrics_out=snakemake.output.metrics,
    predictions_out=snakemake.output.predictions,
    views=snakemake.params.views,
    operational=snakemake.params.operational,
    aggregate=snakemake.params.aggregate,
    amp=snakemake.params.amp,
    cache_dir=snakemake.params.cache_dir,
    tensorboard=snakemake.params.tensorboard,
)
