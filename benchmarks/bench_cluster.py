"""Cluster benchmark: ``analyze --ray`` beside ``analyze --jobs`` on the same archive.

``make bench-cluster`` builds an archive of short clips (the test fixtures, linked many
times over: calls cut into phrases are short), starts a Ray head on this machine with 2
CPUs, and analyses the archive four ways in this process, as ``analyze`` does: local
``--jobs 1`` and ``--jobs 2``, and Ray with 1 and 2 actors. For each it prints files per
second and × real time, both over the whole run (pool or actors started inside it) and
in the steady state (from the first result to the last: what an archive of thousands of
hours sees), and Ray's throughput as a ratio of the local one with as many workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ser_live import cluster
from ser_live.analysis import EngineOptions, Task, analyze_many, find_audio_files

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "corpus"


def archive(folder: Path, n_files: int) -> tuple[list[Path], float]:
    """``n_files`` links to the fixture clips; (their paths, their audio seconds)."""
    clips = sorted(find_audio_files([FIXTURES]))
    seconds = {clip: sf.info(str(clip)).duration for clip in clips}
    files, total = [], 0.0
    for k in range(n_files):
        clip = clips[k % len(clips)]
        link = folder / f"{k:05d}{clip.suffix}"
        link.symlink_to(clip)
        files.append(link)
        total += seconds[clip]
    return files, total


def timed(results) -> tuple[float, float, int]:
    """(whole run s, first-to-last result s, results) of a results iterator."""
    start = time.perf_counter()
    first = None
    count = 0
    for _ in results:
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return end - start, end - (first or start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="clips in the archive (2000)")
    args = parser.parse_args()
    options = EngineOptions()
    with tempfile.TemporaryDirectory() as tmp:
        files, audio_s = archive(Path(tmp), args.files)
        tasks = [Task(f) for f in files]
        per_file_s = audio_s / len(files)
        print(
            f"archive: {len(files)} clips, {audio_s / 3600:.2f} h of audio, "
            f"{per_file_s:.1f} s each on average"
        )
        rows = {}
        for jobs in (1, 2):
            rows[f"local --jobs {jobs}"] = timed(analyze_many(tasks, options, jobs))
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        ray = str(Path(sys.executable).parent / "ray")
        start = [ray, "start", "--head", "--node-ip-address=127.0.0.1", "--port=6391"]
        start += ["--num-cpus=2", "--include-dashboard=false", "--object-store-memory=100000000"]
        subprocess.run(start, check=True, capture_output=True, env=env)
        try:
            cluster.connect("127.0.0.1:6391")
            for workers in (1, 2):
                rows[f"Ray, {workers} actors"] = timed(
                    cluster.analyze_on_ray(tasks, options, workers)
                )
            cluster.disconnect()
        finally:
            subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)
    n = len(files)
    print(f"{'':16} {'files/s':>8} {'x real time':>12} {'steady files/s':>15} {'steady x':>9}")
    for name, (whole, steady, count) in rows.items():
        assert count == n, f"{name}: {count} results of {n}"
        steady_n = n - 1
        print(
            f"{name:16} {n / whole:8.1f} {audio_s / whole:12.0f} "
            f"{steady_n / steady:15.1f} {steady_n * per_file_s / steady:9.0f}"
        )
    for workers in (1, 2):
        local = rows[f"local --jobs {workers}"]
        on_ray = rows[f"Ray, {workers} actors"]
        print(
            f"Ray / local with {workers} worker(s): whole run {local[0] / on_ray[0]:.2f}, "
            f"steady {local[1] / on_ray[1]:.2f}"
        )


if __name__ == "__main__":
    main()
