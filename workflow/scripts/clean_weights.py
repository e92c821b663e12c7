from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

run_stage(
    snakemake,
    stages.clean_weights,
    pkl=snakemake.input.pkl[0] if snakemake.input.pkl else None,
    out=snakemake.output[0],
    model=snakemake.params.model,
    drop_head=snakemake.params.drop_head,
    keep_bn_stats=snakemake.params.keep_bn_stats,
    classes=snakemake.params.get("classes"),
    evaluate_as_is=snakemake.params.get("evaluate_as_is", False),
)
