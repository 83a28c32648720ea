"""The kit against the seed kernel: speed, time to accuracy, memory and responsiveness, side by side.

Every program runs as its own process; its peak RSS comes from `os.wait4` (Linux counts the parent's peak
into a child's, so this process stays small: it loads neither the data nor TensorFlow), its per-epoch seconds from the
peer's printed epoch lines and from the kit's run record (`history["epoch_seconds"]`, training + validation,
timed the same way). Throughput is compared on short runs interleaved peer, kit, peer, kit, ...; time to
accuracy runs once per seed. The table is printed and written, with the machine, library versions, commit and
command, to `--results`.

    make bench                      # full MNIST (18.4 minutes in the run of benchmarks/results.md)
    make bench-quick                # a 4,000-image slice, for development
    python benchmarks/bench.py --data ../shared/data/mnist.npz --peer ../shared/reference/seed_kernel.py \\
        --stages throughput --pairs 3
"""

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# After the path fix, for a clone without `pip install -e .`.
from src import files, machine, provenance, records  # noqa: E402

KERNELS = REPO_ROOT / "kernels"
STAGES = ("responsiveness", "throughput", "accuracy", "memory")
PEER_EPOCH_LINE = re.compile(r"^epoch (\d+): ([\d.]+)s (\d+) img/s")
# The seed recipe both sides train in the throughput pairs and the peer's time-to-accuracy run.
SEED_LEARNING_RATE = "1.0"
SEED_EPOCHS = 12
TARGET_FIT_RATIO = 0.10
TARGET_ACCURACY = 0.992
TARGET_THROUGHPUT_RATIO = 0.95
TARGET_RSS_BYTES = 2_000_000_000
TARGET_RESPONSE_SECONDS = 1.0


@dataclass
class Measured:
    """One program's run.

    Attributes:
        label: what ran, for the table.
        command: the argument list.
        wall_seconds: start to exit, TensorFlow's import and data loading included.
        peak_rss_bytes: the process's peak resident memory (with any children it waited for).
        cpu_seconds: user + system CPU time of the process, all threads: less sensitive than wall time to
            other work on the machine.
        returncode: its exit status.
        output: its stdout and stderr.
        epoch_seconds: wall seconds of each epoch (training + validation).
        train_images: images per epoch.
        test_accuracy: on the labelled test split, when it printed or recorded one.
    """

    label: str
    command: list[str]
    wall_seconds: float
    peak_rss_bytes: int
    cpu_seconds: float
    returncode: int
    output: str
    epoch_seconds: list[float] = field(default_factory=list)
    train_images: int = 0
    test_accuracy: float | None = None

    @property
    def fit_seconds(self) -> float:
        return sum(self.epoch_seconds)

    @property
    def images_per_second(self) -> list[float]:
        return [self.train_images / seconds for seconds in self.epoch_seconds if seconds > 0]

    @property
    def best_images_per_second(self) -> float:
        """The fastest epoch's images/s: other work on a shared machine only ever slows an epoch down."""
        rates = self.images_per_second
        return max(rates) if rates else float("nan")


