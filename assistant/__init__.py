"""Saijin: a local, voice-first desktop companion."""

import os as _os

# DESIGN §7: no connection leaves the machine except to the configured engines. Libraries that phone home
# by default are told not to before any of them loads: ONNX Runtime (under Piper and Kokoro) sends usage
# telemetry to Microsoft from its sessions; the Hugging Face hub reports downloads. A value already set wins.
for _name in ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK"):
    _os.environ.setdefault(_name, "1")
