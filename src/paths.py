"""Every path the kit uses, locally and on Kaggle alike."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
INPUT_DIR = REPO_ROOT / "input"
SUBMISSIONS_DIR = REPO_ROOT / "submissions"
KERNELS_DIR = REPO_ROOT / "kernels"
BUILD_DIR = REPO_ROOT / "build"
LOGS_DIR = REPO_ROOT / "logs"

SAMPLE_NPZ = INPUT_DIR / "mnist.npz"
TFRECORD_DIR = INPUT_DIR / "tfrecord"
COMPETITION = "digit-recognizer"
COMPETITION_DIR = INPUT_DIR / COMPETITION

# Kaggle mounts inputs read-only under /kaggle/input and keeps /kaggle/working as the output.
# The two variables let tests (and users) play Kaggle with other folders.
KAGGLE_INPUT_ENV = "DIGIT_KIT_KAGGLE_INPUT"
KAGGLE_WORKING_ENV = "DIGIT_KIT_KAGGLE_WORKING"
# TensorBoard's folder can be moved too (tests keep event files out of the checkout).
LOGS_ENV = "DIGIT_KIT_LOGS"
KAGGLE_INPUT_DIR = Path("/kaggle/input")
KAGGLE_WORKING_DIR = Path("/kaggle/working")
# Kaggle takes a kernel's submission from this file in its working folder.
KAGGLE_SUBMISSION_NAME = "submission.csv"

# The Kaggle workflow on this machine: bundles to push, kernel outputs fetched back, and the log of
# submissions made from a folder (`<folder>/kaggle-submissions.jsonl`, one JSON object a line).
KERNEL_BUNDLES_DIR = BUILD_DIR / "kernels"
KERNEL_OUTPUTS_DIR = SUBMISSIONS_DIR / "kaggle"
KAGGLE_SUBMISSIONS_LOG_NAME = "kaggle-submissions.jsonl"

# Linux lists the CPU's instruction sets here; `--precision auto` looks for native bfloat16 in them.
CPUINFO = Path("/proc/cpuinfo")


def kaggle_input_dir() -> Path:
    """Returns the root Kaggle mounts a kernel's data under."""
    return Path(os.environ.get(KAGGLE_INPUT_ENV, KAGGLE_INPUT_DIR))


def kaggle_working_dir() -> Path:
    """Returns the folder whose files Kaggle keeps as a kernel's output."""
    return Path(os.environ.get(KAGGLE_WORKING_ENV, KAGGLE_WORKING_DIR))


def on_kaggle() -> bool:
    """Returns whether this process runs as a Kaggle kernel (or plays one in a test)."""
    if KAGGLE_INPUT_ENV in os.environ or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return True
    return KAGGLE_INPUT_DIR.is_dir()


def default_input_dir() -> Path:
    """Returns where data is looked for when no `--data` is given."""
    return kaggle_input_dir() if on_kaggle() else INPUT_DIR


def default_output_dir() -> Path:
    """Returns where a run writes its outputs when no `--out` is given."""
    return kaggle_working_dir() if on_kaggle() else SUBMISSIONS_DIR


def logs_dir() -> Path:
    """Returns the TensorBoard folder runs write into: `logs/`, or `/kaggle/working/logs` on Kaggle."""
    if LOGS_ENV in os.environ:
        return Path(os.environ[LOGS_ENV])
    return kaggle_working_dir() / "logs" if on_kaggle() else LOGS_DIR
