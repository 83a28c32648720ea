"""Distribution: the `tf.distribute` strategy a run trains under, and which process writes its outputs.

TensorFlow does all the distributing; this module only chooses and starts its strategy, once per process:

| `--strategy` | strategy | replicas |
| --- | --- | --- |
| `none` | TensorFlow's default strategy (one device) | 1 |
| `mirrored` | `MirroredStrategy` over the visible GPUs, else over the logical CPUs | GPUs (or CPUs) |
| `multiworker` | `MultiWorkerMirroredStrategy` over the cluster `TF_CONFIG` describes | all workers' devices |
| `tpu` | `TPUStrategy` from a `TPUClusterResolver`, or one clear error without a TPU | TPU cores |
| `auto` | `tpu` if a TPU is found, else `mirrored` if more than one GPU is visible, else `none` | |

`--batch-size` is per replica: a step reads `batch_size * replicas` images (the global batch). The learning rate
is not scaled with the replicas: `--learning-rate` is used as given.

With several workers, every worker trains (they must, to take part in each step's all-reduce) but only the chief
writes the submission, the record, the probabilities, the checkpoints and the TensorBoard logs; the others write
theirs into a temporary folder they delete, as TensorFlow's multi-worker guide does. A worker that dies makes
the others stop with one line instead of waiting forever: TensorFlow's coordination service notices a dead
worker's missing heartbeats (or its closed connection), and every collective operation gives up after
`DIGIT_KIT_COLLECTIVE_TIMEOUT` seconds.
"""

import contextlib
import glob
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from src.config import STRATEGY_NAMES, check_choice
from src.errors import KitError

logger = logging.getLogger(__name__)

TF_CONFIG_ENV = "TF_CONFIG"
# How long a worker waits for the whole cluster to join before giving up, and how long any one collective
# operation (an all-reduce of gradients, a broadcast of initial weights) may take.
JOIN_TIMEOUT_ENV = "DIGIT_KIT_WORKER_JOIN_TIMEOUT"
COLLECTIVE_TIMEOUT_ENV = "DIGIT_KIT_COLLECTIVE_TIMEOUT"
DEFAULT_JOIN_TIMEOUT_SECONDS = 600.0
DEFAULT_COLLECTIVE_TIMEOUT_SECONDS = 300.0
WORKER_JOBS = ("chief", "worker")
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')


@dataclass(frozen=True)
class Distribution:
    """The strategy a process trains under, and its place in the cluster.

    Attributes:
        requested: the `--strategy` value, e.g. `"auto"`.
        kind: what it resolved to: `"none"`, `"mirrored"`, `"multiworker"` or `"tpu"`.
        strategy: the `tf.distribute.Strategy`.
        replicas: `strategy.num_replicas_in_sync`, over all workers.
        devices: the devices this process trains on.
        workers: processes in the cluster (1 unless multi-worker).
        worker_index: this process's place among them; the chief is 0.
        is_chief: whether this process writes the run's outputs.
    """

    requested: str
    kind: str
    strategy: Any = field(repr=False)
    replicas: int
    devices: tuple[str, ...] = ()
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def fixed_shapes(self) -> bool:
        """Whether every batch must have the same shape: on a TPU, XLA compiles one program per shape."""
        return self.kind == "tpu"

    def global_batch_size(self, per_replica: int) -> int:
        """Returns the images one step reads: `per_replica` on each of the replicas."""
        return per_replica * self.replicas

    def describe(self) -> str:
        """Returns one line naming the strategy, its replicas and this process's place."""
        name = {"none": "default strategy", "mirrored": "MirroredStrategy",
                "multiworker": "MultiWorkerMirroredStrategy", "tpu": "TPUStrategy"}[self.kind]
        where = f"worker {self.worker_index} of {self.workers}{' (chief)' if self.is_chief else ''}, " \
            if self.workers > 1 else ""
        devices = ", ".join(device.rsplit("/", 1)[-1].removeprefix("device:") for device in self.devices)
        return f"{name} ({self.requested}): {where}{self.replicas} replica{'s' if self.replicas != 1 else ''}" + (
            f" on {devices}" if devices else "")


# --- TF_CONFIG ------------------------------------------------------------------------------------


