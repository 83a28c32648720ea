"""bfloat16 and XLA on this CPU: training images per second of the kit's models, one process, rounds alternating.

Builds each model three ways: float32 (what `--precision auto` trains in without native bfloat16), mixed bfloat16
(`--precision mixed_bfloat16`, what `auto` picks on a CPU with AMX or AVX512-BF16), and float32 compiled with XLA
(`jit_compile=True`; Keras 3 leaves XLA off on a machine without an accelerator). Then it fits each for one epoch
over the same MNIST training images, in turn, for several rounds, and prints each configuration's median images per
second over the rounds after the first (which also traces), with its ratio to float32. A configuration that XLA
cannot compile (`RandomAffine`'s ImageProjectiveTransformV3 has no XLA CPU kernel) gets one line saying so.

    python benchmarks/precision.py ../shared/data/mnist.npz
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from src import machine, npz, pipelines  # noqa: E402
from src.models import build_model  # noqa: E402

# model, batch size (its recipe's), training images per round.
MODELS = (("fast_cnn", 128, 25_600), ("strong_cnn_affine", 64, 6_400))
CONFIGS = (
    ("float32", "float32", False), ("mixed_bfloat16", "mixed_bfloat16", False), ("float32 + XLA", "float32", True),
)
ROUNDS = 5


def main(path: str) -> int:
    arrays = npz.read_npz(path, ("x_train", "y_train"), what="an mnist.npz", fix="Pass the full MNIST's mnist.npz.")
    print(f"native bfloat16 (AMX or AVX512-BF16): {machine.cpu_computes_bfloat16()}", flush=True)
    for name, batch_size, images in MODELS:
        batches = pipelines.make_pipeline(arrays["x_train"][:images], arrays["y_train"][:images],
                                          batch_size=batch_size, data_format="channels_last")
        models = {}
        for label, policy, jit in CONFIGS:
            keras.mixed_precision.set_global_policy(policy)
            model = build_model(name, (28, 28, 1))
            model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy", jit_compile=jit)
            models[label] = model
        keras.mixed_precision.set_global_policy("float32")
        rates = {label: [] for label in models}
        for _ in range(ROUNDS):
            for label, model in list(models.items()):
                started = time.perf_counter()
                try:
                    model.fit(batches, epochs=1, verbose=0)
                except tf.errors.InvalidArgumentError as error:
                    reason = next((line for line in error.message.splitlines() if "unsupported" in line), "")
                    print(f"{name} {label}: XLA cannot compile it: {reason[:160]}", flush=True)
                    del models[label], rates[label]
                    continue
                rates[label].append(images / (time.perf_counter() - started))
        for line in rate_lines(f"{name} (batch {batch_size})", rates, "float32", versus=" float32"):
            print(line, flush=True)
    return 0


def rate_lines(prefix: str, rates: dict[str, list[float]], baseline: str, versus: str = "") -> list[str]:
    """Returns a line per configuration: its median images/s over the rounds after the first (which also traces),
    its ratio to the `baseline` configuration's (`versus` follows the "x"), and every round's rate."""
    reference = statistics.median(rates[baseline][1:])
    lines = []
    for label, measured in rates.items():
        median = statistics.median(measured[1:])
        lines.append(f"{prefix} {label}: {median:,.0f} images/s ({median / reference:.2f}x{versus}); "
                     f"rounds: {', '.join(f'{rate:,.0f}' for rate in measured)}")
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist.npz"))
