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


def hangs_on_first_attempt(root: Path, marker: Path) -> Path:
    """A project that counts its attempts in ``marker``, hangs on the first (for a test to kill
    its runner) and finishes on the next."""
    return make_project(
        root,
        f"""\
        import time
        with open({str(marker)!r}, "a") as f:
            f.write("x")
        if len(open({str(marker)!r}).read()) == 1:
            time.sleep(300)
        print("second attempt done")
        """,
    )
