#!/usr/bin/env bash
# System and Python dependencies of the desktop app's tests (tests/ui, tests/platform).
# Idempotent: safe to run again; installs only what is missing. Needs root for apt (CI runs as
# root); pass --no-apt to skip the apt part. Uses the active Python environment for pip.
set -euo pipefail

APT_PACKAGES=(
  xvfb                          # the X server the X11 tests start (Xvfb -displayfd)
  libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0  # Qt's xcb platform plugin
  fonts-wqy-microhei            # CJK glyphs in screenshots (else tofu)
  libportaudio2                 # sounddevice's PortAudio
  pulseaudio pulseaudio-utils libasound2-plugins  # the virtual microphone test (null sink, paplay, ALSA->pulse)
  libpulse0                     # (pulled in above; listed for QtMultimedia users)
  xdotool x11-utils             # debugging only: xdotool, xdpyinfo, xwininfo
)
PIP_PACKAGES=(
  "PySide6==6.12.0"             # the app itself needs only PySide6-Essentials (Core/Gui/Widgets/Network)
  "sounddevice>=0.5"
  "python-xlib>=0.33"
  "huggingface_hub>=0.30"
  "platformdirs>=4"
  "pytest-qt>=4.4"
)

if [[ "${1:-}" != "--no-apt" ]]; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "ui-deps: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "ui-deps: apt packages already installed"
  fi
fi

python -m pip install -q "${PIP_PACKAGES[@]}"
python - <<'PY'
import PySide6, sounddevice, Xlib, huggingface_hub  # noqa: F401  (fail here, not in the tests)
print("ui-deps: PySide6", PySide6.__version__, "| PortAudio", sounddevice.get_portaudio_version()[1])
PY