def parse_tf_config(text: str | None) -> dict:
    """Reads and checks a `TF_CONFIG` value: a cluster of `chief`/`worker` addresses and this process's task.

    Args:
        text: the variable's value, or None when it is not set.

    Returns:
        The parsed `{"cluster": {...}, "task": {"type": ..., "index": ...}}`.

    Raises:
        KitError: not set, not JSON, or not a cluster of `host:port` addresses with a task inside it.
    """
    if not text or not text.strip():
        raise KitError(f"strategy multiworker reads its cluster from {TF_CONFIG_ENV}, which is not set; set it on "
                       f"every worker, e.g. {TF_CONFIG_ENV}='{TF_CONFIG_EXAMPLE}'.")
    try:
        value = json.loads(text)
    except ValueError as error:
        raise KitError(f"{TF_CONFIG_ENV} is not valid JSON ({error}); it must look like {TF_CONFIG_EXAMPLE}. "
                       f"Received: {TF_CONFIG_ENV}={text[:120]!r}.") from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    task = value.get("task") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise KitError(f"{TF_CONFIG_ENV} needs a 'cluster' and a 'task' object, like {TF_CONFIG_EXAMPLE}. "
                       f"Received: {TF_CONFIG_ENV}={text[:120]!r}.")
    jobs = {name: addresses for name, addresses in cluster.items() if name in WORKER_JOBS}
    for name, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(address, str) and
                                                      re.fullmatch(r"[^\s:]+:\d+", address) for address in addresses):
            raise KitError(f"{TF_CONFIG_ENV}: cluster job {name!r} must list 'host:port' addresses. "
                           f"Received: {name}={addresses!r}.")
    if not any(jobs.values()):
        raise KitError(f"{TF_CONFIG_ENV}: the cluster lists no 'worker' (or 'chief') addresses. "
                       f"Received: cluster={cluster!r}.")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in WORKER_JOBS:
        raise KitError(f"{TF_CONFIG_ENV}: task type must be 'worker' or 'chief' for MultiWorkerMirroredStrategy. "
                       f"Received: type={task_type!r}.")
    size = len(cluster.get(task_type) or [])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise KitError(f"{TF_CONFIG_ENV}: task index must be from 0 to {size - 1} (the cluster lists {size} "
                       f"{task_type} address{'es' if size != 1 else ''}). Received: index={index!r}.")
    return value


def is_chief(tf_config: dict) -> bool:
    """Returns whether the task of a parsed `TF_CONFIG` is the chief: the `chief` task, else worker 0."""
    task = tf_config["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and task["index"] == 0 and not tf_config["cluster"].get("chief")


def worker_place(tf_config: dict) -> tuple[int, int]:
    """Returns `(index, count)`: this task's place among all the cluster's chief and worker tasks (chief first)."""
    cluster, task = tf_config["cluster"], tf_config["task"]
    chiefs = len(cluster.get("chief") or [])
    index = task["index"] if task["type"] == "chief" else chiefs + task["index"]
    return index, chiefs + len(cluster.get("worker") or [])


def _seconds_from_env(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e7:
        raise KitError(f"{name} must be a number of seconds above 0. Received: {name}={text!r}.")
    return seconds


# --- choosing the strategy ------------------------------------------------------------------------

_selected: dict[str, Distribution] = {}


def select(name: str) -> Distribution:
    """Starts the strategy `--strategy name` asks for; the same one for every later call in this process.

    `multiworker` must be started before TensorFlow runs anything else, so a kernel calls this first.

    Args:
        name: one of `STRATEGY_NAMES`.

    Returns:
        The `Distribution`.

    Raises:
        KitError: `tpu` without a TPU, `multiworker` without a usable `TF_CONFIG`, or a TPU that is found
            but cannot be started.
    """
    check_choice("strategy", name, STRATEGY_NAMES)
    if name not in _selected:
        starters = {"none": _default, "mirrored": _mirrored, "multiworker": _multiworker,
                    "tpu": lambda requested: _tpu(requested, required=True), "auto": _auto}
        distribution = starters[name](name)
        logger.info("strategy: %s", distribution.describe())
        _selected[name] = distribution
    return _selected[name]


def _default(requested: str) -> Distribution:
    return Distribution(requested=requested, kind="none", strategy=tf.distribute.get_strategy(), replicas=1)


def _mirrored(requested: str) -> Distribution:
    # Logical devices, so that a CPU split into several (tf.config.set_logical_device_configuration) mirrors too.
    devices = [device.name for device in tf.config.list_logical_devices("GPU")] or \
        [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Distribution(requested=requested, kind="mirrored", strategy=strategy,
                        replicas=strategy.num_replicas_in_sync, devices=tuple(devices))


def _auto(requested: str) -> Distribution:
    tpu = _tpu(requested, required=False)
    if tpu is not None:
        return tpu
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return _mirrored(requested)
    return _default(requested)


def _local_tpu_chips() -> bool:
    """Returns whether this machine shows signs of TPU chips attached to it (a Cloud or Kaggle TPU VM)."""
    if glob.glob("/dev/accel[0-9]*") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return True
    # Newer TPU VMs (v5e, v6e) attach their chips through VFIO; libtpu is what drives them.
    return bool(glob.glob("/dev/vfio/[0-9]*")) and importlib.util.find_spec("libtpu") is not None


def _tpu(requested: str, required: bool) -> Distribution | None:
    """Connects to a TPU and returns its `TPUStrategy`; None (or, if `required`, the kit's error) without one."""
    try:
        # TPU_NAME (or Kaggle's and Colab's variables) names a TPU somewhere; without them this raises at once,
        # without touching the network.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except ValueError:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local") if _local_tpu_chips() else None
    if resolver is None:
        if required:
            raise KitError("No TPU found for --strategy tpu: TPUClusterResolver has no TPU_NAME and this machine has "
                           "no TPU chips; on Kaggle, push with `make push KERNEL=<name> ACCELERATOR=tpu`, or train "
                           "here with --strategy auto. Received: strategy='tpu'.")
        return None
    try:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KitError(f"A TPU was found but could not be started ({reason[:200]}); train without it with "
                       f"--strategy none. Received: strategy={requested!r}.") from None
    devices = tuple(device.name for device in tf.config.list_logical_devices("TPU"))
    return Distribution(requested=requested, kind="tpu", strategy=strategy, replicas=strategy.num_replicas_in_sync,
                        devices=devices)


# Run as a separate process: TensorFlow holds Python's lock while it waits for the cluster, so no thread of
# this process could speak up. It waits for its stdin to close (the cluster joined, or the worker ended) and
# otherwise, after the time allowed, prints the kit's error line and ends the waiting worker.
_WATCHDOG = """
import os, select, signal, sys
worker, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
joined, _, _ = select.select([sys.stdin], [], [], seconds)
if not joined:
    print("error: " + message, file=sys.stderr, flush=True)
    os.kill(worker, signal.SIGKILL)
"""


@contextlib.contextmanager
def _join_watchdog(seconds: float, message: str):
    """Ends this process (SIGKILL) with `error: <message>` unless the block finishes within `seconds`.

    `MultiWorkerMirroredStrategy()` waits inside TensorFlow's C++ code for every worker of the cluster, and
    nothing in this process can interrupt it. Nothing of the run has been written by then, so ending it is safe.
    """
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message],
                                stdin=subprocess.PIPE)
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()


def _multiworker(requested: str) -> Distribution:
    tf_config = parse_tf_config(os.environ.get(TF_CONFIG_ENV))
    join_seconds = _seconds_from_env(JOIN_TIMEOUT_ENV, DEFAULT_JOIN_TIMEOUT_SECONDS)
    collective_seconds = _seconds_from_env(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_SECONDS)
    index, count = worker_place(tf_config)
    addresses = [address for job in WORKER_JOBS for address in tf_config["cluster"].get(job) or []]
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_seconds)
    logger.info("strategy: worker %d of %d waiting for the cluster (%s) to join", index, count, ", ".join(addresses))
    message = (f"worker {index} of {count} waited {join_seconds:g} s for the other workers of {TF_CONFIG_ENV} "
               f"({', '.join(addresses)}) to join; start every worker (each with its own task in {TF_CONFIG_ENV}) "
               f"and check the addresses, or wait longer with {JOIN_TIMEOUT_ENV}=<seconds>.")
    with _join_watchdog(join_seconds, message):
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return Distribution(requested=requested, kind="multiworker", strategy=strategy,
                        replicas=strategy.num_replicas_in_sync, devices=tuple(strategy.extended.worker_devices),
                        workers=count, worker_index=index, is_chief=is_chief(tf_config))


