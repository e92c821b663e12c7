# Acquisition: resumable, checksum-verified downloads, then safe, atomic extraction.


rule download_ucf101:
    input:
        demo_source_inputs,
    output:
        R("download/{filename}"),
    log:
        R("logs/download_ucf101/{filename}.log"),
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=240,
    params:
        urls=lambda wildcards: archive_by_filename(wildcards.filename)["urls"],
        sha256=lambda wildcards: archive_by_filename(wildcards.filename)["sha256"],
        # The demo regenerates its archives when its settings change: nothing to pin there.
        lock_file=lambda wildcards: (
            None
            if demo_source_inputs(wildcards)
            else R(f"download/{wildcards.filename}.sha256")
        ),
    script:
        "../workflow/scripts/download.py"


rule extract_ucf101:
    input:
        archive=lambda wildcards: R(f"download/{ARCHIVES[wildcards.part]['filename']}"),
    output:
        directory(R("extracted/{part}")),
    log:
        R("logs/extract_ucf101/{part}.log"),
    wildcard_constraints:
        part="videos|splits",
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    script:
        "../workflow/scripts/extract_ucf101.py"
