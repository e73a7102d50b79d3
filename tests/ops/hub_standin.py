"""A local stand-in of the Hugging Face Hub's file API on loopback, for `saijin models download` tests.

It serves what huggingface_hub's snapshot_download asks for (HF_ENDPOINT points here):
``GET /api/models/{repo}/revision/{rev}`` (the commit), ``GET /api/models/{repo}/tree/{rev}`` (the file list with
sizes and LFS hashes) and ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (metadata headers, then the bytes, with
``Range`` for a resumed download). Large files can be sent slowly so that a test can kill a download mid-file.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, bytes]
    #: Files at least this large are LFS files and are sent in chunks with a pause (bytes per second).
    slow_from: int = 1 << 20
    rate: int = 2 << 20
    #: (method, path, Range header) of every request, for assertions.
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def tree(self) -> list[dict[str, object]]:
        entries = []
        for path, data in sorted(self.files.items()):
            entry: dict[str, object] = {"type": "file", "path": path, "size": len(data),
                                        "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
            if len(data) >= self.slow_from:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        return entries


def _handler(repo: HubRepo) -> type[BaseHTTPRequestHandler]:
    info_path = re.compile(rf"^/api/models/{re.escape(repo.repo_id)}/revision/[^/]+$")
    tree_path = re.compile(rf"^/api/models/{re.escape(repo.repo_id)}/tree/[^/]+(/.*)?$")
    file_path = re.compile(rf"^/{re.escape(repo.repo_id)}/resolve/[^/]+/(.+)$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            repo.requests.append((self.command, path, self.headers.get("Range")))
            if info_path.match(path):
                self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": COMMIT, "private": False,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]})
                return
            if tree_path.match(path):
                self._json(repo.tree())
                return
            match = file_path.match(path)
            if not match or match.group(1) not in repo.files:
                self._missing()
                return
            data = repo.files[match.group(1)]
            entry = next(e for e in repo.tree() if e["path"] == match.group(1))
            etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]  # type: ignore[index]
            start = 0
            ranged = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if ranged and body:
                start = int(ranged.group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            if "lfs" in entry:
                self.send_header("X-Linked-Etag", f'"{etag}"')
                self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if not body:
                return
            chunk = 64 * 1024
            slow = len(data) >= repo.slow_from
            for offset in range(start, len(data), chunk):
                try:
                    self.wfile.write(data[offset:offset + chunk])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if slow:
                    time.sleep(chunk / repo.rate)

    return Handler


@contextmanager
def serve_hub(repo: HubRepo) -> Iterator[str]:
    """Run the stand-in on 127.0.0.1 (a free port) in a thread; yields its URL for HF_ENDPOINT."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repo))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
