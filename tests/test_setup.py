"""`tracker init` and `tracker address`: the configuration file written and edited in place."""

from __future__ import annotations

from pathlib import Path

from tracker.config import load

from support import ROOT, make_address
from support.fakeapi import FakeSpacescan
from support.process import Daemon, run_tracker, write_config

EXAMPLE = "xch1a6cd558gqsz2hch5pt0l8mx7zhavf32q5lyde09zjtqcmkelr9ns59k0j8"
OTHER = make_address(77)


def tracker(path: Path, *args: str) -> tuple[int, str, str]:
    result = run_tracker("--config", str(path), *args, cwd=path.parent)
    return result.returncode, result.stdout, result.stderr


def test_init_writes_the_commented_example_with_the_addresses(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    code, out, err = tracker(path, "init", f"{EXAMPLE}=savings", OTHER)
    assert (code, err) == (0, "")
    assert f"wrote {path} watching 2 addresses" in out
    text = path.read_text()
    assert "# Unknown keys are errors" in text  # the example's comments came along
    settings = load(path, {})
    assert [(e.address, e.label) for e in settings.addresses] == [
        (EXAMPLE, "savings"),
        (OTHER, None),
    ]
    # The same starter as the example file, but for the addresses.
    example = (ROOT / "config.example.toml").read_text()
    assert text.split("[[addresses]]")[0] == example.split("[[addresses]]")[0]
    code, _, err = tracker(path, "init", OTHER)
    assert code == 2
    assert "already exists" in err


def test_init_refuses_a_bad_address_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    code, _, err = tracker(path, "init", EXAMPLE[:-1] + "x")
    assert code == 2
    assert err.startswith("tracker: error: ")
    assert "not a valid Chia address" in err
    assert not path.exists()
    code, _, err = tracker(path, "init")  # no terminal to ask on
    assert code == 2
    assert not path.exists()


def test_address_add_and_remove_keep_comments_and_refuse_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "tracker.toml"
    assert tracker(path, "init", EXAMPLE)[0] == 0
    path.write_text(path.read_text().replace("[database]", "# my own note\n[database]"))
    code, out, err = tracker(path, "address", "add", OTHER, "--label", "cold")
    assert (code, err) == (0, "")
    assert "no daemon runs" in out
    assert "# my own note" in path.read_text()
    assert tracker(path, "address", "add", OTHER)[0] == 2  # already there
    assert tracker(path, "address", "add", "txch1nope")[0] == 2
    code, out, _ = tracker(path, "address", "list", "--format", "csv")
    assert out.splitlines() == ["address,label", f"{EXAMPLE},", f"{OTHER},cold"]
    code, out, err = tracker(path, "address", "remove", "cold")
    assert (code, err) == (0, "")
    assert "history stays" in out
    assert [e.address for e in load(path, {}).addresses] == [EXAMPLE]
    assert "# my own note" in path.read_text()
    code, _, err = tracker(path, "address", "remove", "cold")
    assert code == 1
    assert "not a watched address or label" in err


def test_a_running_daemon_is_told_to_reload(tmp_path: Path) -> None:
    with FakeSpacescan() as api:
        api.set_xch(EXAMPLE, 1)
        api.set_xch(OTHER, 2)
        config = write_config(
            tmp_path / "tracker.toml",
            db_url=f"sqlite:///{tmp_path / 'tracker.db'}",
            api_url=api.url,
            addresses=[EXAMPLE],
            interval=1,
        )
        with Daemon(config) as daemon:
            daemon.wait_for_line("poll finished")
            code, out, err = tracker(config, "address", "add", OTHER, "-l", "new")
            assert (code, err) == (0, "")
            assert f"the daemon (pid {daemon.pid}) reloads its address list now" in out
            daemon.wait_for_line("reloaded: 2 addresses (1 added, 0 removed")
            daemon.wait_for("a poll of the new address", lambda: api.count(path_contains=OTHER))
            daemon.terminate()
