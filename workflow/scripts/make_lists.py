from nlflow import stages
from nlflow.adapter import run_stage

run_stage(
    snakemake,
    stages.make_lists,
    splits_dir=snakemake.input.splits,
    videos_dir=snakemake.input.videos,
    split=snakemake.params.split,
    num_classes=snakemake.params.num_classes,
    train=snakemake.output.train,
    val=snakemake.output.val,
    test=snakemake.output.test,
    classes=snakemake.output.classes,
)
