"""Settings errors say what to write: the variable's JSON form, the key the user meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.settings import SettingsError, load_settings_or_explain


def test_a_list_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKAGE_INJECTOR_ALLOWED_HOSTS", "a.com")
    with pytest.raises(SettingsError) as error:
        load_settings_or_explain()
    assert str(error.value) == (
        "PACKAGE_INJECTOR_ALLOWED_HOSTS must be a JSON list, "
        "e.g. PACKAGE_INJECTOR_ALLOWED_HOSTS='[\"a.example.com\"]'"
    )


def test_a_mapping_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKAGE_INJECTOR_INIT_ENV", "PACKAGE_RETRIES=3")
    with pytest.raises(SettingsError, match="PACKAGE_INJECTOR_INIT_ENV must be a JSON mapping"):
        load_settings_or_explain()


def test_a_misspelt_key_gets_did_you_mean(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("alowed-hosts: [a.example.com]\nrequire_checksum: true\n")
    with pytest.raises(SettingsError) as error:
        load_settings_or_explain(config)
    assert (
        str(error.value) == 'invalid settings: unknown setting "alowed_hosts"; did you mean "allowed_hosts"?'
    )


def test_an_invalid_value_names_the_variable_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKAGE_INJECTOR_INIT_IMAGE_PULL_SECRETS", '["ns/regcred"]')
    with pytest.raises(SettingsError) as error:
        load_settings_or_explain()
    assert str(error.value).startswith(
        "invalid settings: PACKAGE_INJECTOR_INIT_IMAGE_PULL_SECRETS: 'ns/regcred'"
    )


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot load settings from"):
        load_settings_or_explain(tmp_path / "missing.yaml")
