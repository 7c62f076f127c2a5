"""Optional py-spy profiles of myqueue's processes during a workload (``--profile DIR``).

``record`` runs ``py-spy record -p PID --gil`` (speedscope JSON) for the duration of a ``with``
block and stops it with SIGINT, which makes py-spy write the file; ``summary`` turns such a file
into the functions with the most samples (self and inclusive), over all threads. Open the JSON in
speedscope for the flame graph.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from . import procs


@contextlib.contextmanager
def record(pid: int | None, out: Path | None, *, rate: int = 200, gil: bool = True):
    """Profile ``pid`` while the block runs; a no-op when ``out`` or ``pid`` is None or py-spy is missing.
    ``gil``: sample only the thread holding the GIL, i.e. where the process spends CPU in Python
    (threads waiting on sockets and conditions drop out)."""
    if out is None or pid is None or not shutil.which("py-spy"):
        yield None
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "py-spy",
        "record",
        "-p",
        str(pid),
        "-o",
        str(out),
        "--format",
        "speedscope",
        "-r",
        str(rate),
        "--nonblocking",
    ] + (["--gil"] if gil else [])
    server = procs.Server(f"py-spy {pid}", argv, out.with_suffix(".log"), grace_s=30)
    try:
        yield out
    finally:
        if server.popen.poll() is None:
            os.kill(server.pid, signal.SIGINT)
            try:
                server.popen.wait(30)
            except subprocess.TimeoutExpired:
                pass
        server.stop()


def summary(path: Path, top: int = 15) -> str:
    """The ``top`` functions by self samples and by inclusive samples, as text."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    self_counts: Counter = Counter()
    total_counts: Counter = Counter()
    samples = 0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=False):
            samples += weight
            if not stack:
                continue
            self_counts[_name(frames[stack[-1]])] += weight
            for name in {_name(frames[i]) for i in stack}:
                total_counts[name] += weight
    lines = [f"{path.name}: {samples:.2f} s of samples"]
    lines.append("  self%  function")
    lines += [f"  {100 * n / samples:5.1f}  {name}" for name, n in self_counts.most_common(top)]
    lines.append("  incl%  function")
    lines += [f"  {100 * n / samples:5.1f}  {name}" for name, n in total_counts.most_common(top)]
    return "\n".join(lines)


def _name(frame: dict) -> str:
    file = frame.get("file") or ""
    short = "/".join(file.split("/")[-2:]) if file else "?"
    return f"{frame.get('name', '?')} ({short}:{frame.get('line', '?')})"