# --- training under a strategy --------------------------------------------------------------------


def check_config(config, distribution: Distribution) -> None:
    """Refuses settings the chosen strategy cannot run.

    Raises:
        KitError: `--eager` on a TPU (TPUStrategy runs compiled steps only).
    """
    if distribution.kind == "tpu" and config.eager:
        raise KitError("--eager cannot train on a TPU: TPUStrategy runs only compiled (tf.function) steps; drop "
                       "--eager or pass --strategy none. Received: eager=True, strategy=tpu.")


def distribute_dataset(strategy, dataset):
    """Returns `dataset` split over the strategy's replicas (each global batch into per-replica batches).

    Across workers, each worker takes its share of every batch (`AutoShardPolicy.DATA`): the batches are made
    in memory, not read from files that could be split instead.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


# --- multi-worker failures ------------------------------------------------------------------------


def describe_worker_failure(message: str, collective_seconds: float | None = None) -> str:
    """Returns what a TensorFlow error raised in a multi-worker step says happened, in a few words."""
    unhealthy = re.search(r"unhealthy \(stopped sending heartbeats\):\s*(\S+)", message)
    if unhealthy:
        return f"{unhealthy.group(1)} stopped sending heartbeats (it died or hangs)"
    if re.search(r"timed out|DEADLINE_EXCEEDED|Deadline Exceeded", message, re.IGNORECASE):
        limit = f" {collective_seconds:g} s" if collective_seconds else ""
        return f"a collective operation waited more than its{limit} limit (a worker hangs or died)"
    if re.search(r"Connection reset|Socket closed|failed to connect|Connection refused|recvmsg", message,
                 re.IGNORECASE):
        return "a worker closed its connection (it died)"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no reason given"


@contextlib.contextmanager
def worker_failures(distribution: Distribution):
    """Turns TensorFlow's errors about a lost worker into the kit's one-line error (multi-worker runs only)."""
    if distribution.kind != "multiworker":
        yield
        return
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError) as error:
        limit = _seconds_from_env(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_SECONDS)
        reason = describe_worker_failure(str(error), limit)
        raise KitError(f"The multi-worker run stopped on worker {distribution.worker_index} of "
                       f"{distribution.workers}: {reason}; no submission was written. Start every worker "
                       "again.") from None
