"""Builders of MLflow projects for tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sklearn_elasticnet"


def make_project(
    root: Path,
    script: str,
    *,
    parameters: str = "{alpha: {type: float, default: 0.5}}",
    command: str = "python main.py --alpha {alpha}",
    extra_mlproject: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """A folder with an MLproject whose `main` entry point runs ``script`` as main.py."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(
        textwrap.dedent(
            f"""\
            name: test-project
            {extra_mlproject}
            entry_points:
              main:
                parameters: {parameters}
                command: "{command}"
            """
        )
    )
    (root / "main.py").write_text(textwrap.dedent(script))
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root
