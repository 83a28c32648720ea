"""Tests of src.distribute: choosing the strategy, TF_CONFIG, mirrored replicas, two workers, no TPU.

Strategies that need several devices or processes run in subprocesses with hard timeouts: logical CPU devices
must be configured before TensorFlow starts, a process holds one multi-worker strategy for its life, and a
test must never hang waiting for a worker.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import kernel_script, run_kernel
from src import config, distribute, flags, paths
from src.errors import KitError

KERNEL_SCRIPT = kernel_script("mnist-cnn")
WORKER_KERNEL = kernel_script("mnist-mlp")
# What a subprocess may take at most: TensorFlow starts in about 5 s here; training is a few seconds.
SUBPROCESS_TIMEOUT = 180
# TPU and multi-worker variables a developer's shell might hold; the tests choose their own.
FOREIGN_ENV = ("TF_CONFIG", "TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG", "TPU_ACCELERATOR_TYPE",
               distribute.JOIN_TIMEOUT_ENV, distribute.COLLECTIVE_TIMEOUT_ENV)


def clean_env(**extra: str) -> dict:
    environment = {name: value for name, value in os.environ.items() if name not in FOREIGN_ENV}
    environment.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", **extra)
    return environment


def ephemeral_ports_start() -> int:
    """The first port of the range the kernel hands out to port-0 binds and to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now, chosen at random below the ephemeral range.

    A port probed with bind(port 0) comes from the ephemeral range, where any outgoing connection (another test's
    gRPC client, say) can take it before the worker binds it: CI failed once on "Could not start gRPC server". Below
    that range only an explicit bind can take a port.
    """
    stop = ephemeral_ports_start()
    chooser = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        port = chooser.randrange(min(10000, stop // 2), stop)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def last_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


# --- TF_CONFIG and chief ----------------------------------------------------------------------------


def test_parse_tf_config_reads_a_cluster_and_its_chief():
    workers = '{"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": %d}}'
    assert [distribute.is_chief(distribute.parse_tf_config(workers % index)) for index in range(3)] == \
        [True, False, False]
    assert distribute.worker_place(distribute.parse_tf_config(workers % 2)) == (2, 3)
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "worker", "index": 0}}
    parsed = distribute.parse_tf_config(json.dumps(with_chief))
    assert not distribute.is_chief(parsed)  # worker 0 is no chief when the cluster has one
    assert distribute.worker_place(parsed) == (1, 3)
    with_chief["task"] = {"type": "chief", "index": 0}
    assert distribute.is_chief(distribute.parse_tf_config(json.dumps(with_chief)))


@pytest.mark.parametrize("text, named", [
    (None, "TF_CONFIG, which is not set"),
    ("{not json", "not valid JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs a 'cluster' and a 'task'"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}', "'host:port'"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "no 'worker'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "'worker' or 'chief'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "from 0 to 1"),
])
def test_parse_tf_config_names_what_is_wrong(text, named):
    with pytest.raises(KitError, match="TF_CONFIG") as raised:
        distribute.parse_tf_config(text)
    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_run_config_checks_strategy_and_fold_index():
    with pytest.raises(KitError, match="Unknown strategy.*Received: strategy='gpus'"):
        config.RunConfig(kernel="t", strategy="gpus")
    with pytest.raises(KitError, match="custom loop only.*keras-team/keras#20585"):
        config.RunConfig(kernel="t", strategy="multiworker", loop="fit")
    assert config.RunConfig(kernel="t", strategy="multiworker", loop="custom").strategy == "multiworker"
    with pytest.raises(KitError, match="fold_index must be an integer from 0 to 4. Received: fold_index=5"):
        config.RunConfig(kernel="t", folds=5, fold_index=5)
    with pytest.raises(KitError, match="needs folds of 2 or more"):
        config.RunConfig(kernel="t", folds=1, fold_index=0)


def test_parse_flags_takes_strategy_and_fold_index():
    parsed = flags.parse_flags("mnist-cnn", argv=["--strategy", "mirrored", "--folds", "3", "--fold-index", "2"])
    assert (parsed.strategy, parsed.folds, parsed.fold_index) == ("mirrored", 3, 2)
    assert flags.parse_flags("mnist-cnn", argv=[]).strategy == "auto"
    with pytest.raises(KitError, match="invalid choice"):
        flags.parse_flags("mnist-cnn", argv=["--strategy", "horovod"])


# --- small helpers ----------------------------------------------------------------------------------


def test_distribution_batch_arithmetic_and_description():
    mirrored = distribute.Distribution(requested="auto", kind="mirrored", strategy=None, replicas=2,
                                       devices=("/job:localhost/replica:0/task:0/device:GPU:0",
                                                "/job:localhost/replica:0/task:0/device:GPU:1"))
    assert mirrored.global_batch_size(128) == 256
    assert not mirrored.fixed_shapes
    assert mirrored.describe() == "MirroredStrategy (auto): 2 replicas on GPU:0, GPU:1"
    tpu = distribute.Distribution(requested="tpu", kind="tpu", strategy=None, replicas=8)
    assert tpu.global_batch_size(128) == 1024 and tpu.fixed_shapes


def test_check_config_refuses_eager_steps_on_a_tpu():
    tpu = distribute.Distribution(requested="tpu", kind="tpu", strategy=None, replicas=8)
    with pytest.raises(KitError, match="--eager cannot train on a TPU"):
        distribute.check_config(config.RunConfig(kernel="t", eager=True), tpu)
    distribute.check_config(config.RunConfig(kernel="t"), tpu)


@pytest.mark.parametrize("message, says", [
    ("Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
     "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.",
     "/job:worker/replica:0/task:1 stopped sending heartbeats"),
    ("Collective ops is aborted by: recvmsg:Connection reset by peer", "closed its connection"),
    ("Collective has timed out during execution.", "waited more than its 30 s limit"),
    ("Something else\nmore", "Something else"),
])
def test_describe_worker_failure_says_what_happened(message, says):
    assert says in distribute.describe_worker_failure(message, 30)


@pytest.mark.parametrize("gpus, expected", [(0, "none"), (1, "none"), (2, "mirrored"), (8, "mirrored")])
def test_select_auto_mirrors_over_two_gpus_or_more_else_one_device(monkeypatch, gpus, expected):
    import tensorflow as tf

    for name in FOREIGN_ENV:
        monkeypatch.delenv(name, raising=False)
    # The GPUs TensorFlow would list (these tests' machines have none, and no TPU): one GPU trains alone, two or
    # more are mirrored. MirroredStrategy then mirrors over the logical GPUs, here none, so over the CPU.
    real = tf.config.list_physical_devices
    fake_gpus = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{index}", device_type="GPU")
                 for index in range(gpus)]
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: fake_gpus if kind == "GPU" else real(kind))
    monkeypatch.setattr(distribute, "_selected", {})  # select() keeps one strategy per process: start afresh

    assert distribute.select("auto").kind == expected
    assert distribute.select("none").kind == "none" and distribute.select("none").replicas == 1
    assert distribute.select("none") is distribute.select("none")


# --- tpu without a TPU ------------------------------------------------------------------------------


@pytest.mark.slow
def test_tpu_without_a_tpu_fails_with_one_line_and_writes_nothing(sample_npz, tmp_path):
    out = tmp_path / "out"
    completed = subprocess.run([sys.executable, str(KERNEL_SCRIPT), "--strategy", "tpu", "--data", str(sample_npz),
                                "--out", str(out)], capture_output=True, text=True, env=clean_env(),
                               timeout=SUBPROCESS_TIMEOUT)

    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: No TPU found for --strategy tpu") and "ACCELERATOR=tpu" in lines[-1]
    assert "Traceback" not in completed.stderr
    assert not out.exists()


# --- mirrored over two logical CPUs -----------------------------------------------------------------

# Splits the CPU into two logical devices (before TensorFlow starts them), then trains the same fold on one
# device with a batch of 32 and mirrored over both with 16 per replica: the same global batch.
MIRRORED_SCRIPT = """
import json, runpy, sys, tempfile
from pathlib import Path
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from src import distribute, fitting, paths, sample

