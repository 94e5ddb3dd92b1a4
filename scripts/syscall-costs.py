#!/usr/bin/env python3
"""Prices the system calls a durable, broadcast op cannot avoid on this machine: fdatasync of a
small append, syncfs after small appends to many files, and send() of a small frame over loopback
TCP. CPU is the calling process's user + system time (getrusage), so it is what a node pays.

Usage: scripts/syscall-costs.py [DIR]   (DIR: where to write test files, default: a temp dir under
./target; use the file system the node's data dir is on). Prints one line per measurement.
Figures and what they imply: docs/BENCHMARKS.md, "What limits each figure".
"""
import ctypes
import os
import resource
import socket
import sys
import tempfile
import time


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fdatasync_append(dir_, preallocated, n=2000, size=200):
    path = os.path.join(dir_, "prealloc" if preallocated else "growing")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        if preallocated:
            os.write(fd, b"\0" * (1 << 20))
            os.fdatasync(fd)
        c0, t0, off = cpu(), time.perf_counter(), 0
        for _ in range(n):
            os.pwrite(fd, b"x" * size, off)
            off += size
            os.fdatasync(fd)
        wall, used = time.perf_counter() - t0, cpu() - c0
    finally:
        os.close(fd)
    kind = "into a preallocated file" if preallocated else "growing the file"
    print(f"fdatasync after a {size} B append {kind}: CPU {used / n * 1e6:.1f} us, wall {wall / n * 1e6:.1f} us per call")


def many_files(dir_, files=100, rounds=20, size=200):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fds = [os.open(os.path.join(dir_, f"doc{i}"), os.O_RDWR | os.O_CREAT | os.O_TRUNC) for i in range(files)]
    try:
        for fd in fds:
            os.write(fd, b"h" * 64)
            os.fsync(fd)
        for mode in ("fdatasync each", "one syncfs"):
            c0, t0 = cpu(), time.perf_counter()
            for _ in range(rounds):
                for fd in fds:
                    os.write(fd, b"x" * size)
                if mode == "fdatasync each":
                    for fd in fds:
                        os.fdatasync(fd)
                elif libc.syncfs(fds[0]) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs")
            n = rounds * files
            print(f"{files} files, a {size} B append each, then {mode}: CPU {(cpu() - c0) / n * 1e6:.1f} us, "
                  f"wall {(time.perf_counter() - t0) / n * 1e6:.1f} us per append")
    finally:
        for fd in fds:
            os.close(fd)


def loopback_send(size, n=100_000):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the reader: drains as fast as it can
        c = socket.create_connection(("127.0.0.1", port))
        while c.recv(65536):
            pass
        os._exit(0)
    s, _ = listener.accept()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    c0 = cpu()
    for _ in range(n):
        pass
    loop = cpu() - c0
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(n):
        s.send(msg)
    used = cpu() - c0 - loop
    print(f"send() of {size} B over loopback TCP (TCP_NODELAY, a busy reader): CPU {used / n * 1e6:.2f} us, "
          f"wall {(time.perf_counter() - t0) / n * 1e6:.2f} us per call")
    s.close()
    listener.close()
    os.waitpid(pid, 0)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else None
    if base is None:
        os.makedirs("target", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base or "target") as dir_:
        for preallocated in (False, True):
            fdatasync_append(dir_, preallocated)
        many_files(dir_)
    for size in (150, 1500):
        loopback_send(size)


if __name__ == "__main__":
    main()
