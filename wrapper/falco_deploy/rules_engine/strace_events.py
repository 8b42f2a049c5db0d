"""Falco events from an `strace -f -yy` recording: what a rule would see of each call.

A recording made with `strace -f -qq -yy -s 200 -o FILE` (one line per call, the pid first)
shows each call's arguments, its return value and, thanks to -yy, what each descriptor is:
`3</etc/shadow>`, `3<TCP:[127.0.0.1:40756->127.0.0.1:56749]>`, `AT_FDCWD</root>`. From that
this module builds the exit event libsinsp would produce for the call, field by field, with the
values Falco computes (libsinsp parsers.cpp and the filterchecks of sinsp_filtercheck_*.cpp):

- evt.type, evt.dir "<", evt.rawres (the return value; -errno on failure) and evt.res
  ("SUCCESS" for any value >= 0, else the errno's name); argument-less "generic" calls of
  Falco's event table (fsopen, fsmount, move_mount, open_tree, ...) carry no return value
  there, so they get neither;
- proc.name (the executable's base name, at most 15 characters like the kernel's comm),
  proc.exepath, proc.cmdline, proc.args, proc.vpid and the parent's proc.pname, proc.pexepath
  and proc.pvpid, followed through execve; the parent is known from clone/fork/vfork when they
  were traced, else from the SIGCHLD it received when the child ended (a forked child resembles
  its parent until it executes a program);
- fd.*: for open/openat/openat2/creat the path as Falco builds it (the directory of dirfd or the
  working directory joined with a relative name, `.`/`..` folded, symbolic links not resolved)
  and evt.is_open_read/evt.is_open_write from the access mode; for calls on a descriptor
  (connect, dup*, fcntl, setns) the descriptor's file, socket or namespace as -yy printed it.
  For a connected unix socket Falco prints the path the server bound, which the client's trace
  does not show: the fixture's `context` gives it as `unix_peer_path`.

The fixture's `context` adds what the trace cannot know: container.*, user.*,
thread.cap_effective, `unix_peer_path`, and `exe_realpath` (the image's symbolic links on the
way to the executables, files or folders ending in "/": /usr/bin/python3 -> /usr/bin/python3.11,
/bin/ -> /usr/bin/; proc.exepath is canonical), and
`init_pid` for a recording made from the host (strace -p --pidns-translation attached to a
container's PID 1): the pid of the container's init, whose proc.vpid is then 1; the vpids of
the processes it starts come from --pidns-translation.
`match` keeps only the events whose fields equal it (a list: one of its values), `unless` (one
such mapping or a list of them) drops those that equal one of them.
"""

from __future__ import annotations

import errno
import posixpath
import re

GENERIC = frozenset(("fsopen", "fsconfig_generic", "fsmount", "move_mount", "open_tree",
                     "mount_setattr", "fspick", "pivot_root", "name_to_handle_at"))
