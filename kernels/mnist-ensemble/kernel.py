"""mnist-ensemble: the leaderboard recipe: a strong CNN with augmentation, fold and seed ensembles, and TTA.

`strong_cnn` (two conv blocks with BatchNorm, learned pooling and Dropout 0.4, then Conv 4x4 to 128 features)
learns from randomly rotated, zoomed and shifted digits, with Adam and a learning rate that decays by a constant
factor each epoch, to a tenth of its start after the last (x0.95 per epoch over 45 epochs). Each of the K
folds trains `--seeds` models; the submission averages every model's test probabilities, optionally over `--tta`
augmented copies of each test image. With `--pseudo-label P`, each model learns in its second half from the test
and held-out images it then labels with a probability of at least P too (never from their labels:
src/pseudo_labels.py).

Training uses only the training split. The competition's test images are MNIST images, so a model that learns
from the MNIST test set (for example one that loads keras.datasets.mnist) has seen their labels: such scores are
leaks, not skill, and this kernel never does it.

Budgets (`--budget`, default auto: gpu when a GPU is present, else quick):
    quick: 4 folds x 14 epochs x 1 seed of `strong_cnn_affine` (one resampling per image), Adam rising to 0.002
         over a tenth of the steps, then a cosine to zero, in bfloat16 where the CPU computes it natively: cpu's CV
         and test accuracy in a quarter of its float32 time on an AMX CPU (benchmarks/frontier.md)
    cpu: 4 folds x 30 epochs x 1 seed of `strong_cnn`, the recipe quick grew from: 108 minutes on 2 cores for
         MNIST's 60,000 training images (benchmarks/recipe-results-cpu.md), about 76 for the competition's 42,000
    gpu: 5 folds x 45 epochs x 3 seeds, for a Kaggle GPU kernel

    make train KERNEL=mnist-ensemble ARGS="--tta 4"                 # here, on input/: quick on a CPU
    make push KERNEL=mnist-ensemble ACCELERATOR=gpu                 # on Kaggle: two T4 GPUs
"""

import sys
from pathlib import Path

try:
    import src  # noqa: F401
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src import flags as kernel_flags

BUDGETS = {
    # One resampling per image, a warm-up then a cosine, 14 epochs in native bfloat16 (benchmarks/frontier.md).
    "quick": dict(folds=4, epochs=14, seeds=1, model="strong_cnn_affine", schedule="warmup_cosine", learning_rate=0.002,
                  precision="auto"),
    "cpu": dict(folds=4, epochs=30, seeds=1),
    "gpu": dict(folds=5, epochs=45, seeds=3),
}
# Where no GPU is present, quick: the fastest budget to the cpu budget's accuracy (benchmarks/frontier.md).
flags = kernel_flags.parse_flags(
    "mnist-ensemble", __doc__, budgets=BUDGETS, cpu_budget="quick", model="strong_cnn", optimizer="adam",
    schedule="exponential", batch_size=64,
)

# %%
# Imported after the flags, so that --help and a bad flag answer before TensorFlow loads.
import keras  # noqa: E402

from src import data, finish, layout, models, optimizers, training  # noqa: E402

# Only the training split is trained on: see the docstring on leaks.
dataset = data.load_dataset(flags.data)
input_shape = layout.input_shape()

# %%
with training.start_run(flags, dataset) as run:
    for fold in run.folds():  # K folds x --seeds models, each from its own seed
        with fold.scope():
            # strong_cnn (src/models/strong.py): its augmentation layers act in training only.
            model = models.build_model(flags.model, input_shape)
            if flags.optimizer == "adam":
                # Adam on the budget's schedule: from 0.001 by a constant factor per epoch to a tenth of it after the
                # last (cpu, gpu), or up over a tenth of the steps and down on a cosine (quick).
                optimizer = keras.optimizers.Adam(learning_rate=fold.learning_rate)
            else:
                optimizer = optimizers.build_optimizer(flags.optimizer, fold.learning_rate)
            model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        fold.fit(model)  # with --pseudo-label P, from half-way also on the unlabelled images it is sure of
        fold.evaluate(model)  # with --tta N, the mean over N augmented copies of each image
    # Every model's test probabilities averaged: over folds, seeds and (with --tta) augmented copies.
    record = run.finish(run.ensemble())

# %%
print(finish.summary_line(record), flush=True)
