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
    wildcard_constraints:
        filename="[^/]+",
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


# dataset.download: cvdf. One job per Kinetics-400 split walks the mirror's list of .tar.gz parts
# (its length is known only once the list is fetched), fetching and extracting each into the copy
# (nlflow.archives.cvdf). Its output is only a record: the copy's folder must not be an output,
# because Snakemake deletes a job's outputs before the job runs, and a killed download resumes
# from the parts already extracted (marked in <copy>/cvdf_download/<split>/).
rule download_kinetics:
    output:
        R("download/kinetics400/{split}.done"),
    log:
        R("logs/download/kinetics400_{split}.log"),
    wildcard_constraints:
        split="train|val",
    conda:
        "../envs/nlflow.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        # Minutes: the split at 10 MB/s (`nlflow plan`'s link) with room: train about 351 GB
        # of .tar.gz (10 h), val about 29 GB (50 min), by video count from the reported 436 GB.
        runtime=lambda wildcards: 1440 if wildcards.split == "train" else 180,
    params:
        root=DATASET.root,
        # The same files from whichever mirror: a new mirror must not re-run the download (and
        # with it downscale and everything after).
        operational=Operational(
            mirrors=DATASET.download_mirrors() if DATASET.downloads_copy else [],
            check_disk=config["preflight"]["check_disk"],
            keep_tarballs=config["dataset"]["keep_tarballs"],
        ),
    script:
        "../workflow/scripts/download_kinetics.py"