def run_program(label: str, command: list[str], log_path: Path, timeout: float) -> Measured:
    """Runs a command to its end, logging its output, and measures its wall time and peak RSS.

    Raises:
        SystemExit: it failed or ran past `timeout`; the message names its log.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
                   "PYTHONUNBUFFERED": "1"}
    print(f"  {label}: {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=environment)
        while True:
            # wait4, not wait: it returns the child's own resource usage, so each row has its own peak RSS.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                raise SystemExit(f"error: {label} ran past {timeout:.0f}s; see {log_path}.")
            time.sleep(0.2)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text()
    if process.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise SystemExit(f"error: {label} exited with status {process.returncode}; see {log_path}:\n{tail}")
    # Linux reports ru_maxrss in KiB.
    return Measured(label, command, wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, process.returncode,
                    output)


def parse_peer_output(output: str) -> tuple[list[float], list[float], float | None]:
    """Reads the seed kernel's printed lines.

    Returns:
        `(epoch_seconds, images_per_second, test_accuracy)`; the accuracy is None when no
        `test_accuracy=` line was printed.
    """
    epoch_seconds, rates, accuracy = [], [], None
    for line in output.splitlines():
        match = PEER_EPOCH_LINE.match(line.strip())
        if match:
            epoch_seconds.append(float(match.group(2)))
            rates.append(float(match.group(3)))
        elif line.startswith("test_accuracy="):
            accuracy = float(line.split("=", 1)[1])
    return epoch_seconds, rates, accuracy


def run_peer(peer: Path, data: Path, epochs: int, label: str, log_dir: Path, timeout: float) -> Measured:
    """Runs the seed kernel with Adadelta at 1.0 (the recipe the kit's mnist-cnn trains)."""
    command = [sys.executable, str(peer), str(data), str(epochs), SEED_LEARNING_RATE]
    measured = run_program(label, command, log_dir / f"{slug(label)}.log", timeout)
    epoch_seconds, rates, measured.test_accuracy = parse_peer_output(measured.output)
    if len(epoch_seconds) != epochs:
        raise SystemExit(f"error: {label} printed {len(epoch_seconds)} epoch lines, expected {epochs}; "
                         f"is {peer} the seed kernel?")
    # The peer prints seconds to 0.1 s but images/s exactly; recover precise epoch times from the latter.
    measured.train_images = round(statistics.median(r * s for r, s in zip(rates, epoch_seconds)))
    measured.epoch_seconds = [measured.train_images / rate for rate in rates]
    return measured


def run_kit(kernel: str, data: Path, flags: list[str], label: str, out_dir: Path, timeout: float) -> Measured:
    """Runs a kit kernel with `--quiet` into its own output folder and reads its run record."""
    out = out_dir / slug(label)
    command = [sys.executable, str(KERNELS / kernel / "kernel.py"), "--data", str(data), "--out", str(out),
               "--quiet", *flags]
    measured = run_program(label, command, out_dir / f"{slug(label)}.log", timeout)
    [record_path] = sorted(out.glob(f"{kernel}-*.json"))
    record = records.read_record(record_path)
    folds = record["folds"]
    measured.epoch_seconds = [seconds for fold in folds for seconds in fold["history"]["epoch_seconds"]]
    measured.train_images = record["data"]["train_rows"] if len(folds) == 1 else 0
    measured.test_accuracy = record["test_accuracy"]
    return measured


def run_kernel_here(kernel: str, kernel_argv: list[str], lever: str) -> None:
    """Runs `kernels/<kernel>/kernel.py` in this process with `kernel_argv`, as `python kernel.py ...` would.

    For the benchmarks that patch a lever into Keras first (label smoothing, weight EMA): the kernel stays as it is.

    Args:
        kernel: the kernel's folder name, such as "mnist-fast".
        kernel_argv: its flags.
        lever: what was patched in, for the first line the run prints.
    """
    import runpy

    script = KERNELS / kernel / "kernel.py"
    sys.argv = [str(script), *kernel_argv]
    print(f"{lever}: {script.relative_to(REPO_ROOT)} {' '.join(kernel_argv)}", flush=True)
    runpy.run_path(str(script), run_name="__main__")


def epoch_list(measured: Measured) -> str:
    return ", ".join(f"{seconds:.1f}" for seconds in measured.epoch_seconds)


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def time_command(arguments: list[str], repeats: int = 3) -> tuple[float, int]:
    """Returns the slowest wall time of `repeats` runs of a quick command, and its last exit status."""
    slowest, status = 0.0, 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, cwd=REPO_ROOT)
        slowest = max(slowest, time.perf_counter() - started)
        status = result.returncode
    return slowest, status


SLICE_PROGRAM = """
import sys
from src import loaders, sample
source, train_rows, test_rows, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
(x_train, y_train), (x_test, y_test) = loaders.load_npz(source)
sample.write_npz(path, x_train[:train_rows], y_train[:train_rows], x_test[:test_rows], y_test[:test_rows])
"""


def slice_data(source: Path, train_rows: int, test_rows: int, out_dir: Path) -> Path:
    """Writes the first rows of an `mnist.npz` (same layout) for quick runs, and returns its path.

    A child process does it: Linux counts a parent's peak RSS into every child it starts (the pages it shares
    until `exec`), so the bench's own process stays small by never loading the data or TensorFlow.
    """
    path = out_dir / f"mnist-{train_rows}-{test_rows}.npz"
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", SLICE_PROGRAM, str(source), str(train_rows), str(test_rows), str(path)],
                   cwd=REPO_ROOT, check=True)
    return path


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f}"


def ratio_range(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, {len(ratios)} pairs)"


