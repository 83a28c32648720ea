"""oneDNN, TensorFlow's thread pools and `tf.data` caching on this CPU: training images per second, one process each.

TensorFlow reads these settings once, when it starts, so each configuration trains in its own process: the kit's
two recipes' models (`fast_cnn` at batch 128 in the precision `--precision auto` gives `mnist-fast` here,
`strong_cnn_affine` at batch 64 in float32, as `--budget quick`), one epoch over the same MNIST training images per
round, and the median images/s of the rounds after the first (which also traces). The configurations run in turn,
then again in the reverse order, so that load from elsewhere falls on all alike; each one's figure is the mean of
its two passes, with its ratio to TensorFlow's defaults (what every kernel runs with: nothing is set).

    python benchmarks/threads.py ../shared/data/mnist.npz
    python benchmarks/threads.py ../shared/data/mnist.npz --only default --rounds 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a clone without `pip install -e .`

# label: (environment, cache the batches). TF_NUM_*_THREADS size TensorFlow's thread pools (0 = its choice, the
# number of cores); TF_ENABLE_ONEDNN_OPTS=0 turns off the oneDNN kernels it uses by default on x86.
CONFIGS = {
    "default": ({}, False),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
    "intra-op 1": ({"TF_NUM_INTRAOP_THREADS": "1"}, False),
    "inter-op 1": ({"TF_NUM_INTEROP_THREADS": "1"}, False),
    "tf.data cache": ({}, True),
}
# model, batch size, training images per round, precision ("auto": bfloat16 where native, as mnist-fast).
MODELS = (("fast_cnn", 128, 25_600, "auto"), ("strong_cnn_affine", 64, 6_400, "float32"))


def measure(path: str, cache: bool, rounds: int, scale: float) -> dict[str, float]:
    """Returns each model's median training images/s over rounds 2 to `rounds`, in this process."""
    import keras
    import numpy as np

    from src import machine, npz, pipelines
    from src.models import build_model

    arrays = npz.read_npz(path, ("x_train", "y_train"), what="an mnist.npz", fix="Pass the full MNIST's mnist.npz.")
    rates = {}
    for name, batch_size, full_images, precision in MODELS:
        images = min(len(arrays["x_train"]), max(batch_size, int(full_images * scale)))
        bfloat16 = precision == "auto" and machine.cpu_computes_bfloat16()
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bfloat16 else "float32")
        batches = pipelines.make_pipeline(np.asarray(arrays["x_train"][:images]),
                                          np.asarray(arrays["y_train"][:images]), batch_size=batch_size,
                                          data_format="channels_last")
        if cache:
            batches = batches.cache()  # the scaled, one-hot batches of the first epoch, replayed
        model = build_model(name, (28, 28, 1))
        model.compile(optimizer=keras.optimizers.Adam(0.001), loss="categorical_crossentropy")
        measured = []
        for _ in range(rounds):
            started = time.perf_counter()
            model.fit(batches, epochs=1, verbose=0)
            measured.append(images / (time.perf_counter() - started))
        rates[f"{name} ({'bfloat16' if bfloat16 else 'float32'})"] = statistics.median(measured[1:])
    return rates


def run_config(label: str, args) -> dict[str, float]:
    """Returns `measure` of configuration `label`, run in a process of its own with its environment."""
    environment, _ = CONFIGS[label]
    command = [sys.executable, __file__, args.data, "--child", label, "--rounds", str(args.rounds),
               "--scale", str(args.scale)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **environment}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"error: configuration {label!r} failed (exit {done.returncode}): "
                         f"{(done.stderr.strip().splitlines() or [''])[-1]}")
    return json.loads(lines[-1])


def table(passes: dict[str, list[dict[str, float]]]) -> list[str]:
    """Returns the markdown table of each configuration's images/s (mean of its passes) and ratio to the default."""
    models = list(next(iter(passes.values()))[0])
    means = {label: {model: statistics.fmean(run[model] for run in runs) for model in models}
             for label, runs in passes.items()}
    baseline = means.get("default")
    lines = ["| configuration | " + " | ".join(f"{model} images/s" for model in models) + " |",
             "|---|" + "---|" * len(models)]
    for label, rates in means.items():
        cells = []
        for model in models:
            passes_text = " / ".join(f"{run[model]:,.0f}" for run in passes[label])
            ratio = f", {rates[model] / baseline[model]:.2f}x" if baseline else ""
            cells.append(f"{rates[model]:,.0f} ({passes_text}{ratio})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default="../shared/data/mnist.npz", help="an mnist.npz")
    parser.add_argument("--only", metavar="NAME", action="append", choices=CONFIGS,
                        help=f"run only these configurations (repeatable): {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=4, help="epochs per model and process (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=2, help="times each configuration runs (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=1.0, help="share of the images per round (default: 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per process (default: %(default)s)")
    parser.add_argument("--child", metavar="NAME", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.passes < 1 or not 0 < args.scale <= 1:
        parser.error(f"--rounds needs 2 or more, --passes 1 or more, --scale in (0, 1]. "
                     f"Received: rounds={args.rounds}, passes={args.passes}, scale={args.scale}.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        from src.errors import KitError

        try:
            print(json.dumps(measure(args.data, CONFIGS[args.child][1], args.rounds, args.scale)), flush=True)
        except KitError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    labels = args.only or list(CONFIGS)
    passes: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    for index in range(args.passes):
        for label in labels if index % 2 == 0 else reversed(labels):
            passes[label].append(run_config(label, args))
            rates = ", ".join(f"{model} {rate:,.0f} images/s" for model, rate in passes[label][-1].items())
            print(f"pass {index + 1}, {label}: {rates}", flush=True)
    print("\n".join(table(passes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
