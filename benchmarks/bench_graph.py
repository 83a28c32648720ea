"""bench-graph: images per second of the custom loop's training step, eager vs under tf.function.

The TensorFlow notes say `@tf.function` helps most for models made of many small operations and little for
models of a few heavy ones. This measures the kit's own step (`src.loops.Steps`, the step `--loop custom`
trains with, and `--eager` runs eagerly) for the `mlp` and `seed_cnn` models, both ways, in one process, and
reports the graph/eager ratio of each: ratios of numbers measured side by side, not absolute speeds.

    make bench-graph                                  # or: python benchmarks/bench_graph.py
    make bench-graph ARGS="--steps 100 --batch-size 128"

The table is printed and written, with the date, command, machine, versions and commit, to `--results`
(default `benchmarks/graph-results.md`).
"""

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import bench  # benchmarks/bench.py, beside this script: the lines every results file opens with

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


MODELS = ("mlp", "seed_cnn")


def measure(model_name: str, eager: bool, batches: list, steps: int, warmup: int) -> float:
    """Returns images per second of `steps` training steps, after `warmup` untimed ones (tracing included)."""
    import tensorflow as tf

    import keras

    from src import custom_loop, layout, models, optimizers

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()  # as a kit run trains
    model = optimizers.compile_model(models.build_model(model_name, layout.input_shape("channels_last")), "adam", 1e-3)
    train = custom_loop.Steps(model, eager=eager).train
    for index in range(warmup):
        train(*batches[index % len(batches)])
    # A step returns before its work is done when TensorFlow runs ops asynchronously; reading the
    # last loss waits for all of them.
    started = time.perf_counter()
    for index in range(steps):
        loss = train(*batches[index % len(batches)])
    float(tf.convert_to_tensor(loss))
    seconds = time.perf_counter() - started
    return steps * len(batches[0][0]) / seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_graph.py", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per model and mode (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=50, help="the notes' batch (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=bench.REPO_ROOT / "benchmarks" / "graph-results.md",
                        help="where the table goes (default: %(default)s)")
    args = parser.parse_args(argv)
    started, clock, load_before = dt.datetime.now(dt.timezone.utc), time.perf_counter(), bench.load_text()

    import tensorflow as tf

    from src import pipelines, sample

    (x_train, y_train), _ = sample.sample_arrays()
    pipeline = pipelines.make_pipeline(x_train, y_train, batch_size=args.batch_size, data_format="channels_last",
                                       one_hot=False)
    # Batches are made once and kept in memory, so that only the step is timed, not the input pipeline.
    batches = [(tf.constant(images), tf.constant(labels)) for images, labels in pipeline.as_numpy_iterator()
               if len(labels) == args.batch_size]
    setting = (f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, batch {args.batch_size}, "
               f"{args.steps} timed steps after {args.warmup} warm-up steps")
    table = ["| model | parameters | eager images/s | tf.function images/s | tf.function / eager |",
             "| --- | ---: | ---: | ---: | ---: |"]
    print(setting, *table, sep="\n", flush=True)
    for model_name in MODELS:
        from src import layout, models

        parameters = models.build_model(model_name, layout.input_shape("channels_last")).count_params()
        eager = measure(model_name, True, batches, args.steps, args.warmup)
        graph = measure(model_name, False, batches, args.steps, args.warmup)
        table.append(f"| {model_name} | {parameters:,} | {eager:,.0f} | {graph:,.0f} | {graph / eager:.2f}x |")
        print(table[-1], flush=True)
    header = bench.provenance_lines(started, time.perf_counter() - clock, load_before)
    title = "# bench-graph: the custom loop's training step, eager vs tf.function"
    args.results.write_text("\n".join([title, "", *header, f"- setting: {setting}", "", *table, ""]))
    print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
