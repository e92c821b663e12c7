# Fine-tuning from the cleaned weights: iteration-based, checkpointed, resumable.
#
# train.gpus training processes (one per GPU) run on each of train.nodes nodes: 0 or 1 on one node
# trains in the job's own process, more start torchrun (gloo CPU processes where no CUDA device is
# visible), more than one node runs srun + torchrun inside the job's SLURM allocation
# (src/nlflow/train/launch.py). gpus and nodes stay out of params on purpose: train.batch_size is
# the global batch, split evenly over the processes, and every process takes its slice of the
# same global sample order (nlflow.train.distributed), so changing the process count changes how
# the work is spread, not which clips, augmentations or learning rates a run uses (docs/cluster.md,
# "Several GPUs and several nodes", says what still differs: per-process BN statistics
# unless train.sync_bn, dropout masks, float summation order). A changed process count resumes
# the same run folder instead of starting over.


rule train:
    input:
        train_lmdb=R(f"lmdb/split{SPLIT}/train.lmdb"),
        val_lmdb=R(f"lmdb/split{SPLIT}/val.lmdb"),
        init=R(f"{EXP}weights/init.pt"),
        classes=f"{LISTS}/classes.txt",
    output:
        model=R(f"{EXP}train/model_final.pt"),
        metrics=R(f"{EXP}train/metrics.jsonl"),
    log:
        R(f"logs/{EXP}train.log"),
    conda:
        "../envs/nlflow.yaml"
    threads: all_cores()
    resources:
        mem_mb=16000,
        runtime=2880,
        # GPUs of the whole job: snakemake-executor-plugin-slurm passes this as `sbatch --gpus`,
        # a per-job total; the stage runs gpu // nodes processes on each node.
        gpu=train_job_gpus,
        # `sbatch --nodes` (snakemake-executor-plugin-slurm); the local executor ignores it.
        nodes=exp_setting("train", "nodes"),
        # One SLURM task per node (`sbatch --ntasks` for a CPU job); torchrun starts the per-GPU
        # processes itself. tasks_per_gpu=0 keeps the plugin from turning `tasks` into
        # `--ntasks-per-gpu` (older versions add `--ntasks-per-gpu=1` unless it is 0).
        tasks=exp_setting("train", "nodes"),
        tasks_per_gpu=0,
        # Several nodes: `mpi` tells the SLURM plugins that the job starts its own job step (the
        # stage's srun + torchrun), so the job runs in its batch step on the first node. Without
        # it snakemake-executor-plugin-slurm-jobstep wraps the job in `srun -n1 --nodes=N
        # --gpus=<the job's GPUs>`, a one-node step that cannot hold the other nodes' GPUs: SLURM
        # refuses it ("Invalid generic resource (gres) specification"). Unset for one node.
        mpi=train_launcher,
    params:
        # What can change the trained network; worker, logging and checkpoint settings travel
        # apart and never re-run training (nlflow.workflow.config).
        train=training_params,
        operational=section_params("train", result=False),
        model=training_model_params,
        checkpoint_dir=exp_path("train/checkpoints"),
        preflight=preflight_params(),
    script:
        "../workflow/scripts/train.py"
