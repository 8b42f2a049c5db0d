# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Follow Falco's alert file (`file_output`) from a mark: only complete lines written after it.

Falco's `file_output` appends to one file and never rotates it itself; logrotate does, and Falco
reopens the file per alert (`keep_alive: false`) or on SIGUSR1 (falcosecurity/falco issue #266,
pull request #347). So the reader survives the file being renamed away (new inode), copied and
truncated in place (size shrink, or new content at its head) and a line Falco is still writing
(no newline yet). Standard library only: the falco_verify_alerts module ships it to the host
(ansible.module_utils.falco_alert_file) and the tests run it directly.

A mark is a JSON-able dict: path, dev, inode (None: the file did not exist, whatever appears
there later is new), offset (end of the last complete line read), line_no (complete lines before
offset), head_len and head_sha256 (a fingerprint of the file's first bytes: a file truncated and
written past the old offset between two reads keeps its inode and grows; only its head tells).
"""

from __future__ import annotations

import hashlib
import os

HEAD_BYTES = 1024
_CHUNK = 1 << 20


def _head(handle, length):
    handle.seek(0)
    data = handle.read(min(length, HEAD_BYTES))
    return len(data), hashlib.sha256(data).hexdigest()


def beginning(path):
    """A mark that reads the file (whatever inode it has) from its first byte."""
    return {"path": path, "dev": None, "inode": None, "offset": 0, "line_no": 0,
            "head_len": 0, "head_sha256": ""}


def mark_end(path):
    """End of the last complete line now in the file; a missing file marks its beginning.

    A line Falco is still writing at this moment belongs to an alert raised before the mark; it
    is read once complete, and the matcher drops it because no scenario container of the run
    existed when it was raised.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        return beginning(path)
    with handle:
        stat = os.fstat(handle.fileno())
        offset = lines = scanned = 0
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            newlines = chunk.count(b"\n")
            if newlines:
                lines += newlines
                offset = scanned + chunk.rindex(b"\n") + 1
            scanned += len(chunk)
        head_len, head_sha = _head(handle, offset)
    return {"path": path, "dev": stat.st_dev, "inode": stat.st_ino, "offset": offset,
            "line_no": lines, "head_len": head_len, "head_sha256": head_sha}


def _complete(handle, start):
    handle.seek(start)
    data = handle.read()
    return data[:data.rfind(b"\n") + 1]


def _renamed(mark):
    folder, name = os.path.split(mark["path"])
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return None
    for entry in entries:
        if entry == name or not entry.startswith(name):
            continue
        candidate = os.path.join(folder, entry)
        try:
            stat = os.stat(candidate)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) == (mark["dev"], mark["inode"]):
            return candidate
    return None


def read_since(mark):
    """Complete lines written after `mark` (blank ones left out), the next mark, and what
    happened to the file (`missing`, `appeared`, `rotated`, `rotated-drained`, `truncated`):

    - same file, grown: lines from the mark on;
    - new inode (renamed away by logrotate): the unread lines of the renamed file, when it is
      still beside the path, then the new file from its start;
    - same inode but shorter, or a different head (truncated in place): from the start;
    - missing file: nothing, mark unchanged (logrotate may be between rename and create);
    - a last line without newline stays unread until Falco completes it.

    Only b"\\n" ends a line: JSON text cannot hold a raw CR or other line break.
    """
    path = mark["path"]
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        return [], mark, ["missing"]
    chunks, events = [], []
    with handle:
        stat = os.fstat(handle.fileno())
        start, line_no = mark["offset"], mark["line_no"]
        if mark["inode"] is None:
            events.append("appeared")
            start, line_no = 0, 0
        elif (stat.st_dev, stat.st_ino) != (mark["dev"], mark["inode"]):
            events.append("rotated")
            renamed = _renamed(mark)
            if renamed is not None:
                with open(renamed, "rb") as old:
                    chunks.append(_complete(old, mark["offset"]))
                events.append("rotated-drained")
            start, line_no = 0, 0
        elif stat.st_size < mark["offset"] or (
                mark["head_len"] and _head(handle, mark["head_len"])
                != (mark["head_len"], mark["head_sha256"])):
            events.append("truncated")
            start, line_no = 0, 0
        data = _complete(handle, start)
        chunks.append(data)
        offset = start + len(data)
        head_len, head_sha = mark["head_len"], mark["head_sha256"]
        if start == 0 or head_len < min(offset, HEAD_BYTES):
            head_len, head_sha = _head(handle, offset)
    new_mark = dict(mark, dev=stat.st_dev, inode=stat.st_ino, offset=offset,
                    line_no=line_no + data.count(b"\n"), head_len=head_len, head_sha256=head_sha)
    lines = [line.decode("utf-8", errors="replace").rstrip("\r")
             for chunk in chunks for line in chunk.split(b"\n")[:-1]]
    return [line for line in lines if line.strip()], new_mark, events
