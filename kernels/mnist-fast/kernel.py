"""mnist-fast: the quickest route to 99.2% on MNIST, cross-validated, with a fold-ensemble submission.

Conv2D 32 -> MaxPool -> Conv2D 64 -> MaxPool -> Dense 128 -> Dropout -> softmax (`fast_cnn`, a third of the
classic CNN's arithmetic), trained with Adam peaking at 0.003 after a warm-up over the first tenth of the steps
and decaying to zero on a cosine, batch 128, 4 epochs, on 5 stratified folds; the submission averages the five
models. Where the CPU computes bfloat16 natively (AMX, AVX512-BF16) it trains in mixed bfloat16, about twice as
fast; elsewhere in float32 (`--precision float32` forces that). On the full MNIST, `--folds 1` reaches about
99.3% test accuracy in under a tenth of the classic kernel's fit time (benchmarks/results.md).

Run it locally (on input/, which `make data` fills):

    make train KERNEL=mnist-fast                 # or: python kernels/mnist-fast/kernel.py
    make train KERNEL=mnist-fast ARGS="--folds 1"

Push it to Kaggle, where it reads /kaggle/input and writes /kaggle/working/submission.csv:

    make push KERNEL=mnist-fast
"""

import sys
from pathlib import Path

try:
    import src
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import src  # noqa: F401

from src import cli

KERNEL = "mnist-fast"
DEFAULTS = dict(
    model="fast_cnn", optimizer="adam", learning_rate=0.003, schedule="warmup_cosine", precision="auto", epochs=4,
    batch_size=128, folds=5,
)


def main(argv=None) -> int:
    config = cli.parse_kernel_args(argv, KERNEL, description=__doc__.splitlines()[0], **DEFAULTS)
    record = cli.run_kernel(config)
    print(cli.summary_line(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
