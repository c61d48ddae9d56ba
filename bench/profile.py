"""Sampling profiles of the served app during a benchmark run (`bench/run.py --profile`).

py-spy (a dev dependency) samples every uvicorn worker of the app for the measured run, without
stopping it (`--nonblocking`). The collapsed stacks are merged into bench/results/profiles/<row>.txt
(one line per distinct stack: `frame;frame;... count`, loadable by speedscope or flamegraph.pl) and
summarised in <row>.summary.txt: where the workers' busy samples went by package (of the innermost
frame) and the functions with the most self and inclusive samples. Idle samples (the event loop
waiting) are not taken, so the shares are shares of the application's CPU, not of wall time.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# Innermost-frame file paths → a package name, first match wins.
_PACKAGES = (
    ("app/", "coopgig (app/)"), ("sqlalchemy/", "sqlalchemy"), ("asyncpg/", "asyncpg"),
    ("fastapi/", "fastapi"), ("starlette/", "starlette"), ("pydantic", "pydantic"), ("uvicorn/", "uvicorn"),
    ("httptools", "uvicorn"), ("uvloop", "uvloop"), ("stripe/", "stripe"), ("httpx/", "httpx"), ("httpcore/", "httpx"),
    ("jwt/", "pyjwt"), ("prometheus_client/", "prometheus_client"), ("greenlet", "greenlet"),
    ("json/", "json (stdlib)"), ("asyncio/", "asyncio (stdlib)"), ("logging/", "logging (stdlib)"),
)


def py_spy() -> str | None:
    here = Path(os.sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def processes():
    """(pid, command name, process group, user + system CPU seconds) of every live process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
            fields = rest.split()  # after "pid (comm)": state ppid pgrp session ... utime(11) stime(12)
        except (OSError, ValueError):
            continue  # the process went away
        yield int(stat.parent.name), head.split("(", 1)[-1], int(fields[2]), (int(fields[11]) + int(fields[12])) / tick


def worker_pids(pgid: int) -> list[int]:
    """The processes of a process group except its leader (uvicorn's supervisor)."""
    return sorted(pid for pid, _, group, _ in processes() if group == pgid and pid != pgid)


def start(pgid: int, seconds: float, out_dir: Path, slug: str, rate: int = 200) -> list[tuple[subprocess.Popen, Path]]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("--profile needs py-spy (a dev dependency: bash scripts/setup.sh)")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in worker_pids(pgid):
        raw = out_dir / f"{slug}.{pid}.raw"
        procs.append((subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", str(rate),
             "--nonblocking", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw))
    return procs


def finish(procs: list[tuple[subprocess.Popen, Path]], out_dir: Path, slug: str) -> str:
    stacks: Counter[str] = Counter()
    for proc, raw in procs:
        proc.wait(timeout=120)
        if raw.exists():
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit():
                    stacks[stack] += int(count)
            raw.unlink()
    merged = out_dir / f"{slug}.txt"
    merged.write_text("".join(f"{s} {n}\n" for s, n in stacks.most_common()))
    summary = summarize(stacks)
    (out_dir / f"{slug}.summary.txt").write_text(summary)
    return summary


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    return (m["func"], m["file"]) if m else (frame, "")


def _package(path: str) -> str:
    for needle, name in _PACKAGES:
        if needle in path:
            return name
    return "other"


def summarize(stacks: Counter[str], top: int = 30) -> str:
    total = sum(stacks.values())
    if not total:
        return "no samples (is the app busy? does py-spy have ptrace rights?)\n"
    by_pkg: Counter[str] = Counter()
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    app_incl: Counter[str] = Counter()
    for stack, n in stacks.items():
        frames = stack.split(";")
        func, path = _parse(frames[-1])
        by_pkg[_package(path)] += n
        self_t[f"{func} ({path})"] += n
        seen = set()
        for f in frames:
            fn, p = _parse(f)
            key = f"{fn} ({p})"
            if key not in seen:
                seen.add(key)
                incl[key] += n
                if p.startswith("app/") or "/app/" in p:
                    app_incl[key] += n
    out = [f"{total:,} busy samples\n", "by package (innermost frame):"]
    out += [f"  {n / total:6.1%}  {k}" for k, n in by_pkg.most_common()]
    out.append("\nself:")
    out += [f"  {n / total:6.1%}  {k}" for k, n in self_t.most_common(top)]
    out.append("\ninclusive, coopgig's own functions:")
    out += [f"  {n / total:6.1%}  {k}" for k, n in app_incl.most_common(top)]
    out.append("\ninclusive, all:")
    out += [f"  {n / total:6.1%}  {k}" for k, n in incl.most_common(top)]
    return "\n".join(out) + "\n"