OPENS = frozenset(("open", "openat", "openat2", "creat"))
FD_CALLS = frozenset(("connect", "dup", "dup2", "dup3", "fcntl", "setns", "fsmount",
                      "move_mount"))
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_SIGCHLD = re.compile(r"^--- SIGCHLD \{.*\bsi_pid=(\d+)")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>\s?(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESULT = re.compile(r"^(.*)\)\s+=\s+(-?\d+|\?)(?:<(.*)>)?(?:\s+(E[A-Z0-9]+)\b.*)?$", re.S)
_ANNOT = re.compile(r"^(-?\d+|AT_FDCWD)<(.*)>$", re.S)
_INET = re.compile(r"^(TCP|UDP|TCPv6|UDPv6):\[(.*)\]$")
_UNIX = re.compile(r"^UNIX(?:-STREAM|-DGRAM|-SEQPACKET)?:\[(.*)\]$")


class StraceError(Exception):
    pass


def split_args(text: str) -> list[str]:
    """Top-level arguments of a call: commas inside quotes, [], {}, () and -yy's <> do not
    split."""
    args, depth, cur, i, n = [], 0, [], 0, len(text)
    quote = False
    while i < n:
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
            cur.append(c)
        elif c in "[{(<":
            depth += 1
            cur.append(c)
        elif c in "]})>" and depth:
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def unquote(arg: str) -> str:
    """The string of a quoted strace argument (C escapes undone); a trailing `...` of -s is
    kept out."""
    arg = arg.strip()
    if arg.endswith("..."):
        arg = arg[:-3]
    if not (len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"'):
        return arg
    body = arg[1:-1]
    return bytes(body, "utf-8").decode("unicode_escape").encode("latin-1").decode(
        "utf-8", "replace")


def _annotation(arg: str) -> tuple[str, str] | None:
    m = _ANNOT.match(arg.strip())
    return (m.group(1), m.group(2)) if m else None


_DEVICE = re.compile(r"<(?:char|block) \d+:\d+>$")


def _describe_fd(desc: str) -> dict:
    """fd.* of a descriptor from its -yy description."""
    desc = _DEVICE.sub("", desc)  # "/dev/null<char 1:3>": the device numbers of a device file
    m = _INET.match(desc)
    if m:
        proto, v6 = m.group(1).lower().rstrip("v6"), m.group(1).endswith("v6")
        conn = m.group(2)
        out = {"fd.type": "ipv6" if v6 else "ipv4", "fd.typechar": "6" if v6 else "4",
               "fd.l4proto": proto, "fd.name": conn}
        if "->" in conn:
            local, remote = conn.split("->", 1)
            lip, lport = local.rsplit(":", 1)
            rip, rport = remote.rsplit(":", 1)
            out.update({"fd.cip": lip.strip("[]"), "fd.cport": int(lport),
                        "fd.sip": rip.strip("[]"), "fd.sport": int(rport),
                        "fd.lport": int(lport), "fd.rport": int(rport)})
        return out
    m = _UNIX.match(desc)
    if m:
        inner = m.group(1)
        path = inner.split(",", 1)[1].strip().strip('"') if "," in inner else ""
        return {"fd.type": "unix", "fd.typechar": "u", "fd.name": path}
    if desc.startswith("pipe:"):
        return {"fd.type": "pipe", "fd.typechar": "p", "fd.name": ""}
    if desc.startswith("NETLINK"):
        return {"fd.type": "netlink", "fd.typechar": "n", "fd.name": ""}
    if desc.startswith("pid:"):  # a pidfd (pidfd_open): Falco has no fd type of its own for it
        return {"fd.type": "event", "fd.typechar": "e", "fd.name": "anon_inode:[pidfd]"}
    if desc.startswith("anon_inode:"):
        return {"fd.type": "event", "fd.typechar": "e", "fd.name": desc}
    if desc.startswith("/"):
        ftype = "directory" if desc.endswith("/") else "file"
        return {"fd.type": ftype, "fd.typechar": "f", "fd.name": desc,
                "fd.directory": posixpath.dirname(desc), "fd.filename": posixpath.basename(desc)}
    return {"fd.name": desc}


def _realpath(path: str, links: dict) -> str:
    """The canonical path through the image's links: a key ending in "/" is a linked folder
    (/bin/ -> /usr/bin/ on a merged-/usr system), any other key a linked file."""
    for _ in range(8):  # links to links, as the kernel follows them (bounded)
        if path in links:
            path = links[path]
            continue
        folder = next((k for k in links if k.endswith("/") and path.startswith(k)), None)
        if folder is None:
            return path
        path = links[folder] + path[len(folder):]
    return path


def _errno_number(name: str | None) -> int:
    return getattr(errno, name, 0) if name else 0


class _Proc:
    def __init__(self, pid: int, exe: str = "", argv: list[str] | None = None,
                 parent: _Proc | None = None) -> None:
        self.pid, self.exe, self.argv, self.parent = pid, exe, argv or [], parent
        # the kernel's comm: the base name of the file execve was given, at most 15 characters
        self.comm = posixpath.basename(exe)[:15] if exe else ""

    def fields(self, vpids: dict[int, int] | None) -> dict:
        name = self.comm or None
        args = " ".join(self.argv[1:])
        out = {"proc.exepath": self.exe or None, "proc.name": name,
               "proc.cmdline": (name + (" " + args if args else "")) if name else None,
               "proc.args": args if name else None}
        p = self.parent
        out.update({"proc.pname": p.comm or None if p else None,
                    "proc.pexepath": p.exe if p and p.exe else None})
        # pids in the trace are those of strace's PID namespace: inside the container they are
        # the vpids; traced from the host, the vpids are those --pidns-translation printed and
        # the container's init (init_pid) is 1; any other stays unknown
        if vpids is None:
            out["proc.vpid"] = self.pid
            if p:
                out["proc.pvpid"] = p.pid
        else:
            if self.pid in vpids:
                out["proc.vpid"] = vpids[self.pid]
            if p and p.pid in vpids:
                out["proc.pvpid"] = vpids[p.pid]
        return out


def _calls(lines):
    """(pid, name, args text, result text) of every finished call, unfinished ones joined."""
    pending: dict[int, tuple[str, str]] = {}
    for raw in lines:
        m = _LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.startswith(("+++", "---")):
            continue
        r = _RESUMED.match(rest)
        if r:
            name, tail = r.group(1), r.group(2)
            start = pending.pop(pid, (name, ""))[1]
            rest = f"{name}({start}{tail}"
        elif rest.endswith("<unfinished ...>"):
            c = _CALL.match(rest)
            if c:
                pending[pid] = (c.group(1), c.group(2)[:-len("<unfinished ...>")].rstrip())
            continue
        c = _CALL.match(rest)
        if not c:
            continue
        res = _RESULT.match(c.group(2))
        if not res:
            continue
        yield pid, c.group(1), res.group(1), res.group(2), res.group(3), res.group(4)


def _open_path(call: str, args: list[str], procs_cwd: str) -> tuple[str, int]:
    """(path as Falco builds it, flags argument text) of an open call."""
    if call in ("open", "creat"):
        base, name, flags = procs_cwd, unquote(args[0]), args[1] if len(args) > 1 else ""
        if call == "creat":
            flags = "O_WRONLY|O_CREAT|O_TRUNC"
    else:
        ann = _annotation(args[0])
        base = ann[1] if ann else procs_cwd
        name = unquote(args[1])
        flags = args[2] if len(args) > 2 else ""
        if call == "openat2":
            fm = re.search(r"flags=([A-Z_|0-9x]+)", flags)
            flags = fm.group(1) if fm else ""
    path = name if name.startswith("/") else posixpath.join(base or "/", name)
    return posixpath.normpath(path).replace("//", "/"), flags


def _parents(lines) -> tuple[dict[int, int], dict[int, int]]:
    """(child pid -> parent pid, pid -> vpid). The parent is known from the return value of
    clone/fork/vfork when they were traced, else from the SIGCHLD it received when the child
    ended. A recording made from another PID namespace with --pidns-translation prints a new
    child as `= VPID /* PID in strace's PID NS */`: its vpid is then known too."""
    parents: dict[int, int] = {}
    vpids: dict[int, int] = {}
    for raw in lines:
        m = _LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, rest = int(m.group(1)), m.group(2)
        sig = _SIGCHLD.match(rest)
        if sig:
            parents.setdefault(int(sig.group(1)), pid)
            continue
        c = re.match(r"^(?:<\.\.\. )?(clone3?|v?fork)\b.*=\s+(\d+)"
                     r"(?: /\* (\d+) in strace's PID NS \*/)?\s*$", rest)
        if c and int(c.group(2)) > 0:
            child = int(c.group(3) or c.group(2))
            parents[child] = pid
            if c.group(3):
                vpids[child] = int(c.group(2))
    return parents, vpids


def selected(event: dict, where: dict) -> bool:
    """Every field of `where` equals the event's (a list: one of its values)."""
    for k, want in where.items():
        if k not in event:
            return False
        if event[k] not in (want if isinstance(want, list) else [want]):
            return False
    return True


def events_from_strace(path: str, syscalls, context: dict, match: dict,
                       unless: dict | list | None = None) -> list[dict]:
    wanted = set(syscalls)
    procs: dict[int, _Proc] = {}
    cwd: dict[int, str] = {}
    events = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    if not lines:
        raise StraceError(f"{path}: empty recording")
    parents, vpids = _parents(lines)
    init_pid = context.get("init_pid")
    if init_pid is not None:
        vpids[init_pid] = 1
    for pid, call, argtext, ret, _annotation_of_result, err in _calls(lines):
        proc = procs.get(pid)
        if proc is None:
            # first seen: a fork of its parent, which it resembles until it executes a program
            parent = procs.get(parents.get(pid, -1))
            proc = procs[pid] = _Proc(pid, parent.exe if parent else "",
                                      list(parent.argv) if parent else [], parent)
            if parent:
                proc.comm = parent.comm
                cwd.setdefault(pid, cwd.get(parent.pid, ""))
        args = split_args(argtext)
        rawres = None if ret == "?" else int(ret)
        if rawres == -1 and err:
            rawres = -_errno_number(err)
        if call in ("clone", "clone3", "fork", "vfork") and rawres and rawres > 0:
            child = procs[rawres] = _Proc(rawres, proc.exe, list(proc.argv), proc)
            child.comm = proc.comm
            cwd[rawres] = cwd.get(pid, "")
            continue
        if call in ("execve", "execveat") and rawres == 0:
            exe = unquote(args[0] if call == "execve" else args[1])
            argv_text = args[1] if call == "execve" else args[2]
            # proc.exepath is the canonical path (symlinks resolved): the trace shows the path
            # given to execve, the image's symlinks come from the fixture's context
            exe = posixpath.normpath(exe)
            proc.exe = _realpath(exe, context.get("exe_realpath") or {})
            proc.comm = posixpath.basename(exe)[:15]
            proc.argv = [unquote(a) for a in split_args(argv_text.strip()[1:-1])]
        if call == "chdir" and rawres == 0:
            target = unquote(args[0])
            cwd[pid] = posixpath.normpath(posixpath.join(cwd.get(pid, "/"), target))
        if call not in wanted:
            continue
        ev = {"evt.type": call, "evt.dir": "<"}
        if call not in GENERIC:
            ev["evt.rawres"] = rawres
            # evt.res: "SUCCESS" for any value >= 0, else the errno's name
            ev["evt.res"] = "SUCCESS" if rawres is not None and rawres >= 0 else err
        ev.update(proc.fields(vpids if init_pid is not None else None))
        if call in OPENS:
            p, flags = _open_path(call, args, cwd.get(pid, "/"))
            mode = "O_RDWR" if "O_RDWR" in flags else "O_WRONLY" if "O_WRONLY" in flags \
                else "O_RDONLY"
            ev.update({"fd.name": p, "fd.directory": posixpath.dirname(p),
                       "fd.filename": posixpath.basename(p), "fd.typechar": "f",
                       "fd.type": "file", "fd.num": rawres if rawres is not None and rawres >= 0
                       else -1,
                       "evt.is_open_read": mode in ("O_RDONLY", "O_RDWR") and rawres >= 0,
                       "evt.is_open_write": mode in ("O_WRONLY", "O_RDWR") and rawres >= 0})
        elif call in FD_CALLS and args:
            ann = _annotation(args[0])
            if ann:
                ev["fd.num"] = int(ann[0]) if ann[0] != "AT_FDCWD" else -100
                ev.update(_describe_fd(ann[1]))
            if call == "fcntl" and len(args) > 1:
                ev["evt.arg.cmd"] = args[1].strip()
            if call == "setns" and len(args) > 1:
                ev["evt.arg.nstype"] = args[1].strip()
            if call == "connect" and ev.get("fd.type") == "unix":
                peer = context.get("unix_peer_path")
                sun = re.search(r'sun_path="([^"]*)"', argtext)
                if peer:
                    ev["fd.name"] = peer
                elif sun:
                    ev["fd.name"] = sun.group(1)
        elif call == "mount":
            ev.update({"evt.arg.dev": unquote(args[0]), "evt.arg.dir": unquote(args[1]),
                       "evt.arg.type": unquote(args[2])})
        for k, v in context.items():
            if k not in ("unix_peer_path", "exe_realpath", "init_pid"):
                ev[k] = v
        drop = unless if isinstance(unless, list) else [unless] if unless else []
        if selected(ev, match) and not any(selected(ev, u) for u in drop):
            events.append(ev)
    return events
