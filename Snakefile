# nlflow: UCF-101, HMDB-51, your own videos (or the embedded demo) -> fine-tuned non-local I3D -> evaluation and report.
# The DAG: download -> extract -> lists / downscale -> shuffle_rep -> lmdb -> (clean_weights) -> train
# -> evaluate -> report. Run `snakemake --cores 2 --configfile config/demo.yaml` for the demo.
from pathlib import Path

import yaml
from snakemake.utils import min_version

from nlflow.workflow.config import (
    canonical,
    coerce_to_schema,
    operational_params,
    result_params,
)
from nlflow.workflow.startup import check_config, fill_defaults

min_version("9.0")

if not config:

    configfile: Path(workflow.basedir) / "config" / "config.yaml"


# Strings that mean numbers (YAML's `1e-2`, every value of `--config 'train={base_lr: 0.02}'`)
# become numbers before validation, so that they validate and compare as numbers.
SCHEMA = Path(workflow.basedir) / "config" / "schema.yaml"
SCHEMA_DICT = yaml.safe_load(SCHEMA.read_text())
config.update(fill_defaults(coerce_to_schema(config, SCHEMA_DICT), SCHEMA_DICT))
# The schema, the dataset kind's keys, your folder of videos and the model against its zoo entry:
# every problem in one error, so that one edit fixes them all (nlflow.workflow.startup).
STARTUP = check_config(config, SCHEMA_DICT)


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/download.smk"
include: "rules/lists.smk"
include: "rules/downscale.smk"
include: "rules/lmdb.smk"
include: "rules/weights.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/features.smk"


if EXPERIMENTS:

    include: "rules/compare.smk"


rule all:
    default_target: True
    input:
        # With an experiments table: every experiment's report, and their comparison.
        expand(rules.report.output, experiment=EXPERIMENTS)
        + (rules.compare.output if EXPERIMENTS else []),


rule download:
    input:
        expand(R("download/{filename}"), filename=archive_filenames()),
        # dataset.download: cvdf: the Kinetics splits the DAG reads.
        video_source_inputs().get("downloaded", []),


rule lists:
    input:
        rules.make_lists.output,


rule lmdb:
    input:
        expand(R(f"lmdb/split{SPLIT}/{{part}}.lmdb"), part=LMDB_LISTS),


rule weights:
    input:
        expand(rules.clean_weights.output, experiment=EXPERIMENTS),


rule features:
    input:
        expand(
            rules.extract_features.output,
            experiment=EXPERIMENTS,
            part=config["features"]["splits"],
        ),
