"""Tests of src/plots.py: the numbers behind the pictures, the PNGs, and their wiring into a kernel run."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_kernel
from src import data, flags, loaders, plots, sample
from src.results import CrossValidation, FoldResult

OOF_PICTURES = {plots.LEARNING_CURVES, plots.CONFUSION_OOF, plots.MISTAKES_OOF}


def softmax_rows(labels: np.ndarray, predictions: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Probabilities whose argmax is `predictions`, with `confidence` on it and the rest spread evenly."""
    rows = len(labels)
    probabilities = np.full((rows, 10), 0.0, dtype=np.float32)
    probabilities += ((1 - confidence) / 9)[:, None]
    probabilities[np.arange(rows), predictions] = confidence
    return probabilities


def make_result(labels: np.ndarray, test_rows: int, num_folds: int, seed: int = 0) -> CrossValidation:
    """A k-fold result whose OOF predictions are wrong on every third row, with known histories."""
    rng = np.random.default_rng(seed)
    predictions = labels.astype(np.int64).copy()
    predictions[::3] = (predictions[::3] + 1) % 10
    oof = softmax_rows(labels, predictions, rng.uniform(0.3, 0.99, size=len(labels)).astype(np.float32))
    test = softmax_rows(np.zeros(test_rows), rng.integers(0, 10, size=test_rows), np.full(test_rows, 0.6))
    folds = []
    for fold_index, validation in enumerate(np.array_split(np.arange(len(labels)), num_folds)):
        history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
                   "val_loss": [1.1, 0.7, 0.5], "val_accuracy": [0.45, 0.65, 0.75]}
        folds.append(FoldResult(fold_index, 0.1, validation, oof[validation], 0.7, test, None, history))
    return CrossValidation(folds=folds, oof_probabilities=oof, test_probabilities=test, oof_accuracy=None,
                           test_accuracy=None)


def make_dataset(train_rows: int = 120, test_rows: int = 30, test_labels: bool = True) -> data.Dataset:
    rng = np.random.default_rng(1)
    return data.Dataset(
        x_train=rng.integers(0, 256, size=(train_rows, 28, 28), dtype=np.uint8),
        y_train=np.arange(train_rows, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, size=(test_rows, 28, 28), dtype=np.uint8),
        y_test=(np.arange(test_rows, dtype=np.uint8) * 7 % 10) if test_labels else None,
        source=Path("made-up.npz"),
        kind="npz",
    )


def assert_valid_png(path: Path, size: tuple[int, int] | None = None) -> None:
    """Checks the file is a PNG that decodes, with the pixel size `plots.PICTURE_PIXELS` (or `size`) promises."""
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.format == "PNG"
        assert image.size == (size or plots.PICTURE_PIXELS[path.name])
        # Something was drawn: a blank canvas has one colour.
        assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 10


# --- the numbers --------------------------------------------------------------------------------------


def test_confusion_matrix_counts_each_pair_and_sums_to_the_rows():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=500)
    predictions = rng.integers(0, 10, size=500)
    matrix = plots.confusion_matrix(labels, predictions)
    assert matrix.shape == (10, 10)
    assert matrix.sum() == 500
    expected = np.zeros((10, 10), dtype=np.int64)
    for label, prediction in zip(labels, predictions):
        expected[label, prediction] += 1
    np.testing.assert_array_equal(matrix, expected)
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))


def test_row_normalised_rows_sum_to_one_and_empty_rows_stay_zero():
    matrix = plots.confusion_matrix(np.array([0, 0, 0, 1]), np.array([0, 0, 2, 1]))
    rates = plots.row_normalised(matrix)
    assert rates[0, 0] == pytest.approx(2 / 3)
    assert rates[0, 2] == pytest.approx(1 / 3)
    np.testing.assert_allclose(rates[:2].sum(axis=1), 1.0)
    assert not rates[2:].any()


