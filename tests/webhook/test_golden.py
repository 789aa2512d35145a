"""Golden files: `golden/<case>.in.yaml` injected (with `<case>.settings.yaml` if present) must equal
`<case>.out.yaml`, and injecting that output again must change nothing. The warnings printed on stderr must
equal `<case>.warnings.txt` (no such file: no warning at all), so a new or changed warning shows in review.

A stale golden fails with the command that rewrites it (REGENERATE); review the diff before committing it.
A `.out.yaml` or `.settings.yaml` without its `.in.yaml` fails too: it would never be checked."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from webhook.cli import run_inject
from webhook.settings import Settings, load_settings

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".in.yaml") for p in GOLDEN.glob("*.in.yaml"))
REGENERATE = "UPDATE_GOLDEN=1 .venv/bin/pytest tests/webhook/test_golden.py -p no:randomly"


def settings_for(case: str) -> Settings:
    path = GOLDEN / f"{case}.settings.yaml"
    return load_settings(path) if path.exists() else Settings()


def run(text: str, settings: Settings) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_inject(io.StringIO(text), out, err, settings, None)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    settings = settings_for(case)
    code, out, err = run((GOLDEN / f"{case}.in.yaml").read_text(), settings)
    assert code == 0, err
    expected = GOLDEN / f"{case}.out.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected.write_text(out)
    assert expected.exists(), f"{expected.name} is missing; create it with: {REGENERATE}"
    assert out == expected.read_text(), (
        f"{expected.name} is stale: the injector's output changed. If the change is intended, regenerate "
        f"with `{REGENERATE}` and review `git diff tests/webhook/golden/{expected.name}`"
    )
    warnings = GOLDEN / f"{case}.warnings.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        if err:
            warnings.write_text(err)
        else:
            warnings.unlink(missing_ok=True)
    assert err == (warnings.read_text() if warnings.exists() else ""), (
        f"the warnings of {case} changed (expected {warnings.name}, or none without it); if intended, "
        f"regenerate with `{REGENERATE}` and review the diff"
    )
    # Converges: injecting the injected output is the identity, with the same warnings and no new ones.
    code2, out2, err2 = run(out, settings)
    assert code2 == 0 and list(yaml.safe_load_all(out2)) == list(yaml.safe_load_all(out))
    assert err2 == err


def test_every_golden_file_belongs_to_a_case() -> None:
    orphans = [
        p.name
        for p in GOLDEN.iterdir()
        if p.name.removesuffix(".in.yaml")
        .removesuffix(".out.yaml")
        .removesuffix(".settings.yaml")
        .removesuffix(".warnings.txt")
        not in CASES
    ]
    assert not orphans, f"golden files without a .in.yaml (never checked): {orphans}; remove or rename them"


def objects(text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        found += doc["items"] if doc.get("kind") == "List" else [doc]
    return found


@pytest.mark.parametrize("version", ["1.29", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("case", CASES)
def test_golden_output_is_a_valid_kubernetes_object(case: str, version: str) -> None:
    """Strict schema validation: no unknown or misspelled field in what we inject."""
    for obj in objects((GOLDEN / f"{case}.out.yaml").read_text()):
        kubernetes_validate.validate(obj, version, strict=True)


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 5
