#!/usr/bin/env bash
# Make sure a PulseAudio server with a null sink "ser_live_sink" is running, so PortAudio
# (through ALSA's pulse plugin) has a real input device: the sink's monitor records what
# paplay plays into the sink. On a machine with no sound server (CI) it starts one and
# makes the sink the default; on a desktop it only adds the sink and changes no defaults.
# Safe to run twice. Used by `make test`; by hand: `bash tests/audio_env.sh`.
set -u
started=0
if ! pactl info >/dev/null 2>&1; then
    args=(-n --exit-idle-time=-1 --daemonize=yes --disallow-exit --load=module-native-protocol-unix
          --load=module-always-sink)
    [ "$(id -u)" = 0 ] && args+=(--system=no)
    pulseaudio "${args[@]}" 2>/tmp/ser-live-pulseaudio.log || {
        echo "audio_env: pulseaudio failed to start (see /tmp/ser-live-pulseaudio.log)" >&2
        exit 1
    }
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
    started=1
fi
if ! pactl list short sinks | grep -q "ser_live_sink"; then
    pactl load-module module-null-sink sink_name=ser_live_sink \
        sink_properties=device.description=ser-live-null-sink >/dev/null || exit 1
fi
if [ "$started" = 1 ]; then
    pactl set-default-sink ser_live_sink
    pactl set-default-source ser_live_sink.monitor
fi
pactl info >/dev/null
