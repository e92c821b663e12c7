# Experiments side by side (only with an experiments table): one row per experiment, as a CSV,
# a Markdown table and a bar chart, also in the HTML report.


rule compare:
    input:
        eval_metrics=expand(
            R("experiments/{experiment}/evaluate/metrics.json"), experiment=EXPERIMENTS
        ),
        # training logs of the experiments that train; every evaluated network
        train_metrics=expand(
            R("experiments/{experiment}/train/metrics.jsonl"),
            experiment=[name for name, cfg in EXPERIMENTS.items() if trains(cfg)],
        ),
        models=[
            evaluated_model(SimpleNamespace(experiment=name)) for name in EXPERIMENTS
        ],
    output:
        table=report(
            R("compare/summary.csv"),
            caption="../workflow/report/compare_table.rst",
            category="Comparison",
        ),
        markdown=report(
            R("compare/summary.md"),
            caption="../workflow/report/compare_table.rst",
            category="Comparison",
        ),
        chart=report(
            R("compare/summary.png"),
            caption="../workflow/report/compare_chart.rst",
            category="Comparison",
        ),
    log:
        R("logs/compare.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        experiments=list(EXPERIMENTS),
        trains=[trains(cfg) for cfg in EXPERIMENTS.values()],
        # Read by the HTML report's front page only, never a reason to re-run (ReportOnly).
        comparison=comparison_headline_params(),
    script:
        "../workflow/scripts/compare.py"
