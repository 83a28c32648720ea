"""The pictures of a run (learning curves, confusion matrices, the most confident mistakes), and of the submitted
runs: their CV accuracy against their public score.

Figures are drawn with matplotlib's object-oriented API on an explicit Agg canvas, never through pyplot:
no display is needed, and pyplot's global backend is left alone, so importing this module in a notebook
does not switch off the notebook's own plots. Every picture has a fixed pixel size (`PICTURE_PIXELS`).
"""

import io
import logging
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from src import files
from src.mnist import NUM_CLASSES

logger = logging.getLogger(__name__)


DPI = 100
LEARNING_CURVES = "learning-curves.png"
CONFUSION_OOF = "confusion-oof.png"
MISTAKES_OOF = "mistakes-oof.png"
CONFUSION_TEST = "confusion-test.png"
# The order a report shows them in, and each picture's (width, height) in pixels.
PICTURE_PIXELS = {
    LEARNING_CURVES: (1100, 420),
    CONFUSION_OOF: (1100, 520),
    MISTAKES_OOF: (720, 1000),
    CONFUSION_TEST: (1100, 520),
}
PICTURE_CAPTIONS = {
    LEARNING_CURVES: "Learning curves: loss and accuracy per epoch, one colour per fold",
    CONFUSION_OOF: "Out-of-fold confusion matrix: counts and row-normalised",
    MISTAKES_OOF: "The most confident out-of-fold mistakes",
    CONFUSION_TEST: "Test-split confusion matrix: counts and row-normalised",
}
# Drawn by `make scores` for every submitted run (`submissions/cv-vs-public.png`), and in a submitted run's report.
CV_VS_PUBLIC = "cv-vs-public.png"
CV_VS_PUBLIC_PIXELS = (760, 700)
PICTURE_CAPTIONS[CV_VS_PUBLIC] = ("CV accuracy against the public score, one point per submitted run: on the "
                                  "diagonal, Kaggle agrees with the CV")
MISTAKES_SHOWN = 36
MISTAKES_PER_ROW = 6
# Mosaic geometry in image pixels: a 28x28 digit, a margin around it and room for its caption below.
_TILE = 28
_MARGIN = 3
_CAPTION = 13


def _figure(name: str):
    """Returns an empty figure of the picture's pixel size, attached to an Agg canvas."""

    width, height = PICTURE_PIXELS[name]
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    """Returns a figure as PNG bytes of exactly its pixel size."""
    buffer = io.BytesIO()
    # No bbox_inches="tight": it would change the pixel size from one run to the next.
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_figure(figure, path: Path) -> Path:
    """Writes a figure as a PNG of exactly its pixel size, atomically.

    A later drawing of the same run replaces it: pictures are derived from the run's saved outputs.

    Returns:
        `path`.
    """
    return files.write_bytes(Path(path), png_bytes(figure))


