"""Configuration from the environment: defaults, validation, credentials, typo detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from initcontainer import contract
from initcontainer.config import load_config, normalise_sha256, parse_duration, parse_size
from initcontainer.errors import ConfigError
from tests.support.nginx import make_test_ca

URL = "https://packages.example.com/app/pkg.tar.gz"
SHA = "ab" * 32


def env(**extra: str) -> dict[str, str]:
    # A credentials dir that does not exist keeps the machine's default path out of the tests.
    base = {contract.ENV_URL: URL}
    base.update(extra)
    return base


def test_defaults() -> None:
    cfg = load_config(env())
    assert cfg.url == URL
    assert cfg.sha256 is None
    assert cfg.dest == Path(contract.DEFAULT_DEST)
    assert cfg.fmt == "auto"
    assert cfg.strip_components == 0
    assert cfg.allow_http is False
    assert cfg.insecure_skip_tls_verify is False
    assert cfg.max_download_bytes == contract.DEFAULT_MAX_DOWNLOAD_BYTES
    assert cfg.max_extracted_bytes == contract.DEFAULT_MAX_EXTRACTED_BYTES
    assert cfg.max_files == contract.DEFAULT_MAX_FILES
    assert cfg.connect_timeout == contract.DEFAULT_CONNECT_TIMEOUT
    assert cfg.read_timeout == contract.DEFAULT_READ_TIMEOUT
    assert cfg.total_timeout == contract.DEFAULT_TOTAL_TIMEOUT
    assert cfg.retries == contract.DEFAULT_RETRIES
    assert cfg.termination_log == Path(contract.DEFAULT_TERMINATION_LOG)
    assert cfg.log_format == "json"
    assert cfg.credentials is None
    assert cfg.warnings == ()


def test_every_contract_variable_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("t0ken\n")
    cfg = load_config(
        {
            contract.ENV_URL: "http://10.1.2.3:8080/p.zip",
            contract.ENV_SHA256: "SHA256:" + SHA.upper(),
            contract.ENV_DEST: "/data/out",
            contract.ENV_STRIP_COMPONENTS: "2",
            contract.ENV_FORMAT: "ZIP",
            contract.ENV_CREDENTIALS_DIR: str(tmp_path),
            contract.ENV_ALLOW_HTTP: "true",
            contract.ENV_INSECURE_SKIP_TLS_VERIFY: "false",
            contract.ENV_MAX_DOWNLOAD_BYTES: "100Mi",
            contract.ENV_MAX_EXTRACTED_BYTES: "1G",
            contract.ENV_MAX_FILES: "500",
            contract.ENV_CONNECT_TIMEOUT: "2.5",
            contract.ENV_READ_TIMEOUT: "10s",
            contract.ENV_TOTAL_TIMEOUT: "5m",
            contract.ENV_RETRIES: "0",
            contract.ENV_TERMINATION_LOG: "/tmp/term",
            contract.ENV_LOG_FORMAT: "text",
        }
    )
    assert cfg.sha256 == SHA
    assert cfg.dest == Path("/data/out")
    assert cfg.strip_components == 2
    assert cfg.fmt == "zip"
    assert cfg.max_download_bytes == 100 * 1024**2
    assert cfg.max_extracted_bytes == 10**9
    assert cfg.max_files == 500
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.total_timeout) == (2.5, 10.0, 300.0)
    assert cfg.retries == 0
    assert cfg.log_format == "text"
    assert cfg.credentials is not None and cfg.credentials.token == "t0ken"
    # plain http with credentials earns a warning
    assert any("plain http" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({contract.ENV_URL: ""}, "PACKAGE_URL is required"),
        ({contract.ENV_URL: "ftp://h/p.tar"}, "https://"),
        ({contract.ENV_URL: "http://h/p.tar"}, "PACKAGE_ALLOW_HTTP"),
        ({contract.ENV_URL: "https://bob:pw@h/p.tar"}, "credentials"),
        ({contract.ENV_URL: "https://bob@h/p.tar"}, "credentials"),
        ({contract.ENV_URL: "https:///p.tar"}, "no host"),
        ({contract.ENV_URL: "https://h/a b.tar"}, "whitespace"),
        ({contract.ENV_URL: "https://h:99999/p"}, "not a valid URL"),
        ({contract.ENV_SHA256: "abc"}, "64 hex"),
        ({contract.ENV_SHA256: "md5:" + SHA}, "64 hex"),
        ({contract.ENV_STRIP_COMPONENTS: "-1"}, "out of range"),
        ({contract.ENV_STRIP_COMPONENTS: "33"}, "out of range"),
        ({contract.ENV_STRIP_COMPONENTS: "x"}, "not an integer"),
        ({contract.ENV_FORMAT: "rar"}, "not one of"),
        ({contract.ENV_ALLOW_HTTP: "maybe"}, "not a boolean"),
        ({contract.ENV_MAX_DOWNLOAD_BYTES: "lots"}, "not a size"),
        ({contract.ENV_MAX_FILES: "0"}, "greater than 0"),
        ({contract.ENV_READ_TIMEOUT: "soon"}, "not a duration"),
        ({contract.ENV_CONNECT_TIMEOUT: "0"}, "greater than 0"),
        ({contract.ENV_RETRIES: "1000"}, "out of range"),
        ({contract.ENV_LOG_FORMAT: "xml"}, "json or text"),
        ({contract.ENV_DEST: "relative/dir"}, "absolute"),
        ({contract.ENV_CREDENTIALS_DIR: "/nonexistent/creds"}, "not a directory"),
        ({contract.ENV_USERNAME: "bob"}, "set both"),
    ],
)
def test_invalid_values_are_config_errors(extra: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env(**extra))
    assert fragment in str(info.value)
    assert info.value.exit_code == contract.EXIT_CONFIG


def test_url_error_never_echoes_the_url() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env(**{contract.ENV_URL: "https://bob:hunter2@h/p.tar?X-Amz-Signature=zzz"}))
    assert "hunter2" not in str(info.value)
    assert "zzz" not in str(info.value)


@pytest.mark.parametrize("bad", ["\x01", "\x7f", "\u00e9", "\x00"])
def test_url_with_control_or_non_ascii_characters(bad: str) -> None:
    """http.client would refuse them later, quoting the whole target (token included) in its error."""
    with pytest.raises(ConfigError, match="percent-encode") as info:
        load_config(env(**{contract.ENV_URL: f"https://h/p{bad}.tar?X-Amz-Signature=zzz"}))
    assert "zzz" not in str(info.value)


def test_unknown_variable_names_the_closest_known_one() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env(PACKAGE_SHA265=SHA))
    assert "PACKAGE_SHA265" in str(info.value)
    assert "did you mean PACKAGE_SHA256" in str(info.value)
    with pytest.raises(ConfigError, match="known variables"):
        load_config(env(PACKAGE_ZZZZZZZZZZZZZZZ="1"))


def test_service_links_and_webhook_settings_are_not_typos() -> None:
    # Kubernetes injects these for Services named "package" and "package-repo".
    cfg = load_config(
        env(
            PACKAGE_SERVICE_HOST="10.0.0.1",
            PACKAGE_SERVICE_PORT="80",
            PACKAGE_SERVICE_PORT_HTTP="80",
            PACKAGE_PORT="tcp://10.0.0.1:80",
            PACKAGE_REPO_PORT_80_TCP="tcp://10.0.0.2:80",
            PACKAGE_REPO_PORT_80_TCP_ADDR="10.0.0.2",
            PACKAGE_REPO_PORT_80_TCP_PORT="80",
            PACKAGE_REPO_PORT_80_TCP_PROTO="tcp",
            PACKAGE_INJECTOR_LOG_LEVEL="debug",
        )
    )
    assert cfg.url == URL


def test_sha256_normalisation() -> None:
    assert normalise_sha256(" sha256:" + SHA.upper() + "\n") == SHA
    assert normalise_sha256(SHA) == SHA


def test_size_and_duration_units() -> None:
    assert parse_size("x", "1Ki") == 1024
    assert parse_size("x", "2k") == 2000
    assert parse_size("x", "3Gi") == 3 * 1024**3
    assert parse_duration("x", "2m") == 120.0
    assert parse_duration("x", "1.5") == 1.5


def test_basic_credentials_from_secret_dir(tmp_path: Path) -> None:
    (tmp_path / "username").write_text("alice\n")
    (tmp_path / "password").write_text("s3cret\n")
    cfg = load_config(env(**{contract.ENV_CREDENTIALS_DIR: str(tmp_path)}))
    assert cfg.credentials is not None
    assert (cfg.credentials.username, cfg.credentials.password) == ("alice", "s3cret")
    assert cfg.credentials.kind == "basic"
    assert "s3cret" not in repr(cfg)
    assert "alice" not in repr(cfg)


def test_bearer_token_and_ca_from_secret_dir(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "token").write_text("tok-123")
    ca = make_test_ca(tmp_path / "tls")
    (creds / "ca.crt").write_text(ca.ca_pem)
    cfg = load_config(env(**{contract.ENV_CREDENTIALS_DIR: str(creds)}))
    assert cfg.credentials is not None and cfg.credentials.kind == "bearer"
    assert cfg.ca_pem == ca.ca_pem
    assert "tok-123" not in repr(cfg)


def test_ca_only_secret_dir(tmp_path: Path) -> None:
    ca = make_test_ca(tmp_path / "tls")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ca.crt").write_text(ca.ca_pem)
    cfg = load_config(env(**{contract.ENV_CREDENTIALS_DIR: str(creds)}))
    assert cfg.credentials is None
    assert cfg.ca_pem is not None


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"username": "a"}, "lacks the file 'password'"),
        ({"password": "a"}, "lacks the file 'username'"),
        ({"token": "t", "username": "u", "password": "p"}, "both a token"),
        ({"token": "\n"}, "is empty"),
        ({"token": "a\nb"}, "more than one line"),
        ({"ca.crt": "not a cert"}, "not a PEM CA"),
        ({"username": "a:b", "password": "p"}, "must not contain ':'"),
    ],
)
def test_bad_secret_dirs(tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_config(env(**{contract.ENV_CREDENTIALS_DIR: str(tmp_path)}))


def test_legacy_env_credentials_work_with_a_warning() -> None:
    cfg = load_config(
        env(
            **{
                contract.ENV_CREDENTIALS_DIR: "",
                contract.ENV_USERNAME: "bob",
                contract.ENV_PASSWORD: "pw",
            }
        )
    )
    assert cfg.credentials is not None
    assert cfg.credentials.username == "bob"
    assert any("deprecated" in w and "Secret" in w for w in cfg.warnings)
    assert not any("pw" in w.split() for w in cfg.warnings)


def test_secret_wins_over_legacy_env(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok")
    cfg = load_config(
        env(
            **{
                contract.ENV_CREDENTIALS_DIR: str(tmp_path),
                contract.ENV_USERNAME: "bob",
                contract.ENV_PASSWORD: "pw",
            }
        )
    )
    assert cfg.credentials is not None and cfg.credentials.token == "tok"
    assert any("ignored" in w for w in cfg.warnings)


def test_insecure_skip_verify_warns() -> None:
    cfg = load_config(env(**{contract.ENV_INSECURE_SKIP_TLS_VERIFY: "true"}))
    assert cfg.insecure_skip_tls_verify
    assert cfg.warnings


@pytest.mark.parametrize(
    ("proxy", "ok"),
    [
        ("http://proxy.corp:3128", True),
        ("proxy.corp:3128", True),
        ("https://proxy.corp", False),
        ("socks5://p", False),
    ],
)
def test_proxy_variables_are_checked_at_start(proxy: str, ok: bool) -> None:
    """The transport speaks plain HTTP to proxies: anything else is a configuration error now (exit 2),
    not a network error after retries."""
    env = {contract.ENV_URL: "https://h/p.tar", "HTTPS_PROXY": proxy}
    if ok:
        load_config(env)
    else:
        with pytest.raises(ConfigError, match="only http:// proxies"):
            load_config(env)


def test_non_ascii_digits_are_not_numbers() -> None:
    for raw in ("٣", "1_0"):
        with pytest.raises(ConfigError, match="not an integer"):
            load_config({contract.ENV_URL: "https://h/p.tar", contract.ENV_RETRIES: raw})
