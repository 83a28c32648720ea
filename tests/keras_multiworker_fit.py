"""One worker of a two-worker `model.fit` in plain Keras, for the canary in test_distribute.py.

Prints `fit trained` or `fit failed: <error type>`; the cluster comes from TF_CONFIG.
"""

import numpy as np
import tensorflow as tf

import keras

strategy = tf.distribute.MultiWorkerMirroredStrategy()
x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
y = (x.sum(axis=1) > 4).astype("int32")
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
try:
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    print("fit trained", flush=True)
except ValueError as error:  # Keras 3.15: a PerReplica batch it cannot reduce
    print(f"fit failed: {type(error).__name__}", flush=True)
