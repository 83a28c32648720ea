"""Label smoothing on the leaderboard recipe: `mnist-ensemble` itself, its loss smoothed, judged on CV.

Runs `kernels/mnist-ensemble/kernel.py` unchanged, with the kernel's own flags, in this process, after replacing the
`"categorical_crossentropy"` its models compile with by `keras.losses.CategoricalCrossentropy(label_smoothing=S)`:
each one-hot target becomes `1 - S + S/10` for its digit and `S/10` for the others, which keeps a model from pushing
its logits without bound. `--smoothing 0` trains the kernel's own loss. The kit has no flag for it: a lever
becomes one only if it helps on CV (benchmarks/README.md lists what it gave).

    python benchmarks/label_smoothing.py --smoothing 0.1 --data ../shared/data/mnist.npz --budget quick \\
        --out build/bench/label-smoothing --seed 0 --quiet --no-plots
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

import bench  # noqa: E402  (its neighbour: benchmarks/ is on the path of `python benchmarks/...`)
from src import console  # noqa: E402


def parse_smoothing(argv: list[str]) -> tuple[float, list[str]]:
    """Returns `--smoothing S` (in `[0, 1)`) and the kernel's flags, the rest of `argv`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--smoothing", type=float, required=True)
    known, rest = parser.parse_known_args(argv)
    if not 0 <= known.smoothing < 1:
        raise SystemExit(f"error: --smoothing is a share in [0, 1), such as 0.1. "
                         f"Received: smoothing={known.smoothing}.")
    return known.smoothing, rest


def smooth_compiled_loss(smoothing: float) -> None:
    """Makes every `Model.compile(loss="categorical_crossentropy")` from now on compile the smoothed loss."""
    import keras

    compile_model = keras.Model.compile

    def compile_smoothed(self, *args, loss=None, **kwargs):
        if loss == "categorical_crossentropy":
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
        return compile_model(self, *args, loss=loss, **kwargs)

    keras.Model.compile = compile_smoothed


def main(argv=None) -> int:
    smoothing, kernel_argv = parse_smoothing(list(sys.argv[1:] if argv is None else argv))
    console.quiet_tensorflow(verbose="--verbose" in kernel_argv)  # before Keras loads TensorFlow, as a kernel does
    smooth_compiled_loss(smoothing)
    bench.run_kernel_here("mnist-ensemble", kernel_argv, f"label smoothing {smoothing:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
