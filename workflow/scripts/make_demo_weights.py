from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.make_demo_weights,
    pkl=snakemake.output.pkl,
    model=snakemake.params.model,
    seed=snakemake.params.seed,
)
