"""Fused batch normalisation on this CPU: training images per second of `strong_cnn_affine`, one process.

`strong_cnn` normalises with `FusedBatchNormalization` (src/models/batchnorm.py): Keras' layer with its training
step run as TensorFlow's one fused kernel. This builds the model four ways, with that layer or Keras' own
`BatchNormalization` (a clone with the same settings), in float32 and in mixed bfloat16, fits each for one epoch
over the same MNIST training images, in turn, for several rounds, and prints each configuration's median images
per second over the rounds after the first (which also traces), with its ratio to Keras' layer in float32.

    python benchmarks/batchnorm.py ../shared/data/mnist.npz
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

import keras  # noqa: E402

from src import machine, npz, pipelines  # noqa: E402
from src.models import batchnorm, build_model  # noqa: E402

import precision  # noqa: E402  benchmarks/precision.py, beside this script: its per-round report

MODEL, BATCH_SIZE = "strong_cnn_affine", 64
CONFIGS = (("float32", "float32", False), ("float32", "float32", True),
           ("mixed_bfloat16", "mixed_bfloat16", False), ("mixed_bfloat16", "mixed_bfloat16", True))


def with_keras_normalization(model: keras.Sequential) -> keras.Sequential:
    """Returns a copy of `model` whose fused normalisation layers are Keras' `BatchNormalization`."""
    def clone(layer):
        if isinstance(layer, batchnorm.FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())
    return keras.models.clone_model(model, clone_function=clone)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mnist.npz", help="an mnist.npz")
    parser.add_argument("--rounds", type=int, default=5, help="epochs per configuration (default: %(default)s)")
    parser.add_argument("--images", type=int, default=6_400, help="training images per epoch (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.images < BATCH_SIZE:
        parser.error(f"--rounds needs 2 or more, --images {BATCH_SIZE} or more. "
                     f"Received: rounds={args.rounds}, images={args.images}.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    arrays = npz.read_npz(args.data, ("x_train", "y_train"), what="an mnist.npz",
                          fix="Pass the full MNIST's mnist.npz.")
    images = min(args.images, len(arrays["y_train"]))
    print(f"native bfloat16 (AMX or AVX512-BF16): {machine.cpu_computes_bfloat16()}", flush=True)
    batches = pipelines.make_pipeline(arrays["x_train"][:images], arrays["y_train"][:images],
                                      batch_size=BATCH_SIZE, data_format="channels_last")
    models = {}
    for policy_name, policy, fused in CONFIGS:
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(MODEL, (28, 28, 1))
        model = model if fused else with_keras_normalization(model)
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy")
        models[f"{policy_name}, {'fused' if fused else 'Keras'} BatchNorm"] = model
    keras.mixed_precision.set_global_policy("float32")
    rates = {label: [] for label in models}
    for _ in range(args.rounds):
        for label, model in models.items():
            started = time.perf_counter()
            model.fit(batches, epochs=1, verbose=0)
            rates[label].append(images / (time.perf_counter() - started))
    for line in precision.rate_lines(f"{MODEL} (batch {BATCH_SIZE})", rates, "float32, Keras BatchNorm"):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
