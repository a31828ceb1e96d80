"""The command line as a person types it: option names, where options go, queries, errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import cli, cli_environment, image_bytes

from images.runtime.embedded_db import free_port
from imagestore_client.cli import parse_arguments


def imagestore(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`imagestore ARGS` with no --url of its own, IMAGESTORE_* from `env` only."""
    return subprocess.run(
        [sys.executable, "-m", "imagestore_client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**cli_environment(), **env},
    )


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit:
        parse_arguments(argv)
    assert exit.value.code == 2
    return capsys.readouterr().err


# --- option names -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, meant",
    [
        (["--timeo", "5", "info"], "--timeout"),
        (["--token-u", "http://idp", "info"], "--token-url"),
        (["push", "photos", "--on-dup", "skip"], "--on-duplicate"),
        (["ls", "--lim", "3"], "--limit"),
    ],
)
def test_only_full_option_names_are_taken(capsys, argv, meant):
    err = usage_error(capsys, *argv)
    assert "unrecognized arguments" in err
    assert f"did you mean {meant}?" in err


def test_to_is_not_a_token(capsys):
    err = usage_error(capsys, "push", "photos", "--to", "secret")
    assert "unrecognized arguments: --to secret" in err
    assert "ambiguous" not in err
    assert parse_arguments(["ls", "--to", "2026-01-01"]).to == "2026-01-01"


# --- global options before or after the command -----------------------------------------------
def test_global_options_go_before_or_after_the_command(monkeypatch):
    monkeypatch.setenv("IMAGESTORE_URL", "http://from-env:1")
    assert parse_arguments(["ls"]).url == "http://from-env:1"
    before = parse_arguments(["--url", "http://a:1", "--token", "t1", "--no-progress", "ls"])
    after = parse_arguments(["ls", "--url", "http://a:1", "--token", "t1", "--no-progress"])
    for args in (before, after):
        assert (args.url, args.token, args.no_progress) == ("http://a:1", "t1", True)
    both = parse_arguments(["--url", "http://before:1", "--timeout", "3", "pull", "out",
                            "label=cat", "--url", "http://after:1", "--client-id", "me"])  # fmt: skip
    assert (both.url, both.timeout, both.client_id, both.terms) == (
        "http://after:1", 3.0, "me", ["label=cat"],
    )  # fmt: skip
    assert parse_arguments(["push", "d", "--timeout", "7"]).timeout == 7.0
    assert parse_arguments(["push", "d"]).no_progress is False


@pytest.mark.slow  # talks to a `serve` of its own
def test_url_after_the_command_reaches_the_service(client, service):
    client.upload(image_bytes(1), "one.png")
    wrong = f"http://127.0.0.1:{free_port()}"
    result = imagestore("--url", wrong, "ls", "--url", service.url, IMAGESTORE_URL=wrong)
    assert result.returncode == 0, result.stderr
    assert "one.png" in result.stdout


# --- queries ----------------------------------------------------------------------------------
def listed(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(line.split()[2] for line in result.stdout.splitlines())


@pytest.mark.slow  # talks to a `serve` of its own
def test_regex_is_a_regular_expression(client, service):
    for index, (file, label) in enumerate(
        [
            ("a/cat1.png", "cat"),
            ("a/Cat2.png", "catalog"),
            ("b/cat3.png", "cat"),
            ("b/x.png", "dog"),
        ]
    ):
        client.upload(image_bytes(index), file, {"label": label})
    assert listed(cli(service.url, "ls", "--regex", r"^a/cat[0-9]\.png$")) == ["a/cat1.png"]
    assert listed(cli(service.url, "ls", "--regex", "file=(?i)^a/cat")) == [
        "a/Cat2.png",
        "a/cat1.png",
    ]
    assert listed(cli(service.url, "ls", "--regex", "label=^cat$")) == ["a/cat1.png", "b/cat3.png"]
    both = cli(
        service.url,
        "ls",
        "--regex",
        "label=^cat",
        "--regex",
        "^b/",
        "--filter",
        '{"data.label": {"$ne": "dog"}}',
    )
    assert listed(both) == ["b/cat3.png"]
    refused = cli(service.url, "ls", "--regex", "label=(a+)+$")
    assert refused.returncode == 1
    assert "400" in refused.stderr


@pytest.mark.slow  # talks to a `serve` of its own
def test_bulk_rm_and_patch_offer_no_limit(client, service):
    client.upload(image_bytes(1), "one.png", {"label": "cat"})
    client.upload(image_bytes(2), "two.png", {"label": "cat"})
    for command in (["rm", "label=cat", "--yes"], ["patch", "label=cat", "--set", "k=v"]):
        for option in ("--limit", "--skip", "--sort"):
            result = cli(service.url, *command, option, "1")
            assert result.returncode == 2, (command, option, result.stderr)
            assert f"unrecognized arguments: {option} 1" in result.stderr
    assert client.count(label="cat") == 2
    assert "--limit" not in cli(service.url, "rm", "--help").stdout


# --- a wrong URL --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", [f"http://127.0.0.1:{free_port()}", "http://no-such-host.invalid:3000"]
)
def test_a_wrong_url_answers_at_once(url):
    started = time.monotonic()
    result = imagestore("ls", IMAGESTORE_URL=url)
    assert time.monotonic() - started < 5  # the interpreter's start included; retries took ~10 s
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert url in result.stderr
    assert "is the service running? set --url or IMAGESTORE_URL" in result.stderr


# --- a query that matches nothing ---------------------------------------------------------------
@pytest.mark.slow  # talks to a `serve` of its own
def test_a_field_typo_that_matches_nothing_says_so(client, service, tmp_path):
    client.upload(image_bytes(1), "one.png", {"label": "cat", "camera": "cam1"})
    hint = "no image has a field 'lable'; known fields: camera, label"
    for command in (
        ["ls", "lable=cat"],
        ["ls", "--filter", '{"$or": [{"data.lable": "cat"}]}'],
        ["ls", "--regex", "lable=c"],
        ["pull", str(tmp_path / "out"), "lable=cat"],
        ["rm", "lable=cat", "--yes"],
        ["patch", "lable=cat", "--set", "k=v"],
    ):
        result = cli(service.url, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert hint in result.stderr, command
    known_but_no_match = cli(service.url, "ls", "label=dog")
    assert known_but_no_match.returncode == 0
    assert "no image has" not in known_but_no_match.stderr
    assert client.count() == 1
