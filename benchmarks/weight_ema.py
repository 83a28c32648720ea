"""Weight EMA on a kernel: `mnist-fast` or `mnist-ensemble` itself, its weights averaged, judged on CV.

Runs `kernels/<kernel>/kernel.py` unchanged, with the kernel's own flags, in this process, after making every
optimizer its models compile with keep an exponential moving average of the trainable weights (Keras' `use_ema`,
momentum M: each step the average moves `1 - M` of the way to the weights). `model.fit` writes the average into the
model when it ends, so the fold's held-out accuracy (its CV) and its test predictions are the averaged model's; the
per-epoch `val_accuracy` and `--test-curve` points are the live weights'. `--momentum 0` trains the kernel's own
optimizer. The kit has no flag for it: a lever becomes one only if it helps on CV (benchmarks/README.md lists what
it gave).

    python benchmarks/weight_ema.py --momentum 0.99 --kernel mnist-fast --data ../shared/data/mnist.npz \\
        --out build/bench/weight-ema --seed 0 --quiet --no-plots
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

import bench  # noqa: E402  (its neighbour: benchmarks/ is on the path of `python benchmarks/...`)
from src import console  # noqa: E402

KERNELS = ("mnist-fast", "mnist-ensemble")


def parse_ema(argv: list[str]) -> tuple[float, str, list[str]]:
    """Returns `--momentum M` (in `[0, 1)`), `--kernel` and the kernel's flags, the rest of `argv`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--momentum", type=float, required=True)
    parser.add_argument("--kernel", default="mnist-fast")
    known, rest = parser.parse_known_args(argv)
    if not 0 <= known.momentum < 1:
        raise SystemExit(f"error: --momentum is a share in [0, 1), such as 0.99. Received: momentum={known.momentum}.")
    if known.kernel not in KERNELS:
        raise SystemExit(f"error: --kernel is one of {', '.join(KERNELS)}. Received: kernel={known.kernel}.")
    return known.momentum, known.kernel, rest


def average_compiled_weights(momentum: float) -> None:
    """Makes every `Model.compile(optimizer=...)` from now on give its optimizer a weight EMA of `momentum`."""
    import keras

    compile_model = keras.Model.compile

    def compile_averaged(self, *args, optimizer="rmsprop", **kwargs):
        optimizer = keras.optimizers.get(optimizer)
        if momentum > 0:
            if optimizer.built:
                raise SystemExit("error: the optimizer was built before compile; weight EMA needs a fresh one.")
            # Read only when the optimizer builds its variables, at the first step: setting them here is enough.
            optimizer.use_ema, optimizer.ema_momentum, optimizer.ema_overwrite_frequency = True, momentum, None
        return compile_model(self, *args, optimizer=optimizer, **kwargs)

    keras.Model.compile = compile_averaged


def main(argv=None) -> int:
    momentum, kernel, kernel_argv = parse_ema(list(sys.argv[1:] if argv is None else argv))
    console.quiet_tensorflow(verbose="--verbose" in kernel_argv)  # before Keras loads TensorFlow, as a kernel does
    average_compiled_weights(momentum)
    bench.run_kernel_here(kernel, kernel_argv, f"weight EMA {momentum:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
