"""Tests of src.pseudo_labels: which unlabelled images a fold labels, and the file that keeps them for a resume."""

import numpy as np
import pytest

from src import pseudo_labels
from src.errors import KitError


def test_start_epoch_is_half_of_the_epochs_rounded_up():
    assert [pseudo_labels.start_epoch(epochs) for epochs in (2, 3, 7, 30)] == [1, 2, 4, 15]


def test_select_confident_keeps_the_rows_at_or_above_the_threshold_with_their_top_digit():
    probabilities = np.full((4, 10), 0.0, np.float32)
    probabilities[0, 3], probabilities[0, 4] = 0.99, 0.01
    probabilities[1, 7], probabilities[1, 1] = 0.5, 0.5
    probabilities[2, 9], probabilities[2, 0] = 0.98, 0.02
    probabilities[3, 2] = 1.0

    indices, labels = pseudo_labels.select_confident(probabilities, 0.99)

    assert indices.tolist() == [0, 3] and labels.tolist() == [3, 2]
    assert indices.dtype == np.int64 and labels.dtype == np.uint8
    assert pseudo_labels.select_confident(probabilities, 0.0)[0].tolist() == [0, 1, 2, 3]


def test_load_reads_back_what_save_wrote(tmp_path):
    path = tmp_path / pseudo_labels.FILE_NAME
    pseudo_labels.save(path, np.array([1, 4, 5], np.int64), np.array([7, 0, 9], np.uint8), 0.99)

    indices, labels = pseudo_labels.load(path, num_images=6, threshold=0.99)

    assert indices.tolist() == [1, 4, 5] and labels.tolist() == [7, 0, 9]
    assert [item.name for item in tmp_path.iterdir()] == [pseudo_labels.FILE_NAME]  # no temporary left


@pytest.mark.parametrize("indices, labels, threshold, problem", [
    ([1, 4, 5], [7, 0, 9], 0.9, "it was made at --pseudo-label 0.99, not 0.9"),
    ([1, 4, 6], [7, 0, 9], 0.99, "its indices are not increasing row numbers of the 6 unlabelled images"),
    ([4, 1, 5], [7, 0, 9], 0.99, "its indices are not increasing row numbers"),
    ([1, 4, 5], [7, 0, 10], 0.99, "it has labels outside 0-9 (10)"),
    ([1, 4, 5], [7, 0], 0.99, "its indices (3,) (int64) and labels (2,) (uint8) differ"),
])
def test_load_refuses_labels_made_for_other_images_or_another_threshold(tmp_path, indices, labels, threshold,
                                                                        problem):
    path = tmp_path / pseudo_labels.FILE_NAME
    pseudo_labels.save(path, np.array(indices, np.int64), np.array(labels, np.uint8), 0.99)

    with pytest.raises(KitError) as caught:
        pseudo_labels.load(path, num_images=6, threshold=threshold)

    message = str(caught.value)
    assert message.startswith(f"{path} is not this fold's pseudo-labels: ") and problem in message
    assert "--restart" in message and "\n" not in message


def test_load_of_a_damaged_file_is_one_clear_line(tmp_path):
    path = tmp_path / pseudo_labels.FILE_NAME
    path.write_bytes(b"not a zip")
    with pytest.raises(KitError, match="pseudo-labels"):
        pseudo_labels.load(path, num_images=6, threshold=0.99)


def test_labelled_images_without_labels_or_a_folder_is_the_kits_error():
    labeller = pseudo_labels.PseudoLabeller(np.zeros((3, 28, 28), np.uint8), 0.9, 1, "channels_last", path=None)
    with pytest.raises(KitError, match="No pseudo-labels were made"):
        labeller.labelled_images()
