"""Which sound device the microphone and the speaker use, and keeping ALSA's chatter off the user's screen.

A configured device (``audio.input_device`` / ``audio.output_device``) is a PortAudio device (index or name),
or the name or description of a PulseAudio source/sink ("mic feed", "room"): PortAudio sees a PulseAudio
server (WSLg, PipeWire's pulse server, a desktop's PulseAudio) only as the ALSA device ``pulse``, so a
PulseAudio device is opened as ``pulse`` with ``PULSE_SOURCE`` / ``PULSE_SINK`` naming the stream's device.
The PulseAudio devices are listed with ``pactl`` (pulseaudio-utils) when it is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Literal

from assistant.errors import SaijinError

log = logging.getLogger(__name__)
alsa_log = logging.getLogger("assistant.audio.alsa")

Kind = Literal["input", "output"]
_PULSE_ENV = {"input": "PULSE_SOURCE", "output": "PULSE_SINK"}
_PACTL_LIST = {"input": "sources", "output": "sinks"}


@dataclass(frozen=True, slots=True)
class PulseDevice:
    """A PulseAudio source (input) or sink (output) as ``pactl`` lists it."""

    name: str
    description: str
    is_monitor: bool = False


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The device a stream opens: ``portaudio`` for sounddevice (None: the default), and the PulseAudio
    device it is routed to (``pulse``, or None), with a label for people."""

    kind: Kind
    portaudio: str | int | None
    pulse: str | None
    label: str

    def apply(self) -> None:
        """Point the next stream of this kind at the PulseAudio device (libpulse reads it from the environment)."""
        if self.pulse is not None:
            os.environ[_PULSE_ENV[self.kind]] = self.pulse


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-.]+", "", text.lower())


def pulse_devices(kind: Kind, timeout_s: float = 3.0) -> list[PulseDevice]:
    """The PulseAudio server's sources or sinks; empty when there is no server or no ``pactl``."""
    pactl = shutil.which("pactl")
    if pactl is None:
        return []
    try:
        proc = subprocess.run([pactl, "-f", "json", "list", _PACTL_LIST[kind]], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
        rows = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        log.debug("pactl could not list the %s", _PACTL_LIST[kind], exc_info=True)
        return []
    devices = []
    for row in rows if isinstance(rows, list) else []:
        name = str(row.get("name", ""))
        monitor_of = row.get("monitor_of_sink") if kind == "input" else None
        devices.append(PulseDevice(name, str(row.get("description", name)),
                                   is_monitor=bool(monitor_of and monitor_of != "n/a") or name.endswith(".monitor")))
    return devices


def match_pulse(wanted: str, devices: list[PulseDevice]) -> PulseDevice | None:
    """The device called ``wanted`` (name or description, ignoring case, spaces and punctuation): an exact
    match first, then the only device whose name or description contains it (real devices before monitors)."""
    key = _squash(wanted)
    if not key:
        return None
    for device in devices:
        if key in (_squash(device.name), _squash(device.description)):
            return device
    found = [d for d in devices if key in _squash(d.name) or key in _squash(d.description)]
    real = [d for d in found if not d.is_monitor]
    for group in (real, found):
        if len(group) == 1:
            return group[0]
    return None


def _portaudio(sd: Any, wanted: str | int | None, kind: Kind) -> dict[str, Any] | None:
    try:
        return dict(sd.query_devices(wanted, kind=kind))
    except (ValueError, sd.PortAudioError):
        return None


def choose_device(wanted: str | int | None, kind: Kind, sd: Any) -> DeviceChoice:
    """The device ``audio.input_device`` / ``audio.output_device`` names, or a SaijinError saying which exist."""
    setting = f"audio.{kind}_device"
    if wanted is None or isinstance(wanted, int):
        info = _portaudio(sd, wanted, kind)
        if info is None:
            what = "no default" if wanted is None else f"no {kind} device number {wanted}"
            raise SaijinError(f"{what} {kind} device ({_available(sd, kind)}) — set {setting} in "
                              f"config/assistant.yaml, or check the sound server with `saijin doctor`")
        return DeviceChoice(kind, wanted, None, str(info.get("name", "default")))
    info = _portaudio(sd, wanted, kind)
    if info is not None:
        return DeviceChoice(kind, wanted, None, str(info.get("name", wanted)))
    pulse = match_pulse(wanted, pulse_devices(kind))
    if pulse is not None:
        via = "pulse" if _portaudio(sd, "pulse", kind) is not None else None
        if via is None:
            raise SaijinError(f"{setting} {wanted!r} is a PulseAudio device, but PortAudio has no ALSA 'pulse' "
                              f"device — install the ALSA pulse plugin (apt-get install libasound2-plugins)")
        return DeviceChoice(kind, via, pulse.name, f"{pulse.description} ({pulse.name}, PulseAudio through the pulse device)")
    names = available_names(sd, kind)
    if not names:
        raise SaijinError(f"{setting} {wanted!r} not found: there are no {kind} devices at all — is the sound "
                          f"server running? (`pactl info`, `saijin doctor`)")
    raise SaijinError(f"{setting} {wanted!r} not found (have: {', '.join(names)}) — set it to one of those, "
                      f"or null for the default")


def available_names(sd: Any, kind: Kind) -> list[str]:
    """Every device name a setting may use: PortAudio's, then PulseAudio's."""
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    try:
        names = [str(d["name"]) for d in sd.query_devices() if d.get(channels, 0) > 0]
    except Exception:
        names = []
    return names + [d.name for d in pulse_devices(kind)]


def _available(sd: Any, kind: Kind) -> str:
    names = available_names(sd, kind)
    return f"have: {', '.join(names)}" if names else f"no {kind} devices at all"


def describe_devices(input_device: str | int | None, output_device: str | int | None) -> list[tuple[str, bool, str]]:
    """For the doctor: (role, found, the device it would use or why not) for the microphone and the speaker."""
    try:
        import sounddevice as sd
    except (ImportError, OSError):
        return []
    lines = []
    for role, kind, wanted in (("microphone", "input", input_device), ("speaker", "output", output_device)):
        try:
            choice = choose_device(wanted, kind, sd)  # type: ignore[arg-type]
            lines.append((role, True, choice.label))
        except SaijinError as exc:
            lines.append((role, False, str(exc)))
    return lines


# --------------------------------------------------------------------------------------------------
# ALSA's messages ("ALSA lib pcm.c:8570:(snd_pcm_recover) underrun occurred") go to the log
# --------------------------------------------------------------------------------------------------

_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
_installed: list[Any] = []
_install_lock = threading.Lock()


def _alsa_message(file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
    # The format's arguments (C varargs) cannot be read from here; the format names the event well enough.
    def text(raw: bytes | None) -> str:
        return raw.decode("utf-8", "replace") if raw else "?"

    alsa_log.debug("ALSA %s:%d (%s) %s%s", text(file), line, text(function), text(fmt).strip(),
                   f" [error {err}]" if err else "")


def quiet_alsa() -> bool:
    """Send alsa-lib's error messages to the log instead of stderr (once per process); False without ALSA."""
    with _install_lock:
        if _installed:
            return True
        name = ctypes.util.find_library("asound")
        if name is None:
            return False
        try:
            lib = ctypes.CDLL(name)
            handler = _ALSA_HANDLER(_alsa_message)
            lib.snd_lib_error_set_handler(handler)
        except (OSError, AttributeError):
            log.debug("cannot redirect ALSA's messages", exc_info=True)
            return False
        _installed.append(handler)  # the C library keeps calling it: it must live as long as the process
        return True
