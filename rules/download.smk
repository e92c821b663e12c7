# Acquisition: resumable, checksum-verified downloads, then safe, atomic extraction. Which archives
# exist comes from the dataset kind (nlflow.lists.datasets): UCF-101, HMDB-51 and the demo have a
# video and a split archive; a `folder` dataset has none, so these rules do not run for it.


rule download_dataset:
    input:
        demo_source_inputs,
    output:
        R("download/{filename}"),
    log:
        R("logs/download/{filename}.log"),
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
        # Checked on every run; the lock file below still records the first download's SHA-256.
        md5=lambda wildcards: archive_by_filename(wildcards.filename)["md5"],
        preflight=preflight_params(),
        # The demo regenerates its archives when its settings change: nothing to pin there.
        lock_file=lambda wildcards: (
            None
            if demo_source_inputs(wildcards)
            else R(f"download/{wildcards.filename}.sha256")
        ),
        # What the one-line error says to do when no source works.
        hint=lambda wildcards: archive_offline_hint(
            archive_part(wildcards.filename), wildcards.filename
        ),
    script:
        "../workflow/scripts/download.py"


rule extract_dataset:
    input:
        archive=lambda wildcards: R(f"download/{ARCHIVES[wildcards.part]['filename']}"),
    output:
        directory(R("extracted/{part}")),
    log:
        R("logs/extract/{part}.log"),
    wildcard_constraints:
        part="videos|splits",
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        # HMDB-51's video archive holds one RAR per class: each is unpacked with the same checks.
        nested=holds_class_archives,
        preflight=preflight_params(),
    script:
        "../workflow/scripts/extract.py"
