#!/bin/bash
# experimaestro array script (Slurm launcher): task i runs the batch script of job i
#SBATCH --job-name=learn
#SBATCH --output=/ws/.experimaestro/slurm/array-1-%A.out
#SBATCH --open-mode=append
#SBATCH --time=4:00:00
#SBATCH --mem=16G
#SBATCH --gpus-per-node=1
#SBATCH --partition=gpu
#SBATCH --constraint='a100|v100'
#SBATCH --mail-type=END
#SBATCH --comment='two words; rm -rf /'
case "$SLURM_ARRAY_TASK_ID" in
  0) exec /bin/bash '/work space/it'"'"'s/jobs/mod.learn/$HOME0123/learn.sh' ;;
  1) exec /bin/bash /ws/jobs/mod.learn/abc/learn.sh ;;
  *) echo "experimaestro: no job for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;
esac
