#!/usr/bin/env bash
# Installs the system packages ser-live needs on Debian/Ubuntu: PortAudio, ALSA's PulseAudio
# plugin, parec/pactl (to record the other side of a call) and Qt's X11/EGL libraries; with
# --test also the PulseAudio server the device tests play into. As root it runs apt-get;
# otherwise it prints the exact command and fails.
set -euo pipefail
packages=(libportaudio2 libasound2-plugins pulseaudio-utils libegl1 libgl1 libglib2.0-0 libfontconfig1
    libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
    libxcb-shape0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1)
if [ "${1:-}" = "--test" ]; then
    packages+=(pulseaudio pulseaudio-utils xvfb xauth stress-ng chromium chromium-driver)
fi
if [ "$(uname -s)" != Linux ]; then
    echo "system-deps: not Linux; install PortAudio with your package manager (macOS: brew install portaudio)"
    exit 0
fi
if ! command -v dpkg >/dev/null 2>&1; then
    echo "system-deps: not a Debian-based system; install PortAudio, PulseAudio and Qt's X11 libraries yourself" >&2
    exit 0
fi
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "ser-live needs these system packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