class Report:
    """Collects the table rows, the targets and the details as the stages run."""

    def __init__(self, quick: bool = False):
        self.quick = quick
        self.rows: list[tuple[str, ...]] = []
        self.targets: list[tuple[str, str, str]] = []
        self.details: list[str] = []

    def row(self, program: str, run: str, wall: str = "", cpu: str = "", fit: str = "", rate: str = "",
            accuracy: str = "", rss: str = "", ratio: str = "") -> None:
        self.rows.append((program, run, wall, cpu, fit, rate, accuracy, rss, ratio))

    def measured_row(self, measured: Measured, run: str, ratio: str = "") -> None:
        self.details.append(f"- {measured.label}: epochs {epoch_list(measured)} s; `{shlex.join(measured.command)}`")
        rate = measured.best_images_per_second if measured.train_images else float("nan")
        self.row(measured.label, run, f"{measured.wall_seconds:.1f}", f"{measured.cpu_seconds:.1f}",
                 f"{measured.fit_seconds:.1f}",
                 "" if rate != rate else f"{rate:,.0f}",
                 "" if measured.test_accuracy is None else f"{measured.test_accuracy:.4f}",
                 megabytes(measured.peak_rss_bytes), ratio)

    def target(self, name: str, result: str, met: bool | None) -> None:
        verdict = "not measured" if met is None else ("met" if met else "NOT MET")
        if self.quick and met is not None:
            verdict += " (on a slice: indicative only)"
        self.targets.append((name, result, verdict))

    def table(self) -> str:
        header = ("program", "run", "wall s", "CPU s", "fit s", "images/s", "test acc", "peak RSS MB", "ratio")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", "| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {name} | {result} | {verdict} |" for name, result, verdict in self.targets]
        return "\n".join(lines)


def stage_responsiveness(report: Report) -> None:
    print("responsiveness: --help and bad flags (slowest of 3 runs each)", flush=True)
    commands = [
        ["-m", "src", "--help"],
        ["-m", "src", "frobnicate"],
        [str(KERNELS / "mnist-cnn" / "kernel.py"), "--epochs", "0"],
        [str(KERNELS / "mnist-fast" / "kernel.py"), "--model", "resnet"],
        [str(KERNELS / "mnist-fast" / "kernel.py"), "--schedule", "cyclic"],
    ]
    slowest = 0.0
    for arguments in commands:
        seconds, status = time_command(arguments)
        expected = 0 if arguments[-1] == "--help" else 2
        if status != expected:
            raise SystemExit(f"error: `python {shlex.join(arguments)}` exited {status}, expected {expected}.")
        report.details.append(f"- `python {shlex.join(arguments)}`: {seconds:.2f} s (exit {status})")
        slowest = max(slowest, seconds)
    report.row("python -m src / kernels", "--help and 4 bad flags, slowest", f"{slowest:.2f}")
    report.target("4. --help and bad flags answer in < 1 s", f"slowest {slowest:.2f} s",
                  slowest < TARGET_RESPONSE_SECONDS)


def stage_throughput(report: Report, peer: Path | None, data: Path, args, out_dir: Path) -> None:
    print(f"throughput: {args.pairs} pairs of {args.pair_epochs}-epoch runs, seed recipe, peer then kit", flush=True)
    kit_flags = ["--folds", "1", "--epochs", str(args.pair_epochs), "--batch-size", "128"]
    ratios, cpu_ratios, peers, kits = [], [], [], []
    for pair in range(1, args.pairs + 1):
        if peer is not None:
            peers.append(run_peer(peer, data, args.pair_epochs, f"seed kernel pair {pair}", out_dir, args.timeout))
        kits.append(run_kit("mnist-cnn", data, kit_flags, f"mnist-cnn pair {pair}", out_dir, args.timeout))
        if peer is not None:
            ratios.append(kits[-1].best_images_per_second / peers[-1].best_images_per_second)
            # The same work in both processes, so CPU seconds compare whole programs, start-up included.
            cpu_ratios.append(peers[-1].cpu_seconds / kits[-1].cpu_seconds)
            report.details.append(
                f"- pair {pair}: seed kernel {peers[-1].best_images_per_second:,.0f} images/s "
                f"({peers[-1].cpu_seconds:.0f} CPU s, epochs {epoch_list(peers[-1])} s), mnist-cnn "
                f"{kits[-1].best_images_per_second:,.0f} images/s ({kits[-1].cpu_seconds:.0f} CPU s, epochs "
                f"{epoch_list(kits[-1])} s): ratio {ratios[-1]:.3f}, CPU ratio {cpu_ratios[-1]:.3f}"
            )
    run = f"seed recipe, {args.pair_epochs} epochs, median of {args.pairs}"

    def median(values):
        return statistics.median(list(values))

    if peers:
        report.row("seed kernel", run, f"{median(p.wall_seconds for p in peers):.1f}",
                   f"{median(p.cpu_seconds for p in peers):.1f}", f"{median(p.fit_seconds for p in peers):.1f}",
                   f"{median(p.best_images_per_second for p in peers):,.0f}",
                   rss=megabytes(max(p.peak_rss_bytes for p in peers)))
    report.row("mnist-cnn --folds 1", run, f"{median(k.wall_seconds for k in kits):.1f}",
               f"{median(k.cpu_seconds for k in kits):.1f}", f"{median(k.fit_seconds for k in kits):.1f}",
               f"{median(k.best_images_per_second for k in kits):,.0f}",
               rss=megabytes(max(k.peak_rss_bytes for k in kits)), ratio=ratio_range(ratios) if ratios else "")
    report.target("2. mnist-cnn images/s >= 0.95x seed kernel (best epoch, wall time)",
                  ratio_range(ratios) if ratios else "no peer",
                  median(ratios) >= TARGET_THROUGHPUT_RATIO if ratios else None)
    report.target("2. the same by CPU time: seed kernel CPU s / mnist-cnn CPU s, whole programs",
                  ratio_range(cpu_ratios) if cpu_ratios else "no peer",
                  median(cpu_ratios) >= TARGET_THROUGHPUT_RATIO if cpu_ratios else None)