# --- the numbers behind the pictures ----------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Counts (true digit, predicted digit) pairs.

    Args:
        labels: `(N,)` true digits 0-9.
        predictions: `(N,)` predicted digits 0-9.

    Returns:
        `(10, 10)` int64 counts; row = true digit, column = predicted digit; the sum is N.
    """
    pairs = np.asarray(labels, dtype=np.int64) * NUM_CLASSES + np.asarray(predictions, dtype=np.int64)
    return np.bincount(pairs, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Returns each row divided by its sum (the recall of each true digit on the diagonal); empty rows stay 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int = MISTAKES_SHOWN) -> np.ndarray:
    """Finds the wrong predictions the model was surest of.

    Args:
        probabilities: `(N, 10)` softmax outputs.
        labels: `(N,)` true digits.
        count: how many to return at most.

    Returns:
        `(K,)` row indices, K <= count, most confident first (ties in row order).
    """
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    order = np.argsort(-confidence, kind="stable")[:count]
    return wrong[order]


# --- figures ------------------------------------------------------------------------------------------


def learning_curves_figure(histories: list[dict[str, list[float]]]):
    """Draws training (solid) and validation (dashed) loss and accuracy per epoch, one colour per fold.

    Args:
        histories: one Keras `History.history` per fold (`loss`, `accuracy`, `val_loss`, `val_accuracy`);
            validation keys may be missing (nothing labelled was held out).

    Returns:
        A matplotlib `Figure`.
    """

    figure = _figure(LEARNING_CURVES)
    axes = figure.subplots(1, 2)
    colours = [f"C{index % 10}" for index in range(len(histories))]
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for colour, history in zip(colours, histories):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.get(key) or []
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    axis.plot(epochs, values, linestyle=style, color=colour, marker="o", markersize=3)
        axis.set_title(metric)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        # Whole epochs only: a 1-epoch run would otherwise get ticks at 0.96, 0.98, ...
        axis.xaxis.get_major_locator().set_params(integer=True)
    handles = [Line2D([], [], color=colour, label=f"fold {index + 1}") for index, colour in enumerate(colours)]
    handles += [Line2D([], [], color="black", linestyle="-", label="training"),
                Line2D([], [], color="black", linestyle="--", label="validation")]
    axes[1].legend(handles=handles, fontsize=8, loc="best")
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.9, wspace=0.18)
    return figure


def _draw_matrix(axis, values: np.ndarray, text: list[str], title: str) -> None:
    shown = values / values.max() if values.max() > 0 else values
    axis.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(NUM_CLASSES):
        for column in range(NUM_CLASSES):
            axis.text(column, row, text[row * NUM_CLASSES + column], ha="center", va="center", fontsize=7,
                      color="white" if shown[row, column] > 0.5 else "black")
    axis.set_xticks(range(NUM_CLASSES))
    axis.set_yticks(range(NUM_CLASSES))
    axis.set_xlabel("predicted digit")
    axis.set_ylabel("true digit")
    axis.set_title(title, fontsize=10)


def _percent(rate: float) -> str:
    if rate == 0:
        return ""
    percent = 100 * rate
    return f"{percent:.1f}" if percent >= 1 else f"{percent:.2f}"


def confusion_figure(matrix: np.ndarray, title: str, name: str = CONFUSION_OOF):
    """Draws a confusion matrix twice: raw counts, and each row divided by its total.

    Args:
        matrix: `(10, 10)` counts from `confusion_matrix`.
        title: the figure's title, e.g. which predictions these are.
        name: the picture it becomes (decides the pixel size).

    Returns:
        A matplotlib `Figure`.
    """
    figure = _figure(name)
    counts_axis, rates_axis = figure.subplots(1, 2)
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / total if total else 0.0
    _draw_matrix(counts_axis, matrix.astype(np.float64), [str(count) for count in matrix.ravel()],
                 f"counts ({total:,} images, accuracy {accuracy:.4f})")
    rates = row_normalised(matrix)
    # An empty cell is exactly zero; a rare confusion gets two decimals so that it never reads as 0.0.
    _draw_matrix(rates_axis, rates, [_percent(rate) for rate in rates.ravel()],
                 "% of each true digit (diagonal = recall)")
    figure.suptitle(title)
    figure.subplots_adjust(left=0.05, right=0.98, bottom=0.1, top=0.86, wspace=0.15)
    return figure


def mistakes_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, indices: np.ndarray,
                    title: str):
    """Draws a grid of misclassified digits, each captioned `true -> predicted (probability)`.

    The digits are packed into one mosaic image and one axes: 36 separate axes would take several times
    longer to draw.

    Args:
        images: `(N, 28, 28)` uint8 images.
        labels: `(N,)` true digits.
        probabilities: `(N, 10)` softmax outputs.
        indices: `(K,)` rows to show, K <= 36, in reading order.
        title: the figure's title.

    Returns:
        A matplotlib `Figure`.
    """
    figure = _figure(MISTAKES_OOF)
    axis = figure.add_axes((0.01, 0.01, 0.98, 0.92))
    axis.set_axis_off()
    cell_width, cell_height = _TILE + 2 * _MARGIN, _TILE + 2 * _MARGIN + _CAPTION
    rows = max(1, -(-MISTAKES_SHOWN // MISTAKES_PER_ROW))
    mosaic = np.zeros((rows * cell_height, MISTAKES_PER_ROW * cell_width), dtype=np.uint8)
    predictions = probabilities.argmax(axis=1)
    for position, index in enumerate(indices[:MISTAKES_SHOWN]):
        row, column = divmod(position, MISTAKES_PER_ROW)
        top, left = row * cell_height + _MARGIN, column * cell_width + _MARGIN
        mosaic[top:top + _TILE, left:left + _TILE] = images[index]
        axis.text(left + _TILE / 2, top + _TILE + 1, f"{labels[index]} → {predictions[index]} "
                  f"({probabilities[index, predictions[index]]:.2f})", ha="center", va="top", fontsize=9)
    axis.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    if len(indices) == 0:
        axis.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no mistakes", ha="center", va="center", fontsize=16)
    figure.suptitle(title)
    return figure


# --- a run's pictures -------------------------------------------------------------------------------


def draw_run_pictures(folder: Path, dataset, result) -> list[Path]:
    """Draws every picture a run's outputs allow into its folder.

    Args:
        folder: the run's work folder.
        dataset: the run's `data.Dataset` (`x_train`, `y_train`, `y_test`).
        result: its `results.CrossValidation` (`folds[i].history`, `oof_probabilities` or None,
            `test_probabilities`).

    Returns:
        The PNGs written, in `PICTURE_PIXELS` order. Without out-of-fold predictions (`--folds 1`) there is
        no OOF confusion matrix or mistakes grid; without test labels there is no test confusion matrix.
    """
    folder = Path(folder)
    written = []
    histories = [fold.history for fold in result.folds if fold.history]
    if histories:
        written.append(save_figure(learning_curves_figure(histories), folder / LEARNING_CURVES))
    oof = result.oof_probabilities
    if oof is not None:
        labels = dataset.y_train
        matrix = confusion_matrix(labels, oof.argmax(axis=1))
        written.append(save_figure(
            confusion_figure(matrix, "Out-of-fold predictions"), folder / CONFUSION_OOF
        ))
        mistakes = most_confident_mistakes(oof, labels)
        written.append(save_figure(
            mistakes_figure(dataset.x_train, labels, oof, mistakes,
                            f"The {len(mistakes)} most confident out-of-fold mistakes: true → predicted (probability)"),
            folder / MISTAKES_OOF,
        ))
    else:
        logger.info("pictures: no out-of-fold predictions (a one-fold run, or a blend of runs with different folds), "
                    "so no OOF confusion matrix or mistakes grid")
    if dataset.y_test is not None:
        matrix = confusion_matrix(dataset.y_test, result.test_probabilities.argmax(axis=1))
        written.append(save_figure(
            confusion_figure(matrix, "Test split, ensemble of the folds", CONFUSION_TEST), folder / CONFUSION_TEST
        ))
    if written:
        logger.info("pictures: %s", ", ".join(str(path) for path in written))
    return written


def picture_paths(folder: Path) -> list[Path]:
    """Returns a run folder's PNGs: the known pictures in `PICTURE_PIXELS` order, then any others by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    known = [folder / name for name in PICTURE_PIXELS if (folder / name).is_file()]
    others = sorted(path for path in folder.glob("*.png") if path.name not in PICTURE_PIXELS)
    return known + others


