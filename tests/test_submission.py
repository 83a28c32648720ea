"""Tests of src.submission: writing and validating ImageId,Label files."""

import numpy as np
import pytest

from src import submission
from src.errors import KitError


def test_submission_text_counts_image_ids_from_one():
    assert submission.submission_text(np.array([7, 2, 1])) == "ImageId,Label\n1,7\n2,2\n3,1\n"


def test_write_submission_validates_and_never_overwrites(tmp_path):
    path = submission.write_submission(np.array([3, 4]), tmp_path / "s.csv", expected_rows=2)
    assert submission.validate_submission(path) == 2
    with pytest.raises(KitError, match="never overwrites"):
        submission.write_submission(np.array([5, 6]), path)
    assert path.read_text() == "ImageId,Label\n1,3\n2,4\n"
    assert [p.name for p in tmp_path.iterdir()] == ["s.csv"]


def test_write_submission_refuses_wrong_row_count(tmp_path):
    with pytest.raises(KitError, match="has 2 rows but the test split has 3"):
        submission.write_submission(np.array([3, 4]), tmp_path / "s.csv", expected_rows=3)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "text, message",
    [
        ("Id,Label\n1,3\n", "header"),
        ("", "header"),
        ("ImageId,Label\n", "no rows"),
        ("ImageId,Label\n1,3\n3,4\n", "without gaps"),
        ("ImageId,Label\n0,3\n", "without gaps"),
        ("ImageId,Label\n1,10\n", "outside 0-9"),
        ("ImageId,Label\n1,-1\n", "outside 0-9"),
        ("ImageId,Label\n1,3.5\n", "two integers"),
        ("ImageId,Label\n1,3,4\n", "2 fields"),
    ],
)
def test_validate_submission_rejects_broken_files(tmp_path, text, message):
    path = tmp_path / "broken.csv"
    path.write_text(text)
    with pytest.raises(KitError, match=message):
        submission.validate_submission(path)


def test_validate_submission_checks_rows_against_sample(tmp_path):
    path = submission.write_submission(np.array([1, 2, 3]), tmp_path / "s.csv")
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("ImageId,Label\n1,0\n2,0\n3,0\n4,0\n")
    with pytest.raises(KitError, match="3 rows but the test split has 4"):
        submission.validate_submission(path, sample=sample)
    sample.write_text("ImageId,Label\n1,0\n2,0\n3,0\n")
    assert submission.validate_submission(path, sample=sample) == 3


def test_validate_submission_names_missing_file(tmp_path):
    with pytest.raises(KitError, match="Submission not found"):
        submission.validate_submission(tmp_path / "absent.csv")