def test_most_confident_mistakes_returns_wrong_rows_surest_first():
    labels = np.array([0, 1, 2, 3, 4])
    predictions = np.array([0, 7, 2, 5, 9])
    confidence = np.array([0.99, 0.6, 0.9, 0.95, 0.7])
    probabilities = softmax_rows(labels, predictions, confidence)
    assert plots.most_confident_mistakes(probabilities, labels).tolist() == [3, 4, 1]
    assert plots.most_confident_mistakes(probabilities, labels, count=2).tolist() == [3, 4]


# --- the pictures -------------------------------------------------------------------------------------


def test_draw_run_pictures_writes_every_picture_as_a_png_of_its_size(tmp_path):
    dataset = make_dataset()
    result = make_result(dataset.y_train, len(dataset.x_test), num_folds=3)
    written = plots.draw_run_pictures(tmp_path, dataset, result)
    assert [path.name for path in written] == list(plots.PICTURE_PIXELS)
    for path in written:
        assert_valid_png(path)
    assert plots.picture_paths(tmp_path) == written


def test_draw_run_pictures_with_one_fold_draws_what_exists(tmp_path):
    dataset = make_dataset()
    result = make_result(dataset.y_train, len(dataset.x_test), num_folds=1)
    result.oof_probabilities = None
    written = plots.draw_run_pictures(tmp_path, dataset, result)
    assert [path.name for path in written] == [plots.LEARNING_CURVES, plots.CONFUSION_TEST]
    for path in written:
        assert_valid_png(path)


def test_draw_run_pictures_skips_the_test_matrix_without_test_labels(tmp_path):
    dataset = make_dataset(test_labels=False)
    written = plots.draw_run_pictures(tmp_path, dataset, make_result(dataset.y_train, len(dataset.x_test), 2))
    assert {path.name for path in written} == OOF_PICTURES
    assert not (tmp_path / plots.CONFUSION_TEST).exists()


def test_draw_run_pictures_without_training_curves_or_mistakes(tmp_path):
    # A blend has no per-epoch history; a perfect model has no mistakes to show.
    dataset = make_dataset()
    perfect = softmax_rows(dataset.y_train, dataset.y_train, np.full(len(dataset.y_train), 0.9))
    result = CrossValidation(folds=[], oof_probabilities=perfect,
                             test_probabilities=make_result(dataset.y_train, 30, 2).test_probabilities,
                             oof_accuracy=1.0, test_accuracy=None)
    written = plots.draw_run_pictures(tmp_path, dataset, result)
    assert [path.name for path in written] == [plots.CONFUSION_OOF, plots.MISTAKES_OOF, plots.CONFUSION_TEST]
    for path in written:
        assert_valid_png(path)


def test_mistakes_figure_shows_at_most_36(tmp_path):
    dataset = make_dataset(train_rows=200)
    result = make_result(dataset.y_train, 30, 2)
    indices = plots.most_confident_mistakes(result.oof_probabilities, dataset.y_train)
    assert len(indices) == plots.MISTAKES_SHOWN  # 67 rows are wrong; 36 are shown
    figure = plots.mistakes_figure(dataset.x_train, dataset.y_train, result.oof_probabilities, indices, "t")
    captions = [text.get_text() for text in figure.axes[0].texts]
    assert len(captions) == plots.MISTAKES_SHOWN
    first = indices[0]
    assert captions[0].startswith(f"{dataset.y_train[first]} → {result.oof_probabilities[first].argmax()} ")
    assert_valid_png(plots.save_figure(figure, tmp_path / plots.MISTAKES_OOF))


def test_plots_module_leaves_the_pyplot_backend_alone():
    # Importing the kit inside a notebook must not switch the notebook's plots to Agg.
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import src.plots as p, numpy as n; "
            "p.confusion_figure(n.eye(10, dtype=int), 't'); print(matplotlib.get_backend())")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "svg"


# --- the wiring ---------------------------------------------------------------------------------------


def test_parse_flags_no_plots_sets_plots_false():
    assert flags.parse_flags("mnist-cnn", argv=[]).plots is True
    assert flags.parse_flags("mnist-cnn", argv=["--no-plots"]).plots is False