(x, y), (x_test, y_test) = sample.sample_arrays()
folder = Path(tempfile.mkdtemp())
npz = sample.write_npz(folder / "mnist.npz", x[:300], y[:300], x_test[:200], y_test[:200])
mirrored = distribute.select("mirrored")
plan = fitting.FitPlan(x[:40], y[:40], None, None, batch_size=mirrored.global_batch_size(16), epochs=1, seed=0,
                       data_format="channels_last")
first = next(iter(distribute.distribute_dataset(mirrored.strategy, plan.batches(0, one_hot=False))))
replica_images = mirrored.strategy.experimental_local_results(first[0])
results = {"replicas": mirrored.replicas, "kind": mirrored.kind,
           "replica_batches": [int(images.shape[0]) for images in replica_images]}


def run(kernel, *argv):
    script = str(paths.KERNELS_DIR / kernel / "kernel.py")
    sys.argv = [script, "--data", str(npz), "--out", str(folder / "out"), "--quiet", "--no-plots", *argv]
    record = runpy.run_path(script, run_name="__main__")["record"]
    with np.load(record["outputs"]["probabilities"]) as saved:
        return record, saved["test_probabilities"]


for kernel, model, loop, epochs in (("mnist-mlp", "mlp", "fit", 2), ("mnist-mlp", "mlp", "custom", 2),
                                    ("mnist-cnn", "seed_cnn", "fit", 2)):
    runs = {}
    for strategy, batch in (("none", 32), ("mirrored", 16)):
        runs[strategy] = run(kernel, "--optimizer", "adam", "--epochs", str(epochs), "--batch-size", str(batch),
                             "--folds", "1", "--loop", loop, "--strategy", strategy)
    results[f"{model}/{loop}"] = {
        "accuracy": {name: record["test_accuracy"] for name, (record, _) in runs.items()},
        "loss": {name: record["folds"][0]["history"]["loss"] for name, (record, _) in runs.items()},
        "max_difference": float(np.abs(runs["none"][1] - runs["mirrored"][1]).max()),
    }
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def mirrored_results():
    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=paths.REPO_ROOT, capture_output=True,
                               text=True, env=clean_env(), timeout=SUBPROCESS_TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return last_json_line(completed.stdout)


