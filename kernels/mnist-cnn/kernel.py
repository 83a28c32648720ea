"""mnist-cnn: the classic Keras MNIST CNN, cross-validated, with a fold-ensemble submission.

Conv2D 32 -> Conv2D 64 -> MaxPool -> Dropout -> Dense 128 -> Dropout -> softmax, trained with Adadelta at
learning rate 1.0, batch 128, 12 epochs, on 5 stratified folds; the submission averages the five models.
`--folds 1` trains once on all training data, as the original kernel did.

Run it locally (on input/, which `make data` fills):

    make train                                   # or: python kernels/mnist-cnn/kernel.py
    make train ARGS="--folds 1 --epochs 3"

Push it to Kaggle, where it reads /kaggle/input and writes /kaggle/working/submission.csv:

    make push KERNEL=mnist-cnn
"""

import sys
from pathlib import Path

try:
    import src
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import src  # noqa: F401

from src import cli

KERNEL = "mnist-cnn"
DEFAULTS = dict(model="seed_cnn", optimizer="adadelta", epochs=12, batch_size=128, folds=5)


def main(argv=None) -> int:
    config = cli.parse_kernel_args(argv, KERNEL, description=__doc__.splitlines()[0], **DEFAULTS)
    record = cli.run_kernel(config)
    print(cli.summary_line(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