def stage_accuracy(report: Report, peer: Path | None, data: Path, args, out_dir: Path) -> Measured | None:
    print(f"time to accuracy: seed kernel {SEED_EPOCHS} epochs once, mnist-fast --folds 1 per seed", flush=True)
    reference = None
    if peer is not None:
        reference = run_peer(peer, data, SEED_EPOCHS, "seed kernel", out_dir, args.timeout)
        report.measured_row(reference, f"{SEED_EPOCHS} epochs, Adadelta 1.0", "1.000")
    fast_runs = []
    for seed in args.seeds:
        fast = run_kit("mnist-fast", data, ["--folds", "1", "--seed", str(seed)], f"mnist-fast seed {seed}", out_dir,
                       args.timeout)
        fast_runs.append(fast)
        ratio = f"{fast.fit_seconds / reference.fit_seconds:.3f}" if reference else ""
        report.measured_row(fast, "defaults, --folds 1", ratio)
    # Where the CPU computes bfloat16 natively the defaults train in it; this row shows float32 beside them.
    float32 = run_kit("mnist-fast", data, ["--folds", "1", "--seed", str(args.seeds[0]), "--precision", "float32"],
                      f"mnist-fast float32 seed {args.seeds[0]}", out_dir, args.timeout)
    report.measured_row(float32, "defaults but --precision float32", (
        f"{float32.fit_seconds / reference.fit_seconds:.3f}" if reference else ""))
    mean_fit = statistics.mean(run.fit_seconds for run in fast_runs)
    mean_accuracy = statistics.mean(run.test_accuracy for run in fast_runs)
    ratio = mean_fit / reference.fit_seconds if reference else None
    mean_wall = statistics.mean(run.wall_seconds for run in fast_runs)
    mean_cpu = statistics.mean(run.cpu_seconds for run in fast_runs)
    report.row("mnist-fast", f"mean of {len(fast_runs)} seeds", f"{mean_wall:.1f}", f"{mean_cpu:.1f}",
               f"{mean_fit:.1f}",
               accuracy=f"{mean_accuracy:.4f}",
               ratio="" if ratio is None else f"{ratio:.3f}")
    accuracy_met = mean_accuracy >= TARGET_ACCURACY
    report.target("1. mnist-fast mean test accuracy >= 0.9920", f"{mean_accuracy:.4f}", accuracy_met)
    report.target("1. mnist-fast fit time <= 0.10x seed kernel's",
                  "no peer" if ratio is None else f"{mean_fit:.1f} s / {reference.fit_seconds:.1f} s = {ratio:.3f}",
                  None if ratio is None else ratio <= TARGET_FIT_RATIO)
    return reference


def stage_memory(report: Report, reference: Measured | None, data: Path, args, out_dir: Path) -> None:
    print("memory: mnist-fast --folds 5 on all the data", flush=True)
    ensemble = run_kit("mnist-fast", data, ["--folds", "5"], "mnist-fast 5 folds", out_dir, args.timeout)
    ratio = f"{ensemble.wall_seconds / reference.wall_seconds:.3f} (wall)" if reference else ""
    report.measured_row(ensemble, "defaults, 5-fold ensemble", ratio)
    report.target("3. 5-fold run peak RSS < 2 GB", f"{megabytes(ensemble.peak_rss_bytes)} MB",
                  ensemble.peak_rss_bytes < TARGET_RSS_BYTES)
    if reference is not None and ensemble.test_accuracy is not None and reference.test_accuracy is not None:
        report.target("5-fold ensemble beats the seed kernel, in less wall time",
                      f"{ensemble.test_accuracy:.4f} vs {reference.test_accuracy:.4f}; "
                      f"{ensemble.wall_seconds:.0f} s vs {reference.wall_seconds:.0f} s",
                      ensemble.test_accuracy > reference.test_accuracy
                      and ensemble.wall_seconds < reference.wall_seconds)


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f"{int(memory) / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown memory"
    bfloat16 = "native bfloat16" if machine.cpu_computes_bfloat16() else "no native bfloat16"
    return f"{model}, {os.cpu_count()} cores, {bfloat16}, {memory}, {platform.system()} {platform.release()}"


