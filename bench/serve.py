"""Serve an ASGI app with N uvicorn processes, each on its OWN listening socket bound to the same
port with SO_REUSEPORT, so that the kernel spreads connections over the processes by hash.

    python bench/serve.py app.main:app --port 8001 --workers 2 [--no-access-log ...]

Why not `uvicorn --workers N`: its workers share one listening socket, and wrk opens its 32
keep-alive connections at once, at the start of a run: the kernel may hand most or all of them to
whichever worker wakes first. That worker saturates one core while the other idles, and the row
measures the accept race, not the code (seen: the same commit at 0.17 and 0.28 of its reference,
the low run at exactly one core's worth of requests). With one socket per process, each
connection goes to a socket by the hash of its addresses: 32 connections split about evenly.

This process is the group leader and supervisor (bench/run.py stops the whole process group, and
takes the group's other processes for the workers); each worker is this script again with
`--worker-fd K`, running `uvicorn.Server(...).run(sockets=[its socket])`. (Not `uvicorn --fd`: it
takes the descriptor for a Unix socket, so asyncio leaves Nagle's algorithm on for the TCP
connections, and every answer waits ~40 ms for a delayed ACK.) SIGTERM or SIGINT is passed on to the
workers; it exits when they have.
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys


def worker(app: str, fd: int, access_log: bool) -> int:
    import os

    import uvicorn

    sys.path.insert(0, os.getcwd())  # as `python -m uvicorn` does: the app is imported from the working directory

    sock = socket.socket(fileno=fd)  # family and type read from the descriptor: AF_INET, so TCP_NODELAY
    uvicorn.Server(uvicorn.Config(app, access_log=access_log)).run(sockets=[sock])
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--no-access-log", action="store_true")
    p.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker_fd is not None:
        return worker(args.app, args.worker_fd, access_log=not args.no_access_log)
    if args.port is None:
        p.error("--port is required")
    sockets = []
    for _ in range(args.workers):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)
        sock.set_inheritable(True)
        sockets.append(sock)
    extra = ["--no-access-log"] if args.no_access_log else []
    workers = [subprocess.Popen([sys.executable, __file__, args.app, "--worker-fd", str(sock.fileno()), *extra],
                                pass_fds=(sock.fileno(),))
               for sock in sockets]
    for sock in sockets:
        sock.close()  # the workers hold their own copies

    def stop(signum, _frame) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [worker.wait() for worker in workers]
    return max((abs(c) for c in codes), default=0)


if __name__ == "__main__":
    sys.exit(main())
