"""mnist-ensemble: the leaderboard recipe: a strong CNN with augmentation, fold and seed ensembles, and TTA.

`strong_cnn` (two conv blocks with BatchNorm, learned pooling and Dropout 0.4, then Conv 4x4 to 128 features)
learns from randomly rotated, zoomed and shifted digits, with Adam and a learning rate that decays by a constant
factor each epoch, to a tenth of its start after the last (x0.95 per epoch over 45 epochs). Each of the K
folds trains `--seeds` models; the submission averages every model's test probabilities, optionally over `--tta`
augmented copies of each test image.

Training uses only the training split. The competition's test images are MNIST images, so a model that learns
from the MNIST test set (for example one that loads keras.datasets.mnist) has seen their labels: such scores are
leaks, not skill, and this kernel never does it.

Budgets (`--budget`, default auto: gpu when a GPU is present):
    cpu: 4 folds x 30 epochs x 1 seed, for a laptop (about 76 minutes on 2 cores for the 42,000 competition images)
    gpu: 5 folds x 45 epochs x 3 seeds, for a Kaggle GPU kernel

Run it locally:

    make train KERNEL=mnist-ensemble                      # or: python kernels/mnist-ensemble/kernel.py
    make train KERNEL=mnist-ensemble ARGS="--budget cpu --tta 4"

Push it to Kaggle, where it reads /kaggle/input and writes /kaggle/working/submission.csv:

    make push KERNEL=mnist-ensemble ACCELERATOR=gpu
"""

import sys
from pathlib import Path

try:
    import src
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import src  # noqa: F401

from src import cli

KERNEL = "mnist-ensemble"
DEFAULTS = dict(model="strong_cnn", optimizer="adam", schedule="exponential", batch_size=64)
BUDGETS = {
    "cpu": dict(folds=4, epochs=30, seeds=1),
    "gpu": dict(folds=5, epochs=45, seeds=3),
}


def main(argv=None) -> int:
    config = cli.parse_kernel_args(argv, KERNEL, description=__doc__.splitlines()[0], budgets=BUDGETS, **DEFAULTS)
    record = cli.run_kernel(config)
    print(cli.summary_line(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