def load_text() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def provenance_lines(started: dt.datetime, seconds: float, load_before: str) -> list[str]:
    """Returns the lines every results file opens with: date, command, machine, versions, commit.

    Args:
        started: when the benchmark started (UTC).
        seconds: how long it ran.
        load_before: `load_text()` when it started; the load now is added as "after".
    """
    commit, dirty = provenance.git_state()
    versions = ", ".join(f"{name} {version}" for name, version in provenance.library_versions().items())
    return [
        f"- date: {started.isoformat(timespec='seconds')}, {seconds / 60:.1f} minutes",
        f"- command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine_description()}; load average (1, 5, 15 min) {load_before} before, {load_text()} after",
        f"- versions: {versions}",
        f"- commit: {commit}{' (with uncommitted changes)' if dirty else ''}",
    ]


def results_markdown(report: Report, args, started: dt.datetime, seconds: float, load_before: str,
                     peer: Path | None) -> str:
    peer_line = f"`{peer}`" if peer else "absent: the kit's numbers alone, no ratios"
    data_line = f"`{args.data}`"
    if args.quick:
        data_line += f", its first {args.train_rows} train and {args.test_rows} test rows"
    return "\n".join([
        f"# Benchmark results{' (quick: a slice, indicative only)' if args.quick else ''}",
        "",
        *provenance_lines(started, seconds, load_before),
        f"- data: {data_line}",
        f"- peer: {peer_line}",
        "",
        "Fit seconds are the sum of epoch wall times (training + validation on the test split), timed the same",
        "way in both programs; wall seconds include start-up, data loading and writing. images/s is that",
        "of the fastest epoch (load from other work only slows epochs down); CPU seconds are the process's user +",
        "system time, all threads, which other work on a shared machine disturbs far less than wall time.",
        "Ratios: mnist-fast fit time / seed kernel fit time; throughput pairs: kit images/s / seed kernel",
        "images/s, median and range over the pairs.",
        "",
        report.table(),
        "",
        "## Details",
        "",
        *(report.details or ["(none)"]),
        "",
    ])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an mnist.npz with labelled test images")
    parser.add_argument("--peer", type=Path, help="the seed kernel script; absent or missing: the kit alone")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "bench", help="logs and run outputs")
    parser.add_argument("--results", type=Path, help="the markdown file to write (default: OUT/results.md)")
    parser.add_argument("--quick", action="store_true", help="a slice of the data (--train-rows, --test-rows)")
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved peer/kit throughput pairs")
    parser.add_argument("--pair-epochs", type=int, default=2, help="epochs per throughput run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="mnist-fast seeds")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--timeout", type=float, default=3600, help="seconds any one program may run")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started, clock, load_before = dt.datetime.now(dt.timezone.utc), time.perf_counter(), load_text()
    out_dir = args.out / started.strftime("%Y%m%dT%H%M%SZ")
    if not args.data.is_file():
        raise SystemExit(f"error: no data at {args.data}; run `make data` or pass --data an mnist.npz.")
    peer = args.peer if args.peer is not None and args.peer.is_file() else None
    if peer is None:
        print(f"note: no peer at {args.peer}; measuring the kit alone, without ratios.", flush=True)
    data = slice_data(args.data, args.train_rows, args.test_rows, out_dir) if args.quick else args.data
    print(f"bench: {data}, outputs in {out_dir}, load average {load_before}", flush=True)
    report = Report(quick=args.quick)
    reference = None
    if "responsiveness" in args.stages:
        stage_responsiveness(report)
    if "throughput" in args.stages:
        stage_throughput(report, peer, data, args, out_dir)
    if "accuracy" in args.stages:
        reference = stage_accuracy(report, peer, data, args, out_dir)
    if "memory" in args.stages:
        stage_memory(report, reference, data, args, out_dir)
    text = results_markdown(report, args, started, time.perf_counter() - clock, load_before, peer)
    results = args.results or out_dir / "results.md"
    files.write_text(results, text)
    print("\n" + report.table())
    print(f"\nwrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