@pytest.mark.slow
def test_mirrored_splits_each_global_batch_over_the_replicas(mirrored_results):
    assert (mirrored_results["kind"], mirrored_results["replicas"]) == ("mirrored", 2)
    # --batch-size 16 per replica: global batches of 32, 16 images on each logical CPU.
    assert mirrored_results["replica_batches"] == [16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("loop", config.LOOP_NAMES)
def test_mirrored_trains_like_one_device_with_the_global_batch(mirrored_results, loop):
    result = mirrored_results[f"mlp/{loop}"]
    # Without dropout the computation is the same, summed in another order: float rounding only.
    np.testing.assert_allclose(result["loss"]["mirrored"], result["loss"]["none"], rtol=1e-5)
    assert result["max_difference"] < 1e-5
    assert result["accuracy"]["mirrored"] == result["accuracy"]["none"]
    assert result["loss"]["none"][1] < result["loss"]["none"][0]  # it learns


@pytest.mark.slow
def test_mirrored_with_dropout_reaches_the_accuracy_of_one_device(mirrored_results):
    # Each replica draws its own dropout masks, so the numbers can differ. This script's seed_cnn runs with
    # --seed 0, 1, 2 (2026-12-02, the 2-core development machine) gave one device / mirrored accuracies of
    # 0.700 / 0.700, 0.725 / 0.750 and 0.700 / 0.725: differences of 0, 5 and 5 of the 200 test images. The
    # test (seed 0) allows 0.05, 10 images, twice the largest difference seen.
    result = mirrored_results["seed_cnn/fit"]
    assert result["accuracy"]["none"] > 0.5
    assert abs(result["accuracy"]["mirrored"] - result["accuracy"]["none"]) <= 0.05


# --- two workers on 127.0.0.1 -----------------------------------------------------------------------

WORKER_ARGS = ["--strategy", "multiworker", "--loop", "custom", "--batch-size", "16", "--folds", "2", "--no-plots"]


def start_workers(sample_npz, out: Path, tmp_path: Path, epochs: int, indices=(0, 1), **env: str):
    """Starts kernel processes as workers `indices` of a cluster of two on free loopback ports."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = []
    for index in indices:
        scratch = tmp_path / f"tmp-{index}"
        scratch.mkdir()
        log = open(tmp_path / f"worker-{index}.log", "w")
        environment = clean_env(TF_CONFIG=tf_config(addresses, index), TMPDIR=str(scratch),
                                DIGIT_KIT_LOGS=str(tmp_path / f"logs-{index}"), **env)
        workers.append(subprocess.Popen(
            [sys.executable, str(WORKER_KERNEL), *WORKER_ARGS, "--epochs", str(epochs), "--data", str(sample_npz),
             "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True))
    return workers


def wait_all(workers, timeout: float) -> list[int | None]:
    """Waits for every worker; kills what is left at `timeout` (None marks a worker that had to be killed)."""
    deadline = time.monotonic() + timeout
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            codes.append(None)
    return codes


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes(sample_npz, tmp_path):
    out = tmp_path / "out"
    workers = start_workers(sample_npz, out, tmp_path, epochs=2)
    codes = wait_all(workers, SUBPROCESS_TIMEOUT)
    logs = [(tmp_path / f"worker-{index}.log").read_text() for index in range(2)]

    assert codes == [0, 0], logs
    assert "worker 1 of 2: trained; the chief (worker 0) wrote the submission" in logs[1]
    written = sorted(path.name for path in out.iterdir())
    assert len(written) == 4 and [name.rsplit(".", 1)[-1] for name in written[1:]] == ["csv", "json", "npz"]
    assert not (tmp_path / "logs-1").exists()  # the other worker's TensorBoard logs went to its scratch folder
    assert list((tmp_path / "tmp-1").iterdir()) == []  # ... which it deleted
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["distribution"] == {"strategy": "multiworker", "requested": "multiworker", "replicas": 2,
                                      "workers": 2, "global_batch_size": 32}
    assert "batch 16 per replica x 2 = 32" in logs[0]

    # Two workers with 16 images each per step train as one process with batches of 32.
    single = run_kernel("mnist-mlp", [*WORKER_ARGS[4:], "--strategy", "none", "--batch-size", "32", "--epochs", "2",
                                      "--data", str(sample_npz), "--out", str(tmp_path / "single"), "--quiet"])
    together, alone = np.load(next(out.glob("*.npz"))), np.load(single["outputs"]["probabilities"])
    np.testing.assert_allclose(together["test_probabilities"], alone["test_probabilities"], atol=1e-5)
    np.testing.assert_allclose(together["oof_probabilities"], alone["oof_probabilities"], atol=1e-5)
    assert record["test_accuracy"] == single["test_accuracy"]


@pytest.mark.slow
def test_keras_fit_still_fails_under_multiworker(tmp_path):
    # The canary for config.py's refusal of --strategy multiworker --loop fit: plain Keras, no kit code. When a
    # Keras release trains here, this fails, and the refusal (and this test) can go.
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = [subprocess.Popen([sys.executable, str(Path(__file__).with_name("keras_multiworker_fit.py"))],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                env=clean_env(TF_CONFIG=tf_config(addresses, index)))
               for index in range(2)]
    codes = wait_all(workers, SUBPROCESS_TIMEOUT)
    outputs = [worker.stdout.read() for worker in workers]
    assert codes == [0, 0], outputs
    results = [line for output in outputs for line in output.splitlines() if line.startswith("fit ")]
    assert results != ["fit trained"] * 2, "Keras now trains under multiworker: lift the refusal in src/config.py"
    assert results == ["fit failed: ValueError"] * 2, outputs


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_other_with_one_line(sample_npz, tmp_path):
    out = tmp_path / "out"
    workers = start_workers(sample_npz, out, tmp_path, epochs=500)
    chief_log = tmp_path / "worker-0.log"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while "Epoch 3/500" not in chief_log.read_text() and time.monotonic() < deadline and workers[0].poll() is None:
        time.sleep(0.2)
    assert "Epoch 3/500" in chief_log.read_text(), chief_log.read_text()[-3000:]
    os.killpg(workers[1].pid, signal.SIGKILL)
    killed = time.monotonic()

    # TensorFlow sees the closed connection (or the missing heartbeats): the README says within seconds. On the
    # 2-core development machine at a load of about 5 (2026-12-02) the chief gave up 9.6 s after the kill; the
    # test allows 30 s.
    codes = wait_all(workers, 30)

    assert codes[0] == 2, chief_log.read_text()[-3000:]
    assert time.monotonic() - killed < 30
    last = [line for line in chief_log.read_text().splitlines() if line.strip()][-1]
    assert last.startswith("error: The multi-worker run stopped on worker 0 of 2: ")
    assert "Start every worker again" in last
    assert not list(out.glob("*.csv")) and not list(out.glob("*.json"))


@pytest.mark.slow
def test_a_stuck_worker_stops_the_other_after_the_collective_timeout(sample_npz, tmp_path):
    out = tmp_path / "out"
    seconds = 4
    workers = start_workers(sample_npz, out, tmp_path, epochs=500, **{distribute.COLLECTIVE_TIMEOUT_ENV: str(seconds)})
    chief_log = tmp_path / "worker-0.log"
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while "Epoch 2/500" not in chief_log.read_text() and time.monotonic() < deadline and workers[0].poll() is None:
        time.sleep(0.2)
    assert "Epoch 2/500" in chief_log.read_text(), chief_log.read_text()[-3000:]
    # Worker 1 stops taking part but keeps its connections open: the collective timeout notices before the
    # coordination service misses its heartbeats (without the timeout the chief says "stopped sending
    # heartbeats" instead). On the 2-core development machine at a load of about 5 (2026-12-02) the chief gave up
    # 6.2 s after the SIGSTOP, with the limit at 4 s.
    os.killpg(workers[1].pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        codes = wait_all(workers[:1], 60)
        waited = time.monotonic() - stopped
    finally:
        os.killpg(workers[1].pid, signal.SIGKILL)
        wait_all(workers[1:], 10)

    log = chief_log.read_text()
    assert codes == [2], log[-3000:]
    last = [line for line in log.splitlines() if line.strip()][-1]
    assert last == ("error: The multi-worker run stopped on worker 0 of 2: a collective operation waited more than "
                    f"its {seconds} s limit (a worker hangs or died); no submission was written. Start every worker "
                    "again."), log[-3000:]
    assert seconds <= waited < 60
    assert not list(out.glob("*.csv")) and not list(out.glob("*.json"))


@pytest.mark.slow
def test_a_worker_alone_gives_up_waiting_for_the_cluster(sample_npz, tmp_path):
    out = tmp_path / "out"
    # Its partner in TF_CONFIG never starts.
    lonely = start_workers(sample_npz, out, tmp_path, epochs=1, indices=(0,), **{distribute.JOIN_TIMEOUT_ENV: "3"})
    codes = wait_all(lonely, SUBPROCESS_TIMEOUT)
    log = (tmp_path / "worker-0.log").read_text()

    assert codes[0] == -signal.SIGKILL, log
    assert "error: worker 0 of 2 waited 3 s for the other workers of TF_CONFIG" in log
    assert not out.exists()
