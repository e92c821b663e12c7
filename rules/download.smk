# Acquisition: resumable, checksum-verified downloads, then safe, atomic extraction.


rule download_ucf101:
    input:
        demo_source_inputs,
    output:
        R("download/{filename}"),
    params:
        urls=lambda wildcards: archive_by_filename(wildcards.filename)["urls"],
        sha256=lambda wildcards: archive_by_filename(wildcards.filename)["sha256"],
        # The demo regenerates its archives when its settings change: nothing to pin there.
        lock_file=lambda wildcards: None if demo_source_inputs(wildcards) else R(f"download/{wildcards.filename}.sha256"),
    log:
        R("logs/download_ucf101/{filename}.log"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/download_ucf101.py"


rule extract_ucf101:
    input:
        archive=lambda wildcards: R(f"download/{ARCHIVES[wildcards.part]['filename']}"),
    output:
        directory(R("extracted/{part}")),
    wildcard_constraints:
        part="videos|splits",
    log:
        R("logs/extract_ucf101/{part}.log"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    script:
        "../workflow/scripts/extract_ucf101.py"
