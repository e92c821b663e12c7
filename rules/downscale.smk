# Every extracted video to the configured short side (parallel, in-process PyAV), with a manifest
# that records corrupt and empty videos instead of failing on them.


rule downscale:
    input:
        unpack(video_source_inputs),
    output:
        videos=directory(R("downscaled/videos")),
        manifest=R("downscaled/manifest.csv"),
    log:
        R("logs/downscale.log"),
    cache: "omit-software"
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=4000,
        runtime=600,
    params:
        # `folder`, `kinetics400`: a digest of the user's videos (their folder is no rule's output);
        # `kinetics400`: the split folders to read (not test/, not anything else beside them).
        **downscale_source_params(),
        **copy_root_params(),
        short_side=config["downscale"]["short_side"],
        upsample=config["downscale"]["upsample"],
        keyframe_interval=config["downscale"]["keyframe_interval"],
        qscale=config["downscale"]["qscale"],
        # The encoding recipe's version: a new one (another output size rule, say) re-runs downscale.
        recipe=RECIPE_VERSION,
        preflight=preflight_params(estimate_bytes=downscale_estimate(config)),
    script:
        "../workflow/scripts/downscale.py"
