"""The docs follow the code: every setting, annotation key, init-container variable, exit code, CLI
command and top-level chart value is documented; generated parts are current; links resolve; the README
stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from initcontainer import contract
from webhook import annotations as ann
from webhook.cli import DELEGATED
from webhook.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def test_generated_settings_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    configuration = (DOCS / "configuration.md").read_text()
    assert f"`{name}`" in configuration and f"`{ENV_PREFIX}{name.upper()}`" in configuration
    assert Settings.model_fields[name].description, f"setting {name} has no description for the docs"


@pytest.mark.parametrize("key", ann.ALL_KEYS)
def test_every_annotation_key_is_documented(key: str) -> None:
    assert f"| `{key}` |" in (DOCS / "annotations.md").read_text()


@pytest.mark.parametrize("key", ann.NAMED_KEYS)
def test_every_named_package_key_is_documented(key: str) -> None:
    assert f"| `{key}.NAME` |" in (DOCS / "annotations.md").read_text()


@pytest.mark.parametrize("name", sorted(contract.KNOWN_ENV))
def test_every_init_container_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in (DOCS / "init-container.md").read_text()


@pytest.mark.parametrize("code", sorted(contract.EXIT_SUMMARY))
def test_every_exit_code_is_documented(code: int) -> None:
    assert re.search(rf"^\| {code} \| ", (DOCS / "init-container.md").read_text(), re.M)


@pytest.mark.parametrize("command", ["serve", "inject", *DELEGATED])
def test_every_command_is_documented(command: str) -> None:
    assert f"package-injector {command}" in docs_text() + (REPO / "README.md").read_text()


def test_every_top_level_chart_value_is_in_the_install_guide() -> None:
    values = yaml.safe_load((REPO / "charts" / "package-injector" / "values.yaml").read_text())
    install = (DOCS / "install.md").read_text()
    missing = [key for key in values if f"`{key}" not in install]
    assert not missing, f"chart values not mentioned in docs/install.md: {missing}"


def test_links_resolve() -> None:
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_anchors_resolve() -> None:
    def anchors(page: Path) -> set[str]:
        heads = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
        return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}

    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)]+)\)", page.read_text()):
            linked = page.parent / target if target else page
            assert anchor in anchors(linked), f"{page.name} links to {target}#{anchor}, no such heading"


def test_the_readme_is_for_newcomers() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 170
    # One command for the main job, a second for the tests, as the brief of the project asks.
    assert "make demo" in readme and "make test" in readme
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in readme, f"the README does not point to docs/{page.name}"
