"""mnist-mlp: the TensorFlow notes' MLP, trained by the kit's own GradientTape loop under tf.function.

Flatten -> Dense 100 (ReLU) -> Dense 10 (softmax), Adam at learning rate 0.001, batch 50, 5 epochs, as the
notes train it, with `--loop custom`: a `tf.GradientTape` step compiled by `@tf.function` (`--eager` runs it
eagerly), a `tf.train.Checkpoint` every epoch (the last 3 kept), and TensorBoard summaries in `logs/`. It
trains once on all training data (`--folds 1`, as the notes do); `--folds 5` cross-validates.

Run it locally (on input/, which `make data` fills):

    make train KERNEL=mnist-mlp                  # or: python kernels/mnist-mlp/kernel.py
    make train KERNEL=mnist-mlp ARGS="--eager --epochs 1"
    make tensorboard                             # then open http://127.0.0.1:6006

Push it to Kaggle, where it reads /kaggle/input and writes /kaggle/working/submission.csv:

    make push KERNEL=mnist-mlp
"""

import sys
from pathlib import Path

try:
    import src
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import src  # noqa: F401

from src import cli

KERNEL = "mnist-mlp"
DEFAULTS = dict(model="mlp", optimizer="adam", learning_rate=1e-3, epochs=5, batch_size=50, folds=1, loop="custom")


def main(argv=None) -> int:
    config = cli.parse_kernel_args(argv, KERNEL, description=__doc__.splitlines()[0], **DEFAULTS)
    record = cli.run_kernel(config)
    print(cli.summary_line(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
