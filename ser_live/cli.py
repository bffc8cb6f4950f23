"""The ``ser-live`` command: the desktop app, live monitoring and file analysis."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ser_live import __version__, one_blas_thread
from ser_live.errors import SerLiveError

one_blas_thread()  # before anything loads NumPy

PROG = "ser-live"


def _device_arg(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="a .tflite model with its .json sidecar")
    parser.add_argument(
        "--smoothing",
        type=int,
        default=3,
        metavar="N",
        help="average the last N speech windows (1: off; default 3)",
    )
    parser.add_argument(
        "--vad",
        type=int,
        choices=range(4),
        metavar="0-3",
        help="VAD aggressiveness, 0 (keeps most) to 3 (strictest); default: the model's",
    )
    parser.add_argument(
        "--voice-shifts",
        action="store_true",
        help="also score each speech window 1 and 2 semitones higher and lower and average: "
        "about ten times the work per window, for the gain the model card states",
    )
    _add_second_opinion_options(parser)


def _add_second_opinion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--second-opinion",
        type=Path,
        nargs="?",
        const=True,
        metavar="ONNX",
        help="also hear each whole phrase with a second network and fuse it with ours "
        "(opt-in; without ONNX: models/dusha_ser.onnx, the Dusha network; its cost and "
        "gain are in the model card)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real-time speech emotion recognition. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser(
        "gui", help="open the desktop app (the default)", description="Open the desktop app."
    )
    gui.add_argument("--model", type=Path, help="a .tflite model with its .json sidecar")
    gui.add_argument("--file", type=Path, help="open this recording at start")
    _add_second_opinion_options(gui)

    sub.add_parser(
        "devices",
        help="list the audio input devices",
        description="List the audio input devices PortAudio sees.",
    )

    listen = sub.add_parser(
        "listen",
        help="monitor an input device from the terminal",
        description="Monitor an input device: one line per update, and the session CSV.",
    )
    listen.add_argument(
        "--device",
        type=_device_arg,
        help="your side: input device index or name, pulse:SOURCE, or monitor "
        "(default: the system default input)",
    )
    listen.add_argument(
        "--other-device",
        type=_device_arg,
        metavar="DEVICE",
        help="the other side of a call, on its own engine: 'monitor' records what the "
        "computer plays (PulseAudio/PipeWire), or any input as for --device",
    )
    listen.add_argument("--speaker", default="you", help="your side's name in the log (you)")
    listen.add_argument(
        "--other-speaker", default="other", help="the other side's name in the log (other)"
    )
    listen.add_argument(
        "--csv",
        type=Path,
        help="write the session log here as it happens, and the call's cues beside it "
        "(NAME-cues.csv)",
    )
    _add_alerts_option(listen)
    listen.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of audio")
    listen.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hear each side's voice relative to its own running statistics, and each "
        "phrase against that voice's earlier ones (one voice per side; default: as the "
        "model's sidecar says, off for the shipped model: see the model card)",
    )
    _add_model_options(listen)

    analyze = sub.add_parser(
        "analyze",
        help="analyse recordings",
        description="Analyse recordings (files and folders, recursively) through the live path.",
    )
    analyze.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    analyze.add_argument(
        "--manifest",
        type=Path,
        action="append",
        metavar="FILE",
        help="also analyse the files listed in FILE: one path per line, or a CSV with a "
        "'path' column; relative paths are relative to FILE's folder (repeatable)",
    )
    analyze.add_argument("--timeline", type=Path, metavar="FILE", help="CSV: one row per window")
    analyze.add_argument("--summary", type=Path, metavar="FILE", help="CSV: one row per file")
    analyze.add_argument(
        "--channels",
        choices=("mix", "split"),
        default="mix",
        help="mix: down-mix (default); split: each channel on its own",
    )
    analyze.add_argument(
        "--cues",
        type=Path,
        metavar="FILE",
        help="CSV: the conversation cues, one row per file and side (the channels with "
        "--channels split): talk, overlaps, interruptions, silences, pace",
    )
    _add_alerts_option(analyze)
    analyze.add_argument(
        "--alert-log",
        type=Path,
        metavar="FILE",
        help="CSV: each alert that fired, per file (file, side, at_s, rule, condition); "
        "the sides are 'mix', or the channels 1, 2, ... with --channels split",
    )
    analyze.add_argument(
        "--resume",
        action="store_true",
        help="skip the files the --summary already lists without error and append the "
        "rest to the outputs: an interrupted run goes on where it stopped",
    )
    analyze.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="analyse on a Ray cluster: 'local' (a private one for this run), 'auto' "
        "(the one 'ray start' runs on this machine) or ray://HOST:10001; every node needs "
        "ser-live[cluster] and the same paths (docs/cluster.md)",
    )
    analyze.add_argument("--no-progress", action="store_true", help="no progress bar")
    analyze.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="analyse N files at a time, one process each (default: one per core; with "
        "--ray, N actors, default one per CPU of the cluster)",
    )
    analyze.add_argument(
        "--calibrate",
        action="store_true",
        help="one voice per file (per channel with --channels split): hear it relative to "
        "its own running statistics and each phrase against its earlier ones, as listen "
        "does (off by default here)",
    )
    analyze.add_argument(
        "--voice-per-folder",
        action="store_true",
        help="the files in one folder are one speaker (per channel with --channels "
        "split): calibrate as --calibrate does, carrying the voice on from file to file "
        "in name order; results come grouped by folder",
    )
    _add_model_options(analyze)

    report = sub.add_parser(
        "report",
        help="summarise a session log as an HTML report",
        description="Summarise a session log (or an analyze --timeline table): time in "
        "speech, share of each emotion, the strongest moments and the markers, per side, "
        "as one self-contained HTML file.",
    )
    report.add_argument("log", type=Path, metavar="SESSION.csv")
    report.add_argument(
        "--out", type=Path, metavar="FILE", help="the HTML report (default: beside the log)"
    )

    web = sub.add_parser(
        "web",
        help="serve a web page that analyses uploaded recordings (the web extra)",
        description="Serve a local web page where recordings can be uploaded and their "
        "analysis seen and downloaded, as analyze does (needs ser-live[web]).",
    )
    web.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this computer only)",
    )
    web.add_argument("--port", type=int, default=8501, help="default 8501")
    web.add_argument(
        "--max-upload-mb", type=int, default=200, metavar="MB", help="per file (default 200)"
    )
    return parser


def _add_alerts_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alerts",
        type=Path,
        metavar="FILE",
        help="alert rules (TOML; docs/cues.md); default: the other side angry at 0.6 "
        "for 5 s, a silence over 10 s",
    )


def alert_rules(args, sides: list[str]):
    """The rules of ``--alerts`` (a bad file stops the command here), or the defaults:
    their "other side" is the last side (the one side, when there is one)."""
    from dataclasses import replace

    from ser_live.alerts import DEFAULT_RULES, load_rules

    if args.alerts is not None:
        return load_rules(args.alerts, sides)
    return [r if r.side is None else replace(r, side=sides[-1]) for r in DEFAULT_RULES]


def file_alert_rules(args, split: bool):
    """``analyze``'s rules, checked on each file's sides: 'mix', or the channels by number
    with ``--channels split``. A recording does not say which side is the other party,
    so the default anger rule holds for any side. Empty: no rules asked for."""
    from ser_live.alerts import FILE_RULES, load_rules
    from ser_live.audio_io import MAX_CHANNELS

    if args.alerts is None and args.alert_log is None:
        return []
    if args.alerts is not None:
        sides = [str(c) for c in range(1, MAX_CHANNELS + 1)] if split else ["mix"]
        return load_rules(args.alerts, sides)
    return list(FILE_RULES)


def second_opinion_path(args) -> Path | None:
    """The second opinion's file where one was asked for and can run here (else the user
    is told once, and the networks run alone); None without one."""
    from ser_live.errors import ModelError
    from ser_live.second_opinion import load_second_opinion

    if not args.second_opinion:
        return None
    try:
        wanted = None if args.second_opinion is True else args.second_opinion
        return load_second_opinion(wanted).path
    except ModelError as exc:
        print(f"{PROG}: {exc}; running without the second opinion", file=sys.stderr, flush=True)
        return None


def _engine_options(args, background_phrases: bool = False):
    from ser_live.analysis import EngineOptions

    if args.smoothing < 1:
        raise SerLiveError("--smoothing must be at least 1")
    return EngineOptions(
        args.model,
        args.smoothing,
        args.vad,
        args.voice_shifts,
        args.calibrate,
        second_opinion_path(args),
        background_phrases,
    )


def _engine(args):
    return _engine_options(args).build()


def cmd_devices(args) -> int:
    from ser_live import pulse
    from ser_live.sources import input_devices

    devices = input_devices()
    sources = pulse.pulse_sources() if pulse.available() else []
    if not devices and not sources:
        print("no audio input devices found", file=sys.stderr)
        return 1
    for d in devices:
        print(
            f"{d['index']:3d}  {d['name']}  ({d['hostapi']}, {d['channels']} ch, "
            f"{d['samplerate']:.0f} Hz)"
        )
    if sources:
        print("PulseAudio/PipeWire sources (--device pulse:NAME; 'monitor': the default output's):")
        for s in sources:
            kind = ", output monitor" if s["monitor"] else ""
            print(f"     {pulse.PREFIX}{s['name']}  ({s['description']}{kind})")
    return 0


def cmd_listen(args) -> int:
    from ser_live.conversation import CallMonitor, cues_path
    from ser_live.session import LiveSession
    from ser_live.session_log import SessionLog
    from ser_live.sources import open_source

    if args.speaker == args.other_speaker:
        raise SerLiveError("the two sides need different names (--speaker, --other-speaker)")
    wanted = [(args.speaker, args.device)]
    if args.other_device is not None:
        wanted.append((args.other_speaker, args.other_device))
    options = _engine_options(args, background_phrases=True)
    rules = alert_rules(args, [speaker for speaker, _ in wanted])  # before anything opens
    sides: dict[str, LiveSession] = {}
    log = monitor = None
    sources = [(speaker, open_source(device)) for speaker, device in wanted]
    try:
        engines = [options.build() for _ in sources]
        engines[0].warm_up()
        log = SessionLog(args.csv, engines[0].labels) if args.csv else None
        for (speaker, source), engine in zip(sources, engines, strict=True):
            side_log = log.side(speaker, source.name) if log else None
            sides[speaker] = LiveSession(engine, source, side_log, duration_s=args.duration)
        monitor = CallMonitor(
            {speaker: s.engine.activity for speaker, s in sides.items()},
            rules,
            log,
            cues_path(args.csv) if args.csv else None,
        )
    except BaseException:
        for _, source in sources:
            source.stop()
        if log:
            log.close()
        raise
    two = len(sides) > 1
    names = " and ".join(
        f"{s.source.name!r}" + (f" ({k})" if two else "") for k, s in sides.items()
    )
    print(f"listening on {names}; Ctrl+C stops", file=sys.stderr, flush=True)

    def show(speaker: str, update) -> None:
        who = f"{speaker:<8} " if two else ""
        if update.speech:
            print(
                f"{update.end_s:8.1f}s  {who}speech   {update.emotion:<10} {update.confidence:.2f}",
                flush=True,
            )
        else:
            print(f"{update.end_s:8.1f}s  {who}silence", flush=True)

    def show_phrase(speaker: str, verdict) -> None:
        who = f"{speaker:<8} " if two else ""
        print(
            f"{verdict.end_s:8.1f}s  {who}phrase   {verdict.emotion:<10} "
            f"{verdict.confidence:.2f}  ({verdict.start_s:.1f}-{verdict.end_s:.1f}s)",
            flush=True,
        )

    def show_alerts(alerts) -> None:
        for alert in alerts:
            who = f"{alert.side:<8} " if two and alert.side else ("" if not two else " " * 9)
            print(
                f"{alert.at_s:8.1f}s  {who}ALERT    {alert.rule.name} ({alert.rule.describe()})",
                flush=True,
            )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failed = []
    for session in sides.values():
        session.start()  # logs "started" for its side
    try:
        running = dict(sides)
        while running:
            if stop.wait(0.05):
                break
            for speaker, session in list(running.items()):
                alive = session.running
                for update in session.pop_updates()[0]:
                    show(speaker, update)
                    show_alerts(monitor.on_update(speaker, update))
                for verdict in session.pop_phrases():
                    show_phrase(speaker, verdict)
                if not alive:
                    del running[speaker]
                    if session.error is not None:  # the other side carries on
                        failed.append(speaker)
                        print(
                            f"{PROG}: error: {speaker + ': ' if two else ''}{session.error}",
                            file=sys.stderr,
                            flush=True,
                        )
            show_alerts(monitor.poll())
    except KeyboardInterrupt:
        pass
    finally:
        for speaker, session in sides.items():
            session.stop()
            for update in session.pop_updates()[0]:
                show(speaker, update)
                show_alerts(monitor.on_update(speaker, update))
            for verdict in session.pop_phrases():
                show_phrase(speaker, verdict)
        show_alerts(monitor.poll(final=True))
        monitor.close()
        if log:
            log.close()
    return 1 if failed else 0


def cmd_analyze(args) -> int:
    from tqdm import tqdm

    from ser_live.analysis import Task, analyze_many, by_voice, channel_count, find_audio_files
    from ser_live.batch import BatchOutputs, read_manifest

    if args.jobs is not None and args.jobs < 1:
        raise SerLiveError("--jobs must be at least 1")
    args.calibrate = args.calibrate or args.voice_per_folder
    options = _engine_options(args)
    engine = options.build()  # checks the model here, before any worker starts
    labels = engine.labels
    split = args.channels == "split"
    outputs = BatchOutputs(
        labels,
        split,
        args.timeline,
        args.summary,
        args.cues,
        alerts=args.alert_log,
        rules=file_alert_rules(args, split),
    )
    paths = list(args.paths)
    for manifest in args.manifest or []:
        paths.extend(read_manifest(manifest))
    if not paths:
        raise SerLiveError("nothing to analyse: give files, folders or --manifest")
    files = list(find_audio_files(paths))
    if not files:
        raise SerLiveError("no audio files found in " + ", ".join(map(str, paths)))
    # A file is the voice of the folder that holds its name, not of wherever a link to it
    # points: abspath, unlike resolve, leaves links alone.
    tasks = [
        Task(
            path,
            channel,
            f"{Path(os.path.abspath(path)).parent}|{channel}" if args.voice_per_folder else None,
        )
        for path in files
        for channel in (range(channel_count(path)) if split else [None])
    ]
    tasks = by_voice(tasks)  # one speaker's files in a row, for one engine to hear in turn
    todo = outputs.start(tasks, resume=args.resume)
    if args.resume and len(todo) < len(tasks):
        print(f"{PROG}: resuming: {len(tasks) - len(todo)} of {len(tasks)} done", file=sys.stderr)
    cluster = None
    if args.ray:
        from ser_live import cluster

        cluster.connect(args.ray, args.jobs if args.ray == "local" else None)
        results = cluster.analyze_on_ray(todo, options, args.jobs)
    else:
        results = analyze_many(todo, options, args.jobs, engine)
    failed = analysed = 0
    progress = tqdm(
        total=len(todo),
        unit="file",
        disable=args.no_progress or len(todo) < 2,
        file=sys.stderr,
        leave=False,
    )
    audio_s = 0.0
    try:
        for result in results:
            for shown, alert in outputs.write(result):
                who = f"  {alert.side}" if alert.side else ""
                progress.write(
                    f"{shown}  {alert.at_s:8.1f}s{who}  ALERT  {alert.rule.name} "
                    f"({alert.rule.describe()})"
                )
            progress.update()
            audio_s += result.duration_s
            elapsed = progress.format_dict["elapsed"]
            if elapsed > 0:
                progress.set_postfix_str(f"{audio_s / elapsed:.0f}x real time", refresh=False)
            if result.error:
                failed += 1
                progress.write(f"{PROG}: error: {result.error}", file=sys.stderr)
            else:
                analysed += 1
            if not result.error and not outputs.any:
                _print_verdict(result, labels, progress)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"{PROG}: interrupted after {failed + analysed} of {len(todo)} files; every "
            "row written is whole" + ("; run again with --resume to go on" if args.summary else ""),
            file=sys.stderr,
        )
        return 130
    finally:
        results.close()  # stops the workers or the actors
        progress.close()
        outputs.close()
        if cluster is not None:
            cluster.disconnect()
    if analysed == 0 and (todo or not args.resume):
        return 1
    if failed:
        print(f"{PROG}: {failed} of {failed + analysed} analyses failed", file=sys.stderr)
        return 3
    return 0


def _print_verdict(result, labels, progress) -> None:
    mean = result.speech_probabilities
    name = result.path + ("" if result.channel is None else f" [channel {result.channel + 1}]")
    if mean is None:
        verdict = "no speech"
    else:
        best = int(mean.argmax())
        verdict = f"{labels[best]} {mean[best]:.2f}"
    speech = f"{result.speech_s:.1f} s speech of {result.duration_s:.1f} s"
    progress.write(f"{name}: {verdict} ({speech})")


def cmd_report(args) -> int:
    from ser_live.report import write_report
    from ser_live.review import dominant, load_session, summarise_all

    record = load_session(args.log)
    out = write_report(record, args.out or args.log.with_suffix(".html"))
    for summary in summarise_all(record):
        top = dominant(summary)
        print(
            f"{summary.speaker}: {summary.speech_s:.1f} s of speech"
            + (f", mostly {top} ({summary.shares[top]:.0%})" if top else "")
        )
    print(f"{len(record.markers)} markers; report: {out}")
    return 0


def cmd_gui(args) -> int:
    from ser_live.gui.app import run_app

    wanted = getattr(args, "second_opinion", None)
    return run_app(
        model_path=args.model,
        open_file=getattr(args, "file", None),
        second_opinion=None if wanted is True else wanted,
        use_second_opinion=bool(wanted),
    )


def cmd_web(args) -> int:
    from ser_live.web import serve

    return serve(args.host, args.port, args.max_upload_mb)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    handlers = {
        "devices": cmd_devices,
        "listen": cmd_listen,
        "analyze": cmd_analyze,
        "report": cmd_report,
        "gui": cmd_gui,
        "web": cmd_web,
    }
    if args.command is None:
        args.model, args.file, args.second_opinion = None, None, None
    try:
        return handlers[command](args)
    except SerLiveError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
