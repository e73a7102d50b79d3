"""Model paths as symlink chains (WSL2: /mnt/sai/models/... -> /mnt/f/...): resolved one link at a time, so that
the doctor can name the link that is broken and the `ln -sfn` that repairs it."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

#: More links than this on one path is a loop (Linux gives up at 40 too).
MAX_LINKS = 40
_DRIVE = re.compile(r"^/mnt/([a-zA-Z])(/|$)")


@dataclass(frozen=True)
class Hop:
    """One symlink on the way: where it is and what it says (as written, and made absolute)."""

    link: Path
    written: str
    target: Path


@dataclass
class LinkChain:
    """The path as given, each link followed, and where it ends (``resolved``) or stops (``missing``)."""

    path: Path
    hops: list[Hop] = field(default_factory=list)
    resolved: Path | None = None
    #: The first path on the way that does not exist.
    missing: Path | None = None
    loop: bool = False

    @property
    def broken(self) -> Hop | None:
        """The link whose target does not exist (the last one followed before the missing path)."""
        return self.hops[-1] if self.missing is not None and self.hops else None

    def text(self) -> str:
        """'LINK -> TARGET -> TARGET2' as followed (the path itself when no link is involved)."""
        if not self.hops:
            return str(self.path)
        steps = [str(self.hops[0].link)] + [str(h.target) for h in self.hops]
        return " -> ".join(steps)

    def fix(self) -> str:
        """The repair for a broken chain: mount the drive, or point the broken link at the real folder."""
        hop = self.broken
        if hop is None:
            return ""
        letter = unmounted_drive(self.missing) if self.missing else None
        if letter:
            return (f"the Windows drive {letter.upper()}: is not mounted in WSL: sudo mkdir -p /mnt/{letter} && sudo mount "
                    f"-t drvfs {letter.upper()}: /mnt/{letter} — or repoint the link: ln -sfn /real/model/folder "
                    f"{shlex.quote(str(hop.link))}")
        return (f"repoint the link at the real model folder: ln -sfn /real/model/folder {shlex.quote(str(hop.link))} "
                f"(or create {hop.target} and put the model there)")


def unmounted_drive(path: Path) -> str | None:
    """The drive letter when ``path`` is on a WSL drive folder (/mnt/f/...) that is missing or empty: the Windows
    drive is not mounted there."""
    drive = _DRIVE.match(str(path))
    if drive is None:
        return None
    mount = Path(f"/mnt/{drive.group(1)}")
    try:
        return None if mount.is_dir() and any(mount.iterdir()) else drive.group(1)
    except OSError:
        return drive.group(1)


def walk_links(path: Path) -> LinkChain:
    """Follow ``path`` component by component like the kernel does, recording every symlink met on the way."""
    chain = LinkChain(path)
    absolute = Path(os.path.abspath(os.path.expanduser(path)))
    current = Path(absolute.anchor)
    pending = list(absolute.parts[1:])
    while pending:
        candidate = current / pending.pop(0)
        if candidate.is_symlink():
            if len(chain.hops) >= MAX_LINKS:
                chain.loop, chain.missing = True, candidate
                return chain
            written = os.readlink(candidate)
            target = Path(os.path.normpath(current / written))
            chain.hops.append(Hop(candidate, written, target))
            current = Path(target.anchor)
            pending = list(target.parts[1:]) + pending
            continue
        if not os.path.lexists(candidate):
            chain.missing = candidate
            return chain
        current = candidate
    chain.resolved = current
    return chain
