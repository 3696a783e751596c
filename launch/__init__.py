"""Running studies (experiments/) and multi-process training: locally, as a
SLURM job array, or across hosts (`srun`, Cloud TPU, multi-GPU nodes)."""
