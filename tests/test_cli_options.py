"""Option combinations and outputs that cannot be honoured are refused before any work (one line,
exit 2); the numbers a command used are the numbers it reports; every option has help text."""

import argparse
import json

import pytest
from helpers import tiny_ldm

from ldm_course.bench import run as bench_run
from ldm_course.cli.main import build_parser, main
from ldm_course.data import TensorImageDataset, twemoji
from ldm_course.training import evaluate as evaluate_module


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_label_and_unconditional_together_are_refused(tmp_path, capsys):
    out = tmp_path / "s.png"
    args = ["sample", "--n", "1", "--steps", "1", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--label", "Flags", "--unconditional"]) == 2
    err = one_line_error(capsys)
    assert "--label Flags asks for one class, --unconditional for none" in err
    assert not out.exists()


def test_steps_with_ddpm_are_refused_and_ddpm_alone_is_accepted(tmp_path, capsys, monkeypatch):
    out = tmp_path / "s.png"
    args = ["sample", "--n", "1", "--sampler", "ddpm", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--steps", "10"]) == 2
    assert "--steps 10 does not apply to --sampler ddpm" in one_line_error(capsys)
    assert not out.exists()
    # without --steps the options are consistent; the model is replaced to keep this fast
    from ldm_course.cli import main as cli_main

    ldm = tiny_ldm(image_size=16)
    seen = {}
    generate = ldm.generate

    def recording(n, **kwargs):
        seen.update(kwargs)
        return generate(n, **kwargs)

    monkeypatch.setattr(ldm, "generate", recording)
    monkeypatch.setattr(cli_main, "_load_ldm", lambda args: ldm)
    assert main(args) == 0 and out.exists() and seen["sampler"] == "ddpm"
    assert main(["sample", "--n", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert seen["sampler"] == "ddim" and seen["steps"] == 20  # default 50, capped at this T = 20


@pytest.mark.parametrize("n", ["1", "0"])
def test_evaluate_refuses_fewer_than_two_samples_before_any_work(tmp_path, capsys, n):
    out = tmp_path / "e.json"
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--num-samples", n, "--out", str(out)])
    assert exit_.value.code == 2
    assert "a Frechet distance needs at least 2 images" in capsys.readouterr().err
    with pytest.raises(ValueError, match="num_samples=1 must be a whole number >= 2"):
        evaluate_module.evaluate(out=out, num_samples=1)
    assert not out.exists()


@pytest.mark.slow  # over 7 s: in CI's full run, not the fast subset
def test_evaluate_records_and_prints_the_number_of_samples_it_used(tmp_path, monkeypatch):
    real = twemoji("test")

    def small_twemoji(split, labels="category", **kwargs):  # 12 images stand in for the split
        d = twemoji(split, labels=labels, **kwargs)
        return TensorImageDataset(
            d.images[:12], d.labels[:12], class_names=d.class_names, names=d.names[:12]
        )

    ldm = tiny_ldm(image_size=64, num_classes=len(real.class_names), class_names=real.class_names)
    monkeypatch.setattr(evaluate_module, "twemoji", small_twemoji)
    monkeypatch.setattr(evaluate_module, "load_ldm", lambda *a, **k: ldm)
    out = tmp_path / "e.json"
    text = evaluate_module.evaluate(out=out, num_samples=100000, ddpm=False, steps=2)
    report = json.loads(out.read_text())
    assert report["num_samples"] == 12 and report["num_samples_requested"] == 100000
    assert "Frechet distance (12 images each" in text
    assert "num_samples 100000 asked for; the test split has 12 images, so 12 are used" in text
    assert all(k.endswith(", 12 images") for k in report["frechet_distance"] if "DDIM" in k)


def test_bench_refuses_a_file_as_out_before_running(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(bench_run, "run_benchmark", lambda *a: ran.append(a))
    file = tmp_path / "results.json"
    file.write_text("{}")
    assert bench_run.main(["--tiny", "--only", "efficiency", "--out", str(file)]) == 2
    assert f"--out {file} is a file" in one_line_error(capsys)
    assert ran == [] and file.read_text() == "{}"


@pytest.mark.parametrize("plot, message", [("plot.txt", "unknown file type '.txt'"), ("", "")])
def test_bench_refuses_a_plot_that_is_not_an_image_before_running(
    tmp_path, capsys, monkeypatch, plot, message
):
    ran = []
    monkeypatch.setattr(bench_run, "run_benchmark", lambda *a: ran.append(a) or {"tables": {}})
    monkeypatch.setattr(bench_run, "prepare_quality", lambda *a: {})
    args = ["--tiny", "--only", "quality", "--out", str(tmp_path / "o")]
    if plot:
        code = bench_run.main([*args, "--plot", str(tmp_path / plot)])
        assert code == 2 and message in one_line_error(capsys) and ran == []
    else:
        assert bench_run.main(args) == 0 and len(ran) == 1  # the checks let a good call through


def all_options(parser: argparse.ArgumentParser, path: str = ""):
    """(command, option strings, action) for every option of `parser` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from all_options(sub, f"{path} {name}".strip())
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield path, action.option_strings, action


def test_every_option_of_every_command_has_help_text():
    options = list(all_options(build_parser())) + [
        (f"bench{p}", o, a) for p, o, a in all_options(bench_run.build_parser())
    ]
    assert len(options) > 40  # the walk reaches the subcommands
    missing = [f"{cmd} {'/'.join(opts)}" for cmd, opts, a in options if not (a.help or "").strip()]
    assert missing == []


def test_vae_is_an_option_of_the_commands_that_use_it_with_their_own_help():
    helps = {cmd: a.help for cmd, opts, a in all_options(build_parser()) if opts == ["--vae"]}
    assert set(helps) == {"train-ldm", "sample", "reconstruct", "evaluate"}  # not train-vae
    assert "latents the U-Net learns" in helps["train-ldm"]
    assert "with --ldm RUN" in helps["sample"] and "with --ldm" not in helps["reconstruct"]


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"ldm-course {version('ldm-course')}"


@pytest.mark.parametrize("command", ["train-vae", "train-ldm"])
def test_a_run_dir_that_is_a_file_or_unwritable_is_refused_before_the_data_loads(
    tmp_path, capsys, monkeypatch, command
):
    from ldm_course.cli import main as cli_main

    loaded = []
    monkeypatch.setattr(cli_main, "_data", lambda *a: loaded.append(a))
    file = tmp_path / "run.txt"
    file.write_text("notes")
    assert main([command, "--device", "cpu", "--run-dir", str(file)]) == 2
    assert f"--run-dir {file} is a file, not a folder" in one_line_error(capsys)
    assert main([command, "--device", "cpu", "--run-dir", "/proc/run"]) == 2
    assert "cannot write in /proc" in one_line_error(capsys)
    assert loaded == [] and file.read_text() == "notes"


@pytest.mark.parametrize(
    "out, message", [("e.txt", "ending in .json"), ("/proc/e.json", "cannot write")]
)
def test_evaluate_checks_its_output_before_loading_anything(tmp_path, monkeypatch, out, message):
    monkeypatch.setattr(evaluate_module, "load_ldm", lambda *a, **k: pytest.fail("loaded"))
    out = out if out.startswith("/") else str(tmp_path / out)
    with pytest.raises((ValueError, PermissionError), match=message):
        evaluate_module.evaluate(out=out, num_samples=8)
