"""mnist-mlp: the TensorFlow notes' MLP, trained by its own tf.GradientTape step under tf.function.

Flatten -> Dense 100 (ReLU) -> Dense 10 (softmax), Adam at learning rate 0.001, batch 50, 5 epochs, as the
notes train it, with `--loop custom`: the `tf.GradientTape` step below, compiled by `tf.function` (`--eager` runs
it eagerly), a `tf.train.Checkpoint` every epoch (the last 3 kept), and TensorBoard summaries in `logs/`. It
trains once on all training data (`--folds 1`, as the notes do); `--folds 5` cross-validates.

    make train KERNEL=mnist-mlp ARGS="--eager --epochs 1"    # here, on input/ (kernel.py --help lists the flags)
    make tensorboard                                         # then open http://127.0.0.1:6006
    make push KERNEL=mnist-mlp                               # on Kaggle: reads /kaggle/input, writes /kaggle/working
"""

import sys
from pathlib import Path

try:
    import src  # noqa: F401
except ImportError:  # a clone without `pip install -e .`: the package sits two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from src import flags as kernel_flags

flags = kernel_flags.parse_flags(
    "mnist-mlp", __doc__, model="mlp", optimizer="adam", learning_rate=1e-3, epochs=5, batch_size=50, folds=1,
    loop="custom",
)

# %%
# Imported after the flags, so that --help and a bad flag answer before TensorFlow loads.
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from src import data, finish, layout, models, optimizers, training  # noqa: E402

dataset = data.load_dataset(flags.data)
input_shape = layout.input_shape()


# %%
def build_model() -> keras.Sequential:
    """The notes' MLP: one hidden layer of 100 units; `--model NAME` trains a registry model instead."""
    if flags.model != "mlp":
        return models.build_model(flags.model, input_shape)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Flatten(),
            layers.Dense(100, activation="relu"),
            layers.Dense(10, activation="softmax", dtype="float32"),
        ],
        name="mlp",
    )


def train_step(model, images, labels):
    """One step of the notes' loop on one replica's share of a batch (the kit runs it on every replica)."""
    with tf.GradientTape() as tape:
        probabilities = model(images, training=True)
        per_image_loss = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
        # The global batch's mean loss, each replica's share of it: the replicas' gradients then sum to its gradient.
        global_batch = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.shape(labels)[0])
        loss = tf.nn.compute_average_loss(per_image_loss, global_batch_size=global_batch)
    gradients = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return per_image_loss, probabilities


# %%
with training.start_run(flags, dataset) as run:
    for fold in run.folds():
        with fold.scope():
            model = build_model()
            if flags.optimizer == "adam":
                optimizer = keras.optimizers.Adam(learning_rate=fold.learning_rate)
            else:
                optimizer = optimizers.build_optimizer(flags.optimizer, fold.learning_rate)
            # The loss is --loop fit's; the custom loop's step above computes its own.
            model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        fold.fit(model, train_step)  # --loop custom: train_step in a tf.function, checkpointed every epoch
        fold.evaluate(model)
    record = run.finish(run.ensemble())

# %%
print(finish.summary_line(record), flush=True)
