#!/usr/bin/python3
# Copyright: falco-deploy contributors
# Apache License 2.0 (see LICENSE)
"""Collect every fact the Falco preflight needs in one module call (one round trip per host)."""
# Ansible's module layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
---
module: falco_preflight_probe
short_description: Probe a host for what Falco's modern eBPF driver needs
description:
  - Reads kernel release, architecture, glibc version, init system, capabilities, memlock limit
    and OS identity, and probes the BPF features modern eBPF relies on through the bpf(2) syscall
    (a ring buffer map, a raw tracepoint program and a BTF-enabled C(tp_btf/sys_enter) program).
  - Also reports the installed falco package version, the configured engine kind and whether gpg
    and python3-apt exist, so the later roles need no probes of their own.
  - Changes nothing and never fails because of what it finds; it returns facts and the role
    decides against its thresholds.
options:
  btf_path:
    description: Path of the kernel BTF blob.
    type: path
    default: /sys/kernel/btf/vmlinux
  probe_bpf:
    description: Whether to call bpf(2) at all.
    type: bool
    default: true
  units:
    description:
      - systemd units whose UnitFileState and ActiveState to report (one systemctl call).
    type: list
    elements: str
    default: []
  files:
    description:
      - Files whose sha1, mode and owner to report, so roles can skip writing unchanged files.
    type: list
    elements: path
    default: []
author: falco-deploy contributors
"""

EXAMPLES = r"""
- name: Probe the host
  falco_preflight_probe:
    btf_path: /sys/kernel/btf/vmlinux
  register: probe
"""

RETURN = r"""
probe:
  description: Facts about the host, see the role README for every key.
  returned: always
  type: dict
