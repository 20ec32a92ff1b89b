"""The nbval tolerance plugin (ldm_course/course/nbval_tolerance.py): live numbers within their
tolerance pass, everything else of the output is still compared verbatim by nbval."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ldm_course.course.nbval_tolerance import NumberSpec, compare_text, parse_specs
from ldm_course.course.replay import RECORD_ENV

ROOT = Path(__file__).resolve().parents[1]


def test_numbers_within_tolerance_are_masked():
    specs = [NumberSpec("PSNR {} dB", 0.05), NumberSpec("loss {}", 0.01)]
    saved, live, problems = compare_text(
        "PSNR 23.62 dB, loss 0.271\n", "PSNR 23.66 dB, loss 0.279\n", specs
    )
    assert problems == [] and saved == live == "PSNR <live number> dB, loss <live number>\n"


def test_number_outside_tolerance_is_named():
    _, _, problems = compare_text(
        "PSNR 23.62 dB", "PSNR 23.71 dB", [NumberSpec("PSNR {} dB", 0.05)]
    )
    assert problems == ["'PSNR {} dB': live 23.71, saved 23.62, |difference| 0.09 > tolerance 0.05"]


def test_nan_fails_and_counts_must_agree():
    spec = [NumberSpec("{}", 1.0)]
    assert compare_text("loss 1.0", "loss nan", spec)[2][0].startswith("'{}': live nan")
    problems = compare_text("1.0 2.0", "1.0", spec)[2]
    assert problems == ["'{}' appears 1 time(s) in the live output, 2 in the saved one"]


def test_text_outside_the_numbers_still_differs():
    saved, live, problems = compare_text(
        "398 images, PSNR 23.62 dB", "399 images, PSNR 23.62 dB", [NumberSpec("PSNR {} dB", 0.05)]
    )
    assert problems == [] and saved != live  # nbval then reports the 398 -> 399 difference


def test_several_numbers_and_thousands():
    spec = [NumberSpec("row {} | {}", 2.0)]
    assert compare_text("row 1,200 | 3.5", "row 1,201 | 4.5", spec)[2] == []
    assert compare_text("row 1,200 | 3.5", "row 1,203 | 3.5", spec)[2] != []


@pytest.mark.parametrize(
    "entry, match",
    [({"at": "PSNR", "tol": 0.1}, "needs 'at'"), ({"at": "{}", "tol": 0}, "needs 'tol'")],
)
def test_malformed_metadata_names_the_cell(entry, match):
    with pytest.raises(ValueError, match=f"cell 3: .*{match}"):
        parse_specs({"replay": {"numbers": [entry]}}, where="cell 3")


def _notebook(path: Path, saved_text: str, metadata: dict) -> None:
    cell = nbformat.v4.new_code_cell(
        "import os\nprint(f\"PSNR {float(os.environ['LIVE']):.2f} dB on {os.environ['COUNT']} images\")",
        metadata=metadata,
        execution_count=1,
        outputs=[nbformat.v4.new_output("stream", name="stdout", text=saved_text)],
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)


def _replay(tmp_path: Path, live: str, count: str, **env) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval"]
        + ["-p", "ldm_course.course.nbval_tolerance", "nb.ipynb"],
        cwd=tmp_path,
        env={**os.environ, "LIVE": live, "COUNT": count, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_replay_through_nbval(tmp_path):
    meta = {"replay": {"numbers": [{"at": "PSNR {} dB", "tol": 0.05}]}}
    _notebook(tmp_path / "nb.ipynb", "PSNR 23.62 dB on 41 images\n", meta)
    record = tmp_path / "rec.jsonl"
    ok = _replay(tmp_path, "23.65", "41", **{RECORD_ENV: str(record)})
    assert ok.returncode == 0, ok.stdout
    assert '"live": [23.65], "saved": [23.62]' in record.read_text()
    far = _replay(tmp_path, "23.70", "41")
    assert far.returncode == 1 and "live 23.70, saved 23.62" in far.stdout
    other_text = _replay(tmp_path, "23.62", "42")  # within tolerance, but other text: nbval fails
    assert other_text.returncode == 1 and "42 images" in other_text.stdout
    _notebook(tmp_path / "nb.ipynb", "PSNR 23.62 dB on 41 images\n", {})  # no metadata: verbatim
    assert _replay(tmp_path, "23.63", "41").returncode == 1
