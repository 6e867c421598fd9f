"""``wattfare consent-domain register-app | add-user``: what a self-hoster types, and what is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattfare_embed.cli import main
from wattfare_embed.keys import parse_keys


def test_register_app_prints_a_live_key_pair_the_domain_does_not_keep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "domain.db"
    url = f"sqlite+aiosqlite:///{database}"
    code = main(
        [
            "consent-domain", "register-app", "--database-url", url, "--name", "Acme Chat",
            "--redirect-uri", "https://acme.example/wattfare/callback",
            "--redirect-uri", "https://staging.acme.example/wattfare/callback",
            "--webhook-url", "https://acme.example/wattfare/webhooks",
        ]
    )  # fmt: skip
    printed = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    assert code == 0
    keys = parse_keys(printed["WATTFARE_SECRET_KEY"], printed["WATTFARE_PUBLISHABLE_KEY"])
    assert keys.live
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert keys.publishable_key.encode() in stored
    assert keys.secret_key.encode() not in stored and keys.secret_key.split("_")[-1].encode() not in stored

    assert (
        main(
            [
                "consent-domain",
                "add-user",
                "--database-url",
                url,
                "--email",
                "Ada@Example.com",
                "--password",
                "long enough",
            ]
        )
        == 0
    )
    assert "added ada@example.com" in capsys.readouterr().out
    assert b"long enough" not in b"".join(path.read_bytes() for path in tmp_path.iterdir())


@pytest.mark.parametrize(
    "arguments",
    [
        ["--redirect-uri", "http://acme.example/cb", "--webhook-url", "https://acme.example/hooks"],
        ["--redirect-uri", "https://acme.example/cb#x", "--webhook-url", "https://acme.example/hooks"],
        ["--redirect-uri", "https://acme.example/cb", "--webhook-url", "ftp://acme.example/hooks"],
    ],
)
def test_register_app_refuses_unsafe_urls(
    tmp_path: Path, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'domain.db'}"
    assert main(["consent-domain", "register-app", "--database-url", url, "--name", "X", *arguments]) == 2
    assert "error:" in capsys.readouterr().err
