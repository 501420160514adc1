#!/bin/bash
# experimaestro batch script (Slurm launcher): `sbatch` this file to rerun the job
#SBATCH --job-name=learn
#SBATCH --output='/work space/it'"'"'s/jobs/mod.learn/$HOME0123/learn.out'
#SBATCH --error='/work space/it'"'"'s/jobs/mod.learn/$HOME0123/learn.err'
#SBATCH --open-mode=append
#SBATCH --time=4:00:00
#SBATCH --mem=16G
#SBATCH --gpus-per-node=1
#SBATCH --partition=gpu
#SBATCH --constraint='a100|v100'
#SBATCH --mail-type=END
#SBATCH --comment='two words; rm -rf /'
exec >>'/work space/it'"'"'s/jobs/mod.learn/$HOME0123/learn.out' 2>>'/work space/it'"'"'s/jobs/mod.learn/$HOME0123/learn.err'
cd '/work space/it'"'"'s/jobs/mod.learn/$HOME0123' || exit 1
echo "===== experimaestro: batch script of slurm job ${SLURM_JOB_ID:-none} on $(hostname) =====" >&2
export PYTHONPATH='/home/me/my project:/lib'
set -e
module load cuda/12
source ~/venv/bin/activate
set +e
exec '/opt/py env/bin/python3' -m experimaestro run '/work space/it'"'"'s/jobs/mod.learn/$HOME0123/params.json'
