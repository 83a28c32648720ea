"""Predicting probabilities with a trained model, optionally averaged over augmented copies (test-time augmentation).

Every prediction runs in batches of one shape (the last padded with blank images, then cut off), so a model's
predict function is traced once and TPUs, which compile one program per shape, predict too.
"""

import math

import numpy as np

from src import layout, pipelines
from src.mnist import NUM_CLASSES

PREDICT_BATCH_SIZE = 1000


def pad_rows(images: np.ndarray, multiple: int) -> np.ndarray:
    """Returns `images` with blank rows appended up to a multiple of `multiple`.

    Args:
        images: `(N, ...)`.
        multiple: the batch size every batch must have.

    Returns:
        `(ceil(N / multiple) * multiple, ...)`, the first N rows being `images`.
    """
    missing = -len(images) % multiple
    if not missing:
        return images
    return np.concatenate([images, np.zeros((missing, *images.shape[1:]), dtype=images.dtype)])


def batch_size_for(rows: int, replicas: int = 1, batch_size: int = PREDICT_BATCH_SIZE) -> int:
    """Returns the prediction batch for `rows` images: about `batch_size` at most, a multiple of `replicas`.

    A split smaller than `batch_size` gets a batch its own size, so that padding never adds more than a batch.
    """
    per_replica = max(1, min(batch_size // replicas, math.ceil(rows / replicas)))
    return per_replica * replicas


def predict_probabilities(model, images: np.ndarray, *, batch_size: int = PREDICT_BATCH_SIZE, tta: int = 0,
                          seed: int = 0) -> np.ndarray:
    """Predicts softmax probabilities, optionally with test-time augmentation.

    Args:
        model: a trained model; its input shape says its layout.
        images: `uint8` images `(M, 28, 28)`.
        batch_size: images per prediction step (the global batch under a strategy).
        tta: 0 predicts the images as they are; N > 0 returns the mean over N randomly augmented copies
            (the rotations, zooms and shifts of `models.strong.build_augmentation`, seeded by `seed`).
        seed: seeds the augmentation, so the same call gives the same probabilities.

    Returns:
        `float32` probabilities `(M, 10)`.
    """
    input_shape = tuple(model.input_shape[1:])
    padded = pad_rows(images, batch_size)
    pipeline = pipelines.make_pipeline(padded, batch_size=batch_size, data_format=layout.layout_of(input_shape))
    if tta == 0:
        return model.predict(pipeline, verbose=0)[: len(images)].astype(np.float32)
    from src.models import strong  # here, not at the top: the augmentation is built only for TTA

    augmentation = strong.build_augmentation(input_shape, seed=seed)
    total = np.zeros((len(padded), NUM_CLASSES), dtype=np.float64)
    for _ in range(tta):
        # Called eagerly batch by batch, so that each copy draws new transformations from the seeded generator.
        augmented = np.concatenate([augmentation(batch, training=True).numpy() for batch in pipeline])
        total += model.predict(augmented, batch_size=batch_size, verbose=0)
    return (total / tta)[: len(images)].astype(np.float32)
