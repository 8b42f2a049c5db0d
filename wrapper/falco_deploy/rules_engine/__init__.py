"""Offline Falco rules validator that gives the same verdicts as `falco -V`.

Self-contained on purpose: imports only the standard library and PyYAML, and only relative
imports inside this package, so the package can be copied verbatim next to a stand-in `falco`.

    report = validate(["rules.d/"], base=["falco_rules.yaml"], falco_version="0.44")
    report.ok, report.exit_code, report.to_json(), report.to_text()
"""

from __future__ import annotations

import os
import stat

from . import results as _R
from .catalog import load as _load_catalog
from .loader import Engine
from .results import FileResult, Report

FALCO_VERSIONS = ("0.44", "0.40")
RULES_SUFFIXES = (".yaml", ".yml")
# The largest rules file read. Falco itself has no limit; the upstream falco_rules.yaml is about
# 100 KiB, and a rules set travels to every host of a fleet, so 4 MiB is plenty and a device
# such as /dev/zero cannot exhaust memory.
MAX_FILE_BYTES = 4 * 1024 * 1024

__all__ = ["FALCO_VERSIONS", "FileResult", "Report", "expand_paths", "load_engine",
           "load_text", "source_problem", "validate"]


def source_problem(path) -> str | None:
    """Why a rules source is not read: a symbolic link (nothing outside the given paths is read,
    so no secret ends up in a message or on a host), not a regular file (a FIFO would block, a
    device never end), larger than MAX_FILE_BYTES, unreadable, or not UTF-8 text (a binary file
    is a wrong path, not a rules file with a YAML error). None when it is fine. OSError when it
    is missing. `rules validate`, `rules deploy` and the playbook's gate all ask this."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return ("is a symbolic link; give the file it points to (links are refused so that "
                "nothing outside the given paths is read)")
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return (f"{info.st_size} bytes, larger than the {MAX_FILE_BYTES} bytes a rules file "
                "may have")
    try:
        # No link followed and no wait on a FIFO, should the file be swapped after the lstat.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return "not a regular file"
        raw = handle.read(MAX_FILE_BYTES + 1)
    nul = raw.find(b"\0")
    if nul >= 0:
        return f"not a text file (a NUL byte at offset {nul})"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not a text file (byte 0x{raw[e.start]:02x} at offset {e.start} is not UTF-8)"
    return None


def expand_paths(paths) -> list[tuple[str, str | None]]:
    """Files in load order: a folder contributes its .yaml/.yml files in name order (as Falco
    reads rules.d). Returns (path, problem) pairs; problem is set for a folder with no rules."""
    out: list[tuple[str, str | None]] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            try:
                names = sorted(os.listdir(p))
            except OSError as e:
                out.append((p, "Could not read folder: " + (e.strerror or str(e))))
                continue
            files = [os.path.join(p, n) for n in names
                     if n.endswith(RULES_SUFFIXES) and os.path.isfile(os.path.join(p, n))]
            if not files:
                out.append((p, "Folder contains no rules files (*.yaml, *.yml)"))
            out.extend((f, None) for f in files)
        else:
            out.append((p, None))
    return out


def _read_error(name: str, code: str, msg: str) -> FileResult:
    res = FileResult(name)
    res.add_error(code, msg, _R.Context.root(name))
    res.contents = {}
    return res


def validate(paths, base=(), falco_version: str = "0.44") -> Report:
    """Load `base` then `paths` into one engine, in order, like `falco -V b1 -V p1 ...`."""
    return load_engine(paths, base, falco_version)[1]


def load_engine(paths, base=(), falco_version: str = "0.44") -> tuple[Engine, Report]:
    """The engine with `base` then `paths` loaded, and the validation report of that load."""
    if falco_version not in FALCO_VERSIONS:
        raise ValueError(f"unsupported Falco version {falco_version!r} "
                         f"(one of {', '.join(FALCO_VERSIONS)})")
    engine = Engine(_load_catalog(falco_version))
    results: list[FileResult] = []
    for path, problem in expand_paths(list(base) + list(paths)):
        if problem:
            results.append(_read_error(path, "LOAD_ERR_FILE_READ", problem))
            continue
        try:
            with open(path, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    results.append(_read_error(path, "LOAD_ERR_FILE_READ",
                                               f"Could not read file {path}: not a regular file"))
                    continue
                raw = fh.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            results.append(_read_error(
                path, "LOAD_ERR_FILE_READ",
                f"Could not read file {path}: {e.strerror or e}"))
            continue
        if len(raw) > MAX_FILE_BYTES:
            results.append(_read_error(
                path, "LOAD_ERR_FILE_READ",
                f"Could not read file {path}: larger than {MAX_FILE_BYTES} bytes"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            results.append(_read_error(
                path, "LOAD_ERR_YAML_PARSE",
                f"File is not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})"))
            continue
        results.append(load_text(engine, path, text))
        # falco validate_rules_files.cpp: after each file, check_rules_plugin_requirements();
        # on failure Falco stops there (run_result::fatal) and prints no results.
        fatal = engine.plugin_requirements_error()
        if fatal is not None:
            return engine, Report(results, fatal)
    return engine, Report(results)


def load_text(engine: Engine, name: str, text: str) -> FileResult:
    """Load one rules content into `engine`; never raises for bad input."""
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return engine.load(name, text)
    except RecursionError:
        res = engine.res or FileResult(name)
        res.add_error("LOAD_ERR_VALIDATE", "rules content nests too deeply",
                      _R.Context.root(name))
        return res
