"""What the machine has: NVIDIA GPUs (NVML, nvidia-smi, or figures given for testing), RAM, WSL2."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GIB = 1024**3
#: Environment variable that states the GPU memory in GB (for machines without a GPU, and tests).
GPU_MEMORY_ENV = "SAIJIN_GPU_MEMORY_GB"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU's memory, in bytes; ``source`` says where the figures came from."""

    index: int
    name: str
    total_bytes: int
    used_bytes: int | None
    source: str

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GIB


def stated_gpu(memory_gb: float | None = None) -> GpuInfo | None:
    """A GPU described by ``--gpu-memory-gb`` or $SAIJIN_GPU_MEMORY_GB, or None when neither is given."""
    source = "--gpu-memory-gb"
    if memory_gb is None:
        text = os.environ.get(GPU_MEMORY_ENV, "").strip()
        if not text:
            return None
        try:
            memory_gb = float(text)
        except ValueError:
            log.warning("%s=%r is not a number of GB; ignored", GPU_MEMORY_ENV, text)
            return None
        source = GPU_MEMORY_ENV
    return GpuInfo(0, f"stated {memory_gb:g} GB GPU", int(memory_gb * GIB), None, source)


def detect_gpus(memory_gb: float | None = None) -> list[GpuInfo]:
    """The GPUs to plan for: a stated size first, else NVML, else nvidia-smi; [] when there is none."""
    stated = stated_gpu(memory_gb)
    if stated is not None:
        return [stated]
    return _nvml_gpus() or _nvidia_smi_gpus()


def _nvml_gpus() -> list[GpuInfo]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(GpuInfo(index, name, int(memory.total), int(memory.used), "NVML"))
        return gpus
    except Exception as exc:
        log.debug("NVML query failed: %s", exc)
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _nvidia_smi_gpus() -> list[GpuInfo]:
    exe = shutil.which("nvidia-smi") or ("/usr/lib/wsl/lib/nvidia-smi" if Path("/usr/lib/wsl/lib/nvidia-smi").exists()
                                         else None)
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Rows of ``index, name, memory.total [MiB], memory.used [MiB]`` -> GpuInfo."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        try:
            gpus.append(GpuInfo(int(parts[0]), parts[1], int(float(parts[2]) * 1024**2), int(float(parts[3]) * 1024**2),
                                "nvidia-smi"))
        except ValueError:
            continue
    return gpus


def is_wsl(osrelease: str | None = None) -> bool:
    """True under Windows Subsystem for Linux (the kernel release names Microsoft)."""
    if osrelease is None:
        if os.environ.get("WSL_DISTRO_NAME"):
            return True
        try:
            osrelease = Path("/proc/sys/kernel/osrelease").read_text()
        except OSError:
            return False
    return "microsoft" in osrelease.lower() or "wsl" in osrelease.lower()


_WINDOWS_DRIVE = re.compile(r"^/mnt/[a-zA-Z](/|$)")


def on_windows_drive(path: str | os.PathLike[str]) -> bool:
    """True for paths on a Windows drive mounted into WSL (/mnt/c/...), which read slowly."""
    return bool(_WINDOWS_DRIVE.match(str(path)))


def systemd_running() -> bool:
    """True when systemd is PID 1 (so `systemctl --user` can work)."""
    return Path("/run/systemd/system").is_dir()