def show_inline(paths: list) -> bool:
    """Shows PNGs in the notebook that is running this code (a kernel pushed as a notebook), beside their files.

    Outside a notebook (a script, a test, the command line) it does nothing.

    Returns:
        Whether they were shown.
    """
    ipython = sys.modules.get("IPython")  # only a notebook has imported it; importing it here would cost a second
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None or not hasattr(shell, "kernel"):
        return False
    from IPython import display  # here, not at the top: only a notebook has it

    for path in paths:
        display.display(display.Image(filename=str(path)))
    return True


# --- the submitted runs ---------------------------------------------------------------------------


def cv_vs_public_figure(points: list[tuple[str, float, float]], highlight: str | None = None):
    """CV accuracy (x) against the public score (y), one point per submitted run, with the diagonal drawn.

    A point below the diagonal scored lower on Kaggle than in CV: the trust-your-CV check.

    Args:
        points: `(run, cv accuracy, public score)` triples.
        highlight: the run to mark (a report's own run), or None.
    """
    width, height = CV_VS_PUBLIC_PIXELS
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    values = [value for _, cv, public in points for value in (cv, public)]
    low, high = (min(values), max(values)) if values else (0.98, 1.0)
    margin = max((high - low) * 0.15, 0.001)
    low, high = low - margin, min(high + margin, 1.0 + margin)
    axis.plot([low, high], [low, high], color="0.6", linestyle="--", linewidth=1, label="public = CV")
    for run, cv, public in points:
        marked = run == highlight
        axis.scatter([cv], [public], s=60 if marked else 30, color="tab:red" if marked else "tab:blue", zorder=3)
        axis.annotate(run, (cv, public), textcoords="offset points", xytext=(5, 4), fontsize=7,
                      color="tab:red" if marked else "0.25")
    axis.set_xlim(low, high)
    axis.set_ylim(low, high)
    axis.set_aspect("equal")
    axis.set_xlabel("CV accuracy (mean over folds)")
    axis.set_ylabel("public leaderboard score")
    axis.set_title(f"CV against the public score: {len(points)} submitted run{'' if len(points) == 1 else 's'}")
    axis.grid(True, color="0.9")
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def draw_cv_vs_public(points: list[tuple[str, float, float]], path: Path) -> Path:
    """Draws `cv_vs_public_figure(points)` into `path` (replacing an earlier drawing); returns `path`."""
    return save_figure(cv_vs_public_figure(points), path)
