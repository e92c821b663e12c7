# Multi-view evaluation (10 clips x 3 crops, each video decoded once, per-view scores cached) and
# the report, per experiment: of the trained network, or (train.enabled false) of the pretrained
# network as converted, with its own classifier.


rule evaluate:
    input:
        # the trained network, or with train.enabled false the converted pretrained one
        model=evaluated_model,
        test_lmdb=R(f"lmdb/split{SPLIT}/test.lmdb"),
    output:
        metrics=report(
            R(f"{EXP}evaluate/metrics.json"),
            caption="../workflow/report/metrics.rst",
            category="Evaluation",
            subcategory=REPORT_SUBCATEGORY,
        ),
        predictions=report(
            R(f"{EXP}evaluate/predictions.csv"),
            caption="../workflow/report/predictions.rst",
            category="Evaluation",
            subcategory=REPORT_SUBCATEGORY,
        ),
    log:
        R(f"logs/{EXP}evaluate.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=8000,
        runtime=600,
        gpu=evaluate_job_gpus,
    params:
        views=view_params,
        # views per forward pass and loader workers: how it runs, never what it finds
        operational=section_params("test", result=False),
        aggregate=exp_setting("test", "aggregate"),
        amp=exp_setting("test", "amp"),
        cache_dir=exp_path("evaluate/view_scores"),
        # train.tensorboard: the confusion matrix also goes to the training run's TensorBoard events.
        tensorboard=tensorboard_params,
    script:
        "../workflow/scripts/evaluate.py"


rule report:
    input:
        train_metrics=training_log,
        eval_metrics=R(f"{EXP}evaluate/metrics.json"),
        # What the numbers rest on: per-class counts, undecodable videos, classes without test videos.
        train=rules.make_lists.output.train,
        val=rules.make_lists.output.val,
        test=rules.make_lists.output.test,
        classes=rules.make_lists.output.classes,
        summary=rules.make_lists.output.summary,
        manifest=rules.downscale.output.manifest,
    output:
        curves=report(
            R(f"{EXP}report/training_curves.png"),
            caption="../workflow/report/training.rst",
            category="Training",
            subcategory=REPORT_SUBCATEGORY,
        ),
        confusion=report(
            R(f"{EXP}report/confusion_matrix.png"),
            caption="../workflow/report/confusion.rst",
            category="Evaluation",
            subcategory=REPORT_SUBCATEGORY,
        ),
        per_class=report(
            R(f"{EXP}report/per_class_accuracy.png"),
            caption="../workflow/report/per_class.rst",
            category="Evaluation",
            subcategory=REPORT_SUBCATEGORY,
        ),
        summary=report(
            R(f"{EXP}report/report.md"),
            caption="../workflow/report/summary.rst",
            category="Summary",
            subcategory=REPORT_SUBCATEGORY,
        ),
    log:
        R(f"logs/{EXP}report.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=report_settings,
        # Read by the HTML report's front page only, never a reason to re-run (ReportOnly).
        headline=report_headline,
    script:
        "../workflow/scripts/report.py"
