#!/usr/bin/env bash
# Start a PulseAudio server with a null sink, so PortAudio (through ALSA's pulse plugin)
# has a real input device: the sink's monitor records whatever paplay plays into the sink.
# Safe to run twice. Used by `make test`; also handy by hand: `source tests/audio_env.sh`.
set -u
if ! pactl info >/dev/null 2>&1; then
    args=(--exit-idle-time=-1 --daemonize=yes --log-target=stderr --disallow-exit)
    [ "$(id -u)" = 0 ] && args+=(--system=no)
    pulseaudio "${args[@]}" -n \
        --load="module-null-sink sink_name=ser_live_sink sink_properties=device.description=ser-live-null-sink" \
        --load="module-native-protocol-unix" \
        --load="module-always-sink" 2>/tmp/ser-live-pulseaudio.log || {
        echo "audio_env: pulseaudio failed to start (see /tmp/ser-live-pulseaudio.log)" >&2
        return 1 2>/dev/null || exit 1
    }
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
fi
pactl set-default-sink ser_live_sink
pactl set-default-source ser_live_sink.monitor