"""

import ctypes
import errno
import hashlib
import importlib.util
import os
import platform
import resource
import shutil
import struct

from ansible.module_utils.basic import AnsibleModule

# Capability bit numbers from include/uapi/linux/capability.h.
CAPS = {
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_PTRACE": 19,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

# bpf(2) syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl,
# include/uapi/asm-generic/unistd.h.
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_MAP_TYPE_RINGBUF = 27
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23
# The modern probe attaches its programs as tp_btf/sys_enter, so the kernel must know this type.
TP_BTF_TARGET = b"btf_trace_sys_enter"
ATTR_SIZE = 128
# r0 = 0; exit
TRIVIAL_PROG = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)


def read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return default


def kernel_version(release):
    parts = []
    for piece in release.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return ".".join(str(p) for p in parts)


def os_release():
    info = {}
    for line in read("/etc/os-release").splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            info[key.strip()] = value.strip().strip('"')
    return info


def capabilities():
    status = {}
    for line in read("/proc/self/status").splitlines():
        if line.startswith(("CapEff:", "CapBnd:")):
            key, _, value = line.partition(":")
            status[key] = int(value.strip(), 16)
    out = {
        "cap_eff": format(status.get("CapEff", 0), "016x"),
        "cap_bnd": format(status.get("CapBnd", 0), "016x"),
    }
    for name, bit in CAPS.items():
        out[name] = bool(status.get("CapEff", 0) & (1 << bit)) and bool(
            status.get("CapBnd", 0) & (1 << bit)
        )
    return out


def init_system():
    comm = read("/proc/1/comm").strip()
    try:
        exe = os.readlink("/proc/1/exe")
    except OSError:
        exe = ""
    # /run/systemd/system exists only when systemd is the running init (sd_booted(3)).
    booted = os.path.isdir("/run/systemd/system")
    name = (
        "systemd"
        if (booted and (comm == "systemd" or exe.endswith("/systemd")))
        else (comm or os.path.basename(exe) or "unknown")
    )
    return {"name": name, "pid1_comm": comm, "pid1_exe": exe, "systemd_booted": booted}


def glibc_version():
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        value = ""
    if value.startswith("glibc "):
        return value.split()[1]
    lib, ver = platform.libc_ver()
    return ver if lib == "glibc" else ""


def btf_type_id(path, name):
    """Return the BTF id of TYPEDEF `name` in the vmlinux blob, 0 when absent."""
    with open(path, "rb") as handle:
        blob = handle.read()
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", blob, 0
    )
    if magic != 0xEB9F:
        raise ValueError("not a BTF blob")
    strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
    wanted = strings.find(b"\0" + name + b"\0")
    if wanted < 0:
        return 0
    wanted += 1
    # Extra bytes after each btf_type, by kind (include/uapi/linux/btf.h).
    fixed = {1: 4, 3: 12, 14: 4, 17: 4}
    per_member = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 1
    unpack = struct.Struct("<III").unpack_from
    while pos < end:
        name_off, info, _ = unpack(blob, pos)
        kind = (info >> 24) & 0x1F
        if name_off == wanted and kind == 8:
            return type_id
        pos += 12 + fixed.get(kind, 0) + per_member.get(kind, 0) * (info & 0xFFFF)
        type_id += 1
    return 0


class Bpf:
    def __init__(self, arch):
        self.nr = BPF_SYSCALL.get(arch)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def call(self, cmd, attr):
        buf = ctypes.create_string_buffer(bytes(attr), ATTR_SIZE)
        ctypes.set_errno(0)
        fd = self.libc.syscall(
            ctypes.c_long(self.nr), ctypes.c_int(cmd), buf, ctypes.c_uint(ATTR_SIZE)
        )
        if fd < 0:
            err = ctypes.get_errno()
            name = errno.errorcode.get(err, str(err))
            return {"ok": False, "error": f"{name} ({os.strerror(err)})"}
        os.close(fd)
        return {"ok": True, "error": ""}

    def ringbuf(self):
        attr = bytearray(ATTR_SIZE)
        struct.pack_into("<IIII", attr, 0, BPF_MAP_TYPE_RINGBUF, 0, 0, 4096 * 16)
        return self.call(BPF_MAP_CREATE, attr)

    def prog(self, prog_type, expected_attach_type=0, attach_btf_id=0):
        insns = ctypes.create_string_buffer(TRIVIAL_PROG, len(TRIVIAL_PROG))
        license_ = ctypes.create_string_buffer(b"GPL")
        attr = bytearray(ATTR_SIZE)
        struct.pack_into(
            "<IIQQ",
            attr,
            0,
            prog_type,
            len(TRIVIAL_PROG) // 8,
            ctypes.addressof(insns),
            ctypes.addressof(license_),
        )
        struct.pack_into("<I", attr, 68, expected_attach_type)
        struct.pack_into("<I", attr, 108, attach_btf_id)
        return self.call(BPF_PROG_LOAD, attr)


def probe_bpf(arch, btf_path, btf_present):
    result = {
        "ringbuf": {"ok": False, "error": "not probed"},
        "raw_tracepoint": {"ok": False, "error": "not probed"},
        "tp_btf": {"ok": False, "error": "not probed"},
        "method": "bpf(2) via ctypes",
    }
    if arch not in BPF_SYSCALL:
        for key in ("ringbuf", "raw_tracepoint", "tp_btf"):
            result[key]["error"] = f"no bpf(2) syscall number known for {arch}"
        return result
    bpf = Bpf(arch)
    result["ringbuf"] = bpf.ringbuf()
    result["raw_tracepoint"] = bpf.prog(BPF_PROG_TYPE_RAW_TRACEPOINT)
    if not btf_present:
        result["tp_btf"]["error"] = f"no BTF at {btf_path}"
        return result
    try:
        type_id = btf_type_id(btf_path, TP_BTF_TARGET)
    except (OSError, ValueError, struct.error) as exc:
        result["tp_btf"]["error"] = f"cannot read BTF: {exc}"
        return result
    if not type_id:
        result["tp_btf"]["error"] = f"{TP_BTF_TARGET.decode()} not in BTF"
        return result
    result["tp_btf"] = bpf.prog(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, type_id)
    return result


ENGINE_KIND_FILE = "/etc/falco/config.d/engine-kind-falcoctl.yaml"


def installed_falco(module):
    """Installed falco package version and configured engine kind, so later roles need no probe."""
    version = ""
    if shutil.which("dpkg-query"):
        rc, out, _ = module.run_command(
            ["dpkg-query", "--show", "--showformat=${db:Status-Status} ${Version}", "falco"]
        )
        if rc == 0 and out.startswith("installed "):
            version = out.split(" ", 1)[1].strip()
    elif shutil.which("rpm"):
        rc, out, _ = module.run_command(["rpm", "-q", "--queryformat", "%{VERSION}", "falco"])
        version = out.strip() if rc == 0 else ""
    kind = ""
    for line in read(ENGINE_KIND_FILE).splitlines():
        stripped = line.strip()
        if stripped.startswith("kind:"):
            kind = stripped.split(":", 1)[1].split("#", 1)[0].strip().strip("'\"")
            break
    return {"package_version": version, "engine_kind": kind}


def file_states(paths):
    out = {}
    for path in paths:
        try:
            st = os.lstat(path)
            with open(path, "rb") as handle:
                digest = hashlib.sha1(handle.read()).hexdigest()  # the checksum copy uses
        except OSError:
            out[path] = {}
            continue
        out[path] = {
            "sha1": digest,
            "mode": "%04o" % (st.st_mode & 0o7777),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "regular": os.path.isfile(path) and not os.path.islink(path),
        }
    return out


def unit_states(module, units):
    if not units or not shutil.which("systemctl"):
        return {}
    rc, out, _ = module.run_command(
        ["systemctl", "show", "--property=Id,LoadState,UnitFileState,ActiveState,SubState", "--"]
        + list(units)
    )
    if rc != 0:
        return {}
    states, current = {}, {}
    # One block per unit, in the order given, separated by blank lines.
    for line in out.splitlines() + [""]:
        if not line.strip():
            if current:
                states[units[len(states)]] = current
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    return states


def tools():
    return {
        "gpg": bool(shutil.which("gpg")),
        # ansible.builtin.apt needs it, and cannot install it under --check.
        "python3_apt": importlib.util.find_spec("apt") is not None,
        "bpftool": bool(shutil.which("bpftool")),
        # falco_service rotates the alert file with it; a sudo or cron PATH may lack /usr/sbin.
        "logrotate": bool(shutil.which("logrotate") or os.path.isfile("/usr/sbin/logrotate")),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "btf_path": {"type": "path", "default": "/sys/kernel/btf/vmlinux"},
            "probe_bpf": {"type": "bool", "default": True},
            "files": {"type": "list", "elements": "path", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    uname = os.uname()
    btf_path = module.params["btf_path"]
    btf_present = os.path.isfile(btf_path)
    arch = uname.machine
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    osr = os_release()
    probe = {
        "kernel_release": uname.release,
        "kernel_version": kernel_version(uname.release),
        "arch": arch,
        "btf_path": btf_path,
        "btf_present": btf_present,
        "glibc_version": glibc_version(),
        "init": init_system(),
        "capabilities": capabilities(),
        "memlock": {
            "soft": -1 if soft == resource.RLIM_INFINITY else soft,
            "hard": -1 if hard == resource.RLIM_INFINITY else hard,
        },
        "os": {
            "id": osr.get("ID", ""),
            "id_like": osr.get("ID_LIKE", "").split(),
            "version_id": osr.get("VERSION_ID", ""),
            "codename": osr.get("VERSION_CODENAME", ""),
        },
    }
    probe["tools"] = tools()
    probe["falco"] = installed_falco(module)
    probe["files"] = file_states(module.params["files"])
    probe["units"] = unit_states(module, module.params["units"])
    if module.params["probe_bpf"]:
        probe["bpf"] = probe_bpf(arch, btf_path, btf_present)
    else:
        probe["bpf"] = {
            k: {"ok": False, "error": "probing disabled"}
            for k in ("ringbuf", "raw_tracepoint", "tp_btf")
        }
        probe["bpf"]["method"] = "disabled"
    module.exit_json(changed=False, probe=probe)


if __name__ == "__main__":
    main()
