"""mnist-cnn: the classic Keras MNIST CNN, cross-validated, with a fold-ensemble submission.

Conv2D 32 -> Conv2D 64 -> MaxPool -> Dropout -> Dense 128 -> Dropout -> softmax, trained with Adadelta at
learning rate 1.0, batch 128, 12 epochs, on 5 stratified folds; the submission averages the five models.
`--folds 1` trains once on all training data, as the original kernel did.

    make train ARGS="--folds 1 --epochs 3"    # here, on input/ (kernel.py --help lists the flags)
    make push KERNEL=mnist-cnn                 # on Kaggle: reads /kaggle/input, writes /kaggle/working
"""

import sys
from pathlib import Path

try:
    import src  # noqa: F401
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src import flags as kernel_flags

flags = kernel_flags.parse_flags(
    "mnist-cnn", __doc__, model="seed_cnn", optimizer="adadelta", learning_rate=1.0, epochs=12, batch_size=128, folds=5
)

# %%
# Imported after the flags, so that --help and a bad flag answer before TensorFlow loads.
import keras  # noqa: E402
from keras import layers  # noqa: E402

from src import data, finish, layout, models, optimizers, training  # noqa: E402

# The data: the competition's CSVs or an mnist.npz, found under input/ (or /kaggle/input on Kaggle).
dataset = data.load_dataset(flags.data)
input_shape = layout.input_shape()  # (28, 28, 1), or (1, 28, 28) where channels come first


# %%
def build_model() -> keras.Sequential:
    """The classic Keras MNIST CNN (99.06% after 12 epochs, benchmarks/results.md); `--model NAME` trains another."""
    if flags.model != "seed_cnn":
        return models.build_model(flags.model, input_shape)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=3, activation="relu"),
            layers.Conv2D(64, kernel_size=3, activation="relu"),
            layers.MaxPooling2D(pool_size=2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name="seed_cnn",
    )


def build_optimizer(learning_rate):
    """Adadelta at 1.0, as the classic example trains this CNN: Keras 3's default rate, 0.001, leaves it near 84%."""
    if flags.optimizer != "adadelta":
        return optimizers.build_optimizer(flags.optimizer, learning_rate)  # --optimizer adam or rmsprop
    return keras.optimizers.Adadelta(learning_rate=learning_rate, rho=0.95)


# %%
# The run: its folder, lock and record; an interrupted run of the same command resumes where it stopped.
with training.start_run(flags, dataset) as run:
    for fold in run.folds():  # the stratified folds; fold.learning_rate is flags.learning_rate on its schedule
        with fold.scope():  # the run's tf.distribute strategy
            model = build_model()
            model.compile(
                optimizer=build_optimizer(fold.learning_rate),
                loss="categorical_crossentropy",
                metrics=["accuracy"],
            )
        fold.fit(model)  # model.fit with checkpoints, TensorBoard and progress, resumed from its last epoch
        fold.evaluate(model)  # accuracy on the held-out rows; out-of-fold and test probabilities kept
    ensemble = run.ensemble()  # the mean of the folds' test probabilities
    record = run.finish(ensemble)  # the submission CSV, the run record, the probabilities and pictures

# %%
print(finish.summary_line(record), flush=True)
