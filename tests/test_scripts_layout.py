"""The lab and the release are kept apart: no release script runs or sources an experiment script,
and the shell helpers both use live in scripts/lib/."""

import re
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# a command that runs or sources a file under experiments/ (bash x, source x, python x, $PY x, ./x)
RUNS = re.compile(
    r"(?:\b(?:bash|sh|source|python3?)|\$PY|\$\{PY[^}]*\}|^\s*\.)\s+\S*experiments/\S+"
)


def commands(path: Path) -> list[str]:
    """The lines of a shell or Python script that are not comments (a string may span lines)."""
    return [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]


def test_release_scripts_run_no_experiment_script():
    offenders = []
    for path in sorted((SCRIPTS / "release").iterdir()):
        for line in commands(path):
            if RUNS.search(line.split(" #")[0]):
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, offenders


def test_experiment_scripts_source_only_the_shared_helpers():
    for path in sorted((SCRIPTS / "experiments").glob("*.sh")):
        for line in commands(path):
            if line.lstrip().startswith("source"):
                assert "/lib/" in line, (
                    f"{path.name} sources {line.strip()} (shared helpers live in scripts/lib/)"
                )