def test_kernel_run_draws_pictures_unless_no_plots(fake_run, npz_path, tmp_path):
    drawn = fake_run(["--data", str(npz_path), "--out", str(tmp_path / "with")])
    folder = tmp_path / "with" / drawn["run"]
    assert sorted(Path(path).name for path in drawn["outputs"]["pictures"]) == sorted(plots.PICTURE_PIXELS)
    for name in plots.PICTURE_PIXELS:
        assert_valid_png(folder / name)

    skipped = fake_run(["--data", str(npz_path), "--out", str(tmp_path / "without"), "--no-plots"])
    assert skipped["outputs"]["pictures"] == []
    assert (tmp_path / "without" / skipped["run"]).is_dir()
    assert list((tmp_path / "without").rglob("*.png")) == []


def test_kernel_run_with_one_fold_on_competition_data_draws_learning_curves(fake_run, competition_dir, tmp_path):
    record = fake_run(["--data", str(competition_dir), "--out", str(tmp_path), "--folds", "1"])
    assert [Path(path).name for path in record["outputs"]["pictures"]] == [plots.LEARNING_CURVES]


@pytest.mark.slow
def test_real_kernel_run_draws_its_pictures(sample_npz, tmp_path):
    # The one real training run: Keras' history keys must be the ones the learning curves read.
    (x_train, y_train), (x_test, y_test) = loaders.load_npz(sample_npz)
    small = sample.write_npz(tmp_path / "small.npz", x_train[:200], y_train[:200], x_test[:50], y_test[:50])
    record = run_kernel("mnist-cnn", ["--data", str(small), "--out", str(tmp_path / "out"), "--model", "mlp",
                                      "--epochs", "1", "--folds", "2", "--quiet"])
    assert set(record["folds"][0]["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    pictures = [Path(path) for path in record["outputs"]["pictures"]]
    assert [path.name for path in pictures] == list(plots.PICTURE_PIXELS)
    for path in pictures:
        assert_valid_png(path)


def fake_ipython(monkeypatch, shown: list, in_a_notebook: bool = True) -> None:
    """Plays the IPython of a running notebook (`get_ipython()` has a kernel), recording what it displays."""
    import types

    shell = types.SimpleNamespace(kernel=object()) if in_a_notebook else types.SimpleNamespace()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    ipython.version_info = (9, 0, 0)  # matplotlib asks when IPython is loaded
    display = types.ModuleType("IPython.display")
    display.Image = lambda filename: ("image", filename)
    display.display = shown.append
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)


def test_a_run_in_a_notebook_shows_its_pictures_inline(fake_run, npz_path, tmp_path, monkeypatch):
    shown = []
    fake_ipython(monkeypatch, shown)
    record = fake_run(["--data", str(npz_path), "--out", str(tmp_path)])
    assert shown == [("image", path) for path in record["outputs"]["pictures"]] and len(shown) == 4


def test_show_inline_does_nothing_outside_a_notebook(monkeypatch, tmp_path):
    assert plots.show_inline([tmp_path / "a.png"]) is False
    shown = []
    fake_ipython(monkeypatch, shown, in_a_notebook=False)  # a terminal IPython has no kernel
    assert plots.show_inline([tmp_path / "a.png"]) is False and shown == []


def test_cv_vs_public_picture_has_its_size_with_or_without_points(tmp_path):
    points = [("mnist-cnn-1", 0.9912, 0.99128), ("mnist-fast-2", 0.9925, 0.98857), ("blend-3", 0.9941, 0.9942)]
    assert_valid_png(plots.draw_cv_vs_public(points, tmp_path / plots.CV_VS_PUBLIC), plots.CV_VS_PUBLIC_PIXELS)
    figure = plots.cv_vs_public_figure(points[:1], highlight="mnist-cnn-1")
    axis = figure.axes[0]
    low, high = axis.get_xlim()
    assert low < 0.9912 < high and axis.get_ylim() == (low, high)
    assert plots.png_bytes(plots.cv_vs_public_figure([])).startswith(b"\x89PNG")
