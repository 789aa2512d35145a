"""Turn a CPython base image's root filesystem into a run-only one (used by the Dockerfiles).

Runs as the last RUN of a build stage, with the stage's own python3, standard library only.
The final stage is `FROM scratch` + `COPY --from=<stage> / /`, so what is deleted here is
really gone from the image (deleting in a layer on top of the base would not shrink it).

What it does, in order:
1. refuses a Python whose tarfile lacks the extraction filters or the June 2025 fixes;
2. deletes every program in the bin/sbin directories except the Python interpreter (no shell,
   no package manager, no network tool), package manager data (keeping dpkg's status file, so
   image scanners still see the OS packages), docs, man pages and locales;
3. deletes parts of the standard library a server never imports (ensurepip, idlelib, tkinter,
   turtledemo, test, sqlite3 and the dbm C modules, with their shared libraries), glibc's iconv
   modules (gconv: Python decodes with its own codecs) and the base's site-packages (pip, setuptools);
4. precompiles the standard library and the given application directories to .pyc with
   unchecked-hash invalidation, so a read-only root filesystem with PYTHONDONTWRITEBYTECODE=1
   starts without compiling anything;
5. adds the non-root user 65532 to /etc/passwd and /etc/group;
6. checks that the modules a downloader/server needs still import;
7. copies the result to OUT (default /rootfs), without /proc, /sys, /dev, /run, the files the
   engine mounts (/etc/hosts, /etc/hostname, /etc/resolv.conf) and this script, for the final
   stage to take with `COPY --from=<stage> /rootfs /`.

Usage: python3 prune-rootfs.py [--compile DIR ...] [--keep-bin NAME ...] [--check-import MOD ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import compileall
import glob
import importlib
import os
import py_compile
import shutil
import sys
import sysconfig
import tarfile

UID = 65532
USER = "nonroot"
BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
REMOVE_GLOBS = (
    "/var/lib/apt",
    "/var/cache/*",
    "/var/log/*",
    "/etc/apt",
    "/etc/dpkg",
    "/usr/lib/apt",
    "/usr/lib/dpkg",
    "/usr/share/dpkg",
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
    "/usr/share/bash-completion",
    "/usr/share/zsh",
    "/usr/share/perl*",
    "/usr/lib/*/perl*",
    "/usr/lib/*/libapt-*",
    "/usr/share/debconf",
    "/var/lib/dpkg/info",
    "/var/lib/dpkg/triggers",
    "/var/lib/dpkg/alternatives",
    "/etc/alternatives",
    "/usr/share/python3",  # Debian's py3compile helpers
    "/usr/include",
    "/usr/local/include",
    "/usr/local/lib/libpython*.a",
    "/usr/local/share/man",
    "/usr/lib/*/gconv",  # glibc's iconv modules; Python's codecs are its own
    "/usr/lib/*/libsqlite3.so*",  # with the sqlite3 module (STDLIB_DROP)
    "/usr/lib/*/libdb-*.so",  # Berkeley DB, for _dbm only
    "/usr/lib/*/libgdbm*.so*",  # for _gdbm only
)
STDLIB_DROP = (
    "ensurepip",
    "idlelib",
    "tkinter",
    "turtledemo",
    "turtle.py",
    "test",
    "pydoc_data",
    "__phello__",
    "sqlite3",
)
DYNLOAD_DROP = ("_tkinter*", "_sqlite3*", "_dbm*", "_gdbm*")
"""C modules dropped with the libraries they need (dbm.dumb, pure Python, stays)."""
DEFAULT_IMPORTS = (
    "ssl",
    "hashlib",
    "tarfile",
    "zipfile",
    "zlib",
    "bz2",
    "lzma",
    "json",
    "urllib.request",
    "http.client",
    "hmac",
    "xml.etree.ElementTree",  # s3:// STS and error answers (pyexpat)
    "tempfile",
    "logging",
    "socket",
    "select",
)


def check_python() -> None:
    if not hasattr(tarfile, "data_filter"):
        sys.exit(f"prune-rootfs: Python {sys.version.split()[0]} has no tarfile extraction filters")
    if not hasattr(os.path, "ALLOW_MISSING"):
        sys.exit(
            f"prune-rootfs: Python {sys.version.split()[0]} lacks the June 2025 tarfile filter fixes "
            "(CVE-2025-4517); use a newer patch release as BASE_IMAGE"
        )


def remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def prune_programs(keep: set[str]) -> list[str]:
    """Delete every file in the bin dirs except the interpreter and the names in `keep`."""
    interpreter = os.path.realpath(sys.executable)
    kept: list[str] = []
    seen: set[str] = set()
    for d in BIN_DIRS:
        real = os.path.realpath(d)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        for name in os.listdir(real):
            path = os.path.join(real, name)
            target = os.path.realpath(path)
            if name in keep or target == interpreter:
                kept.append(path)
                continue
            remove(path)
    return kept


def prune_stdlib() -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    for name in STDLIB_DROP:
        remove(os.path.join(stdlib, name))
    for pattern in DYNLOAD_DROP:
        for so in glob.glob(os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload", pattern)):
            remove(so)
    # The base's own site-packages (pip, setuptools, wheel); applications live elsewhere (a venv
    # or PYTHONPATH). Paths of the base interpreter, also when this runs under a venv's python.
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    for site in {base["purelib"], base["platlib"]}:
        if os.path.isdir(site):
            for name in os.listdir(site):
                remove(os.path.join(site, name))


def add_user() -> None:
    with open("/etc/passwd", encoding="utf-8") as f:
        passwd = f.read()
    if f":{UID}:" not in passwd:
        with open("/etc/passwd", "a", encoding="utf-8") as f:
            f.write(f"{USER}:x:{UID}:{UID}:{USER}:/nonexistent:/sbin/nologin\n")
    with open("/etc/group", encoding="utf-8") as f:
        group = f.read()
    if f":{UID}:" not in group:
        with open("/etc/group", "a", encoding="utf-8") as f:
            f.write(f"{USER}:x:{UID}:\n")


def compile_dirs(dirs: list[str]) -> None:
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    stdlib = sysconfig.get_paths()["stdlib"]
    for d in [stdlib, *dirs]:
        ok = compileall.compile_dir(d, quiet=1, workers=0, invalidation_mode=mode, force=True)
        # The standard library holds a few files that are not valid on purpose (lib2to3 data).
        if not ok and d != stdlib:
            sys.exit(f"prune-rootfs: compiling {d} failed")


EMPTY_DIRS = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/mnt", "/media")
ENGINE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/.dockerenv")


def copy_root(out: str) -> None:
    """Copy / to `out`, keeping symlinks, modes and times; mount points stay empty directories."""
    skip = {out, os.path.abspath(__file__), *ENGINE_FILES}
    os.makedirs(out, exist_ok=True)
    for name in os.listdir("/"):
        src = os.path.join("/", name)
        dst = os.path.join(out, name)
        if src in skip:
            continue
        if src in EMPTY_DIRS and not os.path.islink(src):
            os.makedirs(dst, exist_ok=True)
            shutil.copystat(src, dst)
            continue
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
            shutil.copytree(
                src,
                dst,
                symlinks=True,
                ignore=lambda d, names: [n for n in names if os.path.join(d, n) in skip],
            )
        else:
            shutil.copy2(src, dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="append", default=[], help="application dir to precompile")
    parser.add_argument("--keep-bin", action="append", default=[], help="program name to keep")
    parser.add_argument("--check-import", action="append", default=[], help="module that must import")
    parser.add_argument("--out", default="/rootfs", help="where to copy the pruned root filesystem")
    args = parser.parse_args()

    check_python()
    kept = prune_programs(set(args.keep_bin))
    for pattern in REMOVE_GLOBS:
        for path in glob.glob(pattern):
            remove(path)
    prune_stdlib()
    add_user()
    compile_dirs(args.compile)

    for mod in (*DEFAULT_IMPORTS, *args.check_import):
        importlib.import_module(mod)
    copy_root(args.out)
    print(f"prune-rootfs: Python {sys.version.split()[0]}, kept programs: {', '.join(sorted(kept))}")


if __name__ == "__main__":
    main()
