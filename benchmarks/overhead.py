"""Where the kit's training time goes beside the seed kernel's: input pipeline and op determinism, one by one.

In one process, four copies of the seed CNN (Adadelta 1.0, batch 128) train one epoch each in turn, round after
round, the order rotating every round so that load from other work on the machine falls on all of them alike:

- arrays: the seed kernel's way, float32 arrays scaled up front, one-hot labels, `model.fit(x, y)`;
- arrays + determinism: the same under `tf.config.experimental.enable_op_determinism()`;
- kit pipeline: `src.pipelines.make_pipeline` (uint8 until a batch is scaled, one-hot per batch);
- kit pipeline + determinism: what a kit run trains with.

Each epoch validates on the test split, scaled to the same share of the training rows as the full MNIST.
It prints each configuration's median images per wall second and per CPU second (the process's, all threads),
relative to `arrays`, and the cores it kept busy (CPU seconds / wall seconds): a configuration that runs
fewer threads shows up there, not in images per CPU second.

    python benchmarks/overhead.py --data ../shared/data/mnist.npz --rows 20000 --rounds 4
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import config as tf_config  # noqa: E402  (disable_op_determinism is not public)

from src import layout, loaders, mnist, optimizers, pipelines  # noqa: E402
from src.models import classic  # noqa: E402

CONFIGURATIONS = ("arrays", "arrays + determinism", "kit pipeline", "kit pipeline + determinism")


def make_inputs(name: str, x_train, y_train, x_test, y_test) -> dict:
    """Returns the `model.fit` arguments of a configuration."""
    if name.startswith("arrays"):
        return dict(
            x=layout.to_model_layout(x_train, "channels_last"),
            y=keras.utils.to_categorical(y_train, mnist.NUM_CLASSES),
            batch_size=128,
            shuffle=True,
            validation_data=(layout.to_model_layout(x_test, "channels_last"),
                             keras.utils.to_categorical(y_test, mnist.NUM_CLASSES)),
        )
    return dict(
        x=pipelines.make_pipeline(x_train, y_train, batch_size=128, data_format="channels_last", shuffle=True),
        validation_data=pipelines.make_pipeline(x_test, y_test, batch_size=1000, data_format="channels_last"),
        shuffle=False,
    )


def set_determinism(name: str) -> None:
    if name.endswith("determinism"):
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an mnist.npz")
    parser.add_argument("--rows", type=int, default=20000, help="training rows per epoch")
    parser.add_argument("--rounds", type=int, default=4, help="epochs per configuration")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = loaders.load_npz(args.data)
    test_rows = max(1, round(args.rows * len(x_test) / len(x_train)))
    x_train, y_train = x_train[: args.rows], y_train[: args.rows]
    x_test, y_test = x_test[:test_rows], y_test[:test_rows]
    keras.utils.set_random_seed(0)
    runs = {}
    for name in CONFIGURATIONS:
        set_determinism(name)
        model = optimizers.compile_model(classic.build_seed_cnn(), "adadelta", 1.0)
        runs[name] = (model, make_inputs(name, x_train, y_train, x_test, y_test))
    wall = {name: [] for name in CONFIGURATIONS}
    cpu = {name: [] for name in CONFIGURATIONS}
    for round_index in range(args.rounds):
        order = CONFIGURATIONS[round_index % 4:] + CONFIGURATIONS[: round_index % 4]
        for name in order:
            model, inputs = runs[name]
            set_determinism(name)
            wall_started, cpu_started = time.perf_counter(), time.process_time()
            model.fit(epochs=1, verbose=0, **inputs)
            wall[name].append(time.perf_counter() - wall_started)
            cpu[name].append(time.process_time() - cpu_started)
            print(f"round {round_index + 1} {name}: {wall[name][-1]:.1f} s wall, {cpu[name][-1]:.1f} s CPU",
                  flush=True)
    # The first round also traces each model's functions; later rounds are the steady state.
    steady = slice(1, None) if args.rounds > 1 else slice(None)
    reference_wall = statistics.median(wall["arrays"][steady])
    reference_cpu = statistics.median(cpu["arrays"][steady])
    print(f"\n{args.rows} training images, {test_rows} validation images, median over rounds 2-{args.rounds}")
    print(f"{'configuration':28} {'images/s':>9} {'ratio':>6} {'images/CPU s':>13} {'ratio':>6} {'cores busy':>10}")
    for name in CONFIGURATIONS:
        seconds, cpu_seconds = statistics.median(wall[name][steady]), statistics.median(cpu[name][steady])
        print(f"{name:28} {args.rows / seconds:9,.0f} {reference_wall / seconds:6.3f} "
              f"{args.rows / cpu_seconds:13,.0f} {reference_cpu / cpu_seconds:6.3f} {cpu_seconds / seconds:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
