"""Print docs/results.md's benchmark tables from the JSON files that the commands wrote.

python scripts/experiments/results_markdown.py > /tmp/results.md
"""

import json
from pathlib import Path

RESULTS = Path("benchmarks/results")


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    for name in ("latent-vs-pixel", "diffusers", "efficiency", "quality"):
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        m = data["machine"]
        print(
            f"#### {name} ({m['cpu_model']}, {m['threads']} thread(s), torch {m['torch']}, {m['date'][:10]})\n"
        )
        for title, rows in data["tables"].items():
            if isinstance(rows, list) and rows and isinstance(rows[0], dict):
                print(f"*{title}*\n\n{table(rows)}\n")


if __name__ == "__main__":
    main()
