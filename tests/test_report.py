"""Tests of src/report.py: a run's HTML page is valid, self-contained, and embeds every picture."""

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from src import cli, plots, records, report
from src.errors import KitError


class PageParser(HTMLParser):
    """Collects a page's tags, images, external references and text, and checks that tags nest."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.open_tags: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict] = []
        self.references: list[str] = []
        self.text: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.seen.add(tag)
        if tag == "img":
            self.images.append(attributes)
        for name in ("src", "href"):
            if name in attributes and not attributes[name].startswith("data:"):
                self.references.append(attributes[name])
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        if not self.open_tags or self.open_tags[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open_tags[-1:] or 'nothing'}")
        else:
            self.open_tags.pop()

    def handle_data(self, text):
        self.text.append(text)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.open_tags == []
    assert page.startswith("<!DOCTYPE html>")
    return parser


def decode_png(source: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    content = base64.b64decode(source[len(prefix):], validate=True)
    assert content.startswith(report.PNG_SIGNATURE)
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def test_report_embeds_every_picture_as_a_png_that_decodes(fake_run, npz_path, tmp_path):
    run = fake_run(["--data", str(npz_path), "--out", str(tmp_path)])
    page_path = report.write_report(tmp_path / f"{run['run']}.json")
    assert page_path == tmp_path / f"{run['run']}.html"
    parser = parse(page_path.read_text(encoding="utf-8"))

    assert parser.references == []  # nothing outside the file: it opens offline
    assert len(parser.images) == len(plots.PICTURE_PIXELS) == len(list((tmp_path / run["run"]).glob("*.png")))
    for attributes, name in zip(parser.images, plots.PICTURE_PIXELS):
        image = decode_png(attributes["src"])
        assert image.format == "PNG" and image.size == plots.PICTURE_PIXELS[name]
        assert attributes["alt"] == plots.PICTURE_CAPTIONS[name]
    text = " ".join(parser.text)
    assert f"{run['cv_mean']:.4f} ± {run['cv_std']:.4f}" in text
    assert f"{run['test_accuracy']:.4f}" in text
    assert {"h1", "table", "figure", "style"} <= parser.seen and "script" not in parser.seen


def test_report_of_a_run_without_pictures_says_so(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path), "--folds", "1"])
    parser = parse(report.write_report(tmp_path / f"{run['run']}.json").read_text(encoding="utf-8"))
    assert parser.images == []
    text = " ".join(parser.text)
    assert "--no-plots" in text and "- (no k-fold)" in text


def test_report_html_escapes_what_the_record_says():
    record = {"run": "r<script>", "kernel": "k", "config": {"model": "<b>bold</b>", "folds": 2}, "cv_mean": 0.5,
              "cv_std": 0.1, "folds": [{"fold": 0, "validation_accuracy": 0.5, "history": {"loss": [1.0]}}]}
    page = report.report_html(record, kaggle={"submitted_at": "today", "public_score": 0.9})
    parser = parse(page)
    assert "<b>bold</b>" not in page and "<script>" not in page and "script" not in parser.seen
    text = " ".join(parser.text)
    assert "r<script>" in text and "<b>bold</b>" in text and "public score 0.9" in text


def test_report_skips_files_that_are_not_pngs(fake_run, npz_path, tmp_path):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    (tmp_path / run["run"] / "fake.png").write_bytes(b"GIF89a not a png")
    parser = parse(report.write_report(tmp_path / f"{run['run']}.json").read_text(encoding="utf-8"))
    assert parser.images == []


def test_report_command_writes_the_page_and_rejects_foreign_json(fake_run, npz_path, tmp_path, capsys):
    run = fake_run(["--no-plots", "--data", str(npz_path), "--out", str(tmp_path)])
    (tmp_path / "kaggle-submissions.jsonl").write_text(
        f'{{"file": "{run["submission"]}", "message": "m", "submitted_at": "t", "public_score": 0.97}}\n')
    target = tmp_path / "pages" / "page.html"
    capsys.readouterr()
    assert cli.main(["report", run["run"], "--dir", str(tmp_path), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {target}"
    assert "public score 0.97" in " ".join(parse(target.read_text(encoding="utf-8")).text)
    (tmp_path / "other.json").write_text('{"id": "someone/kernel"}')
    with pytest.raises(KitError, match="not a run record"):
        report.write_report(tmp_path / "other.json")
    assert records.find_record("other", tmp_path) == tmp_path / "other.json"


def test_report_says_what_the_leak_check_found():
    base = {"run": "r", "kernel": "mnist-cnn", "config": {"folds": 5}, "cv_mean": 0.9999, "cv_std": 0.0}
    leaking = report.report_html({**base, "leaks": {"test_in_train": 27990, "test_rows": 28000,
                                                    "duplicates_across_folds": 3}})
    assert ("27,990 of the 28,000 test images in the training data: the scores are leaks, not skill; 3 training "
            "images with a copy in another fold") in leaking
    assert "not checked" in report.report_html(base)


@pytest.mark.parametrize("change, problem", [
    (lambda record: record.update(run="../../elsewhere"), "run is '../../elsewhere'"),
    (lambda record: record.update(blend=["a"]), "blend is"),
    (lambda record: record.update(cv_mean="0.99"), "cv_mean is '0.99'"),
    (lambda record: record.update(folds=[{"fold": "0"}]), r"folds\[0\].fold is '0'"),
])
def test_report_of_a_damaged_record_is_one_line(tmp_path, change, problem):
    record = {"run": "r", "kernel": "k", "config": {"model": "m", "folds": 2}}
    change(record)
    (tmp_path / "r.json").write_text(json.dumps(record))
    with pytest.raises(KitError, match=f"r.json is a damaged run record: {problem}") as raised:
        report.write_report(tmp_path / "r.json")
    assert "\n" not in str(raised.value) and not (tmp_path / "r.html").exists()
