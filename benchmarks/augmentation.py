"""One resampling or three: the time and the blur of `strong_cnn`'s augmentation, one process, rounds alternating.

Times `strong.build_augmentation` (RandomRotation, RandomZoom, RandomTranslation: three interpolations) against
`affine.RandomAffine` (the same ranges composed into one matrix, one interpolation) on MNIST training images in
batches of 64 under `tf.function`, in alternating rounds, and prints each round's seconds per 45,000 images (one
recipe epoch's images) and the mean squared ink of the results beside the input's (blur spreads ink into more,
fainter pixels, which lowers it).

    python benchmarks/augmentation.py ../shared/data/mnist.npz
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from src import npz  # noqa: E402
from src.models import affine, strong  # noqa: E402

IMAGES, BATCH, ROUNDS, RECIPE_EPOCH_IMAGES = 12_800, 64, 3, 45_000


def main(path: str) -> int:
    arrays = npz.read_npz(path, ("x_train",), what="an mnist.npz", fix="Pass the full MNIST's mnist.npz.")
    images = arrays["x_train"][:IMAGES, ..., None].astype("float32") / 255
    layers = {"three Random* layers": strong.build_augmentation(seed=1), "RandomAffine": affine.RandomAffine(seed=1)}
    batches = tf.data.Dataset.from_tensor_slices(images).batch(BATCH)
    for _ in range(ROUNDS):
        for name, layer in layers.items():
            augment = tf.function(lambda batch, layer=layer: layer(batch, training=True))
            for batch in batches.take(2):  # traced before the clock starts
                augment(batch)
            started = time.perf_counter()
            for batch in batches:
                augment(batch)
            seconds = (time.perf_counter() - started) * RECIPE_EPOCH_IMAGES / IMAGES
            print(f"{name}: {seconds:.1f} s per {RECIPE_EPOCH_IMAGES:,} images", flush=True)
    sample = images[:256]
    print(f"mean squared ink: input {np.mean(sample**2):.4f}, " + ", ".join(
        f"{name} {np.mean(np.asarray(layer(sample, training=True))**2):.4f}" for name, layer in layers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist.npz"))
