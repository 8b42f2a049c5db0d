"""Field arguments, transformers and constant values as libsinsp checks them while it compiles a
condition or an output (falcosecurity/libs 0.20, the libs of Falco 0.40; the same code paths in
the libs of Falco 0.44 for the fields libsinsp itself provides).

- A field is created by filter_check_list::new_filter_check_from_fldname(): each filtercheck's
  parse_field_name() says how many characters of "name[arg]" it understands, and a condition
  (exact check) needs all of them, else "filter_check called with nonexistent field <name>".
  The filterchecks with arguments parse them in their own way, and some throw (parse_special).
- Each transformer checks the type it gets (sinsp_filter_check::add_transformer()).
- Each constant value is parsed with the type of the (transformed) field:
  sinsp_filter_check::parse_filter_value() -> sinsp_filter_value_parser::string_to_rawval()
  (value_parser.cpp) and sinsp_numparser (utils.cpp), after the hex check of bcontains /
  bstartswith (filter.cpp add_filtercheck_value()).
"""

from __future__ import annotations

import re
from functools import lru_cache

# sinsp_numparser::parse*() (libs utils.cpp): sscanf(str, "%" PRIu64 "%c") must convert exactly
# one item: optional blanks (C isspace), an optional sign, decimal digits, and nothing after.
# Hex, exponents, decimals and trailing blanks are refused; overflows are not (glibc saturates).
_SSCANF_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)\Z")

# types string_to_rawval() parses with a sinsp_numparser function (DOUBLE too: real Falco 0.40
# refuses "1.5" for proc.fdusage with "1.5 is not a valid number")
_NUMBER_TYPES = frozenset((
    "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "ERRNO", "FD",
    "PID", "UID", "GID", "L4PROTO", "FLAGS8", "FLAGS16", "FLAGS32", "ENUMFLAGS8", "ENUMFLAGS16",
    "ENUMFLAGS32", "MODE", "RELTIME", "ABSTIME", "DOUBLE"))

# types whose values string_to_rawval() copies as they are (BYTEBUF: parse_filter_value())
_COPIED_TYPES = frozenset(("CHARBUF", "FSPATH", "FSRELPATH", "BYTEBUF", "LIST(CHARBUF)",
                           "DYNAMIC"))

# sinsp_filter_transformer_*::transform_type(): the types each transformer takes
_STRINGS = frozenset(("CHARBUF", "FSPATH", "FSRELPATH"))
TRANSFORMER_TYPES = {
    "tolower": _STRINGS, "toupper": _STRINGS, "basename": _STRINGS,
    "b64": frozenset(("CHARBUF", "BYTEBUF")),
    "len": _STRINGS | {"BYTEBUF"},  # and any list (sinsp_filter_transformer_len)
}

# thread filterchecks with an optional numeric ancestor index, in the order
# sinsp_filter_check_thread::parse_field_name() tries them (proc.aexepath before proc.aexe)
_ANCESTOR_FIELDS = ("proc.apid", "proc.aname", "proc.aexepath", "proc.aexe", "proc.acmdline",
                    "proc.aargs")
_CONTAINER_MOUNT_SUBS = ("source", "dest", "mode", "rdwr", "propagation")
_K8S_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-.")
_ALPHA_ = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.]*")
# what parse_special() looks at (anything else is a plain longest-name match)
_SPECIAL_PREFIXES = ("evt.arg", "evt.rawarg", "evt.around", "evt.abspath", "evt.type.is", "arg",
                     "proc.a", "proc.env", "thread.cgroup", "container.mount", "fd.types",
                     "k8s.")


class FieldError(Exception):
    """An exception a filtercheck throws while it parses a field name."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def _cstr(s: str) -> str:
    """libsinsp reads values as C strings: nothing after a NUL byte."""
    nul = s.find("\0")
    return s if nul < 0 else s[:nul]


def number_error(s: str) -> str | None:
    """sinsp_numparser::parse*() (utils.cpp): "<s> is not a valid number", or None."""
    s = _cstr(s)
    return None if _SSCANF_INT.match(s) else s + " is not a valid number"


def _parseu8(s: str) -> int:
    """sinsp_numparser::parseu8(): sscanf %u into a uint32 (strtoul: negatives wrap,
    overflows saturate), then cast to uint8. The caller has checked number_error()."""
    n = int(_SSCANF_INT.match(s).group(1))
    if n < 0:
        n = max(0, 2 ** 64 + n)
    n = min(n, 2 ** 64 - 1) & 0xFFFFFFFF
    return n & 0xFF


def _inet_pton(v6: bool, s: str) -> bool:
    import socket  # only for address values: `rules validate` starts faster without it

    try:
        socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, s)
    except (OSError, ValueError):
        return False
    return True


@lru_cache(maxsize=256)
def _service_known(name: str) -> bool:
    """getservbyname(name, NULL): the services database of the host (Falco runs it where it
    is installed, so this answers for the host that validates)."""
    import socket

    try:
        socket.getservbyname(name)
    except (OSError, ValueError):
        return False
    return True


def _net_error(s: str) -> str | None:
    """string_to_rawval() PT_IPNET: with a '.' an IPv4 network, else ipv6net(str)
    (tuples.cpp)."""
    if "." in s:
        if "/" not in s:
            return "unrecognized IP network " + s
        ip, _, mask = s.partition("/")
        mask = mask.split("\n", 1)[0]  # getline(ss, mask)
        if not _inet_pton(False, ip):
            return "unrecognized IP address " + s
        err = number_error(mask)
        if err:
            return err
        return "invalid netmask " + mask if _parseu8(mask) > 32 else None
    if "/" not in s:
        return "invalid v6 netmask: " + s
    ip, _, mask = s.partition("/")
    mask = mask.split("\n", 1)[0]
    if not _inet_pton(True, ip):
        return "unrecognized IPv6 address " + s
    err = number_error(mask)
    if err:
        return err
    n = _parseu8(mask)
    return "invalid v6 netmask " + mask if n == 0 or n > 128 else None


def value_error(ftype: str, value: str) -> str | None:
    """The exception string_to_rawval() throws parsing `value` for a field of type `ftype`
    (a catalogue type; a list field parses each value as its element type), or None."""
    if ftype in _COPIED_TYPES:
        return None
    if ftype.startswith("LIST("):
        ftype = ftype[5:-1]
    if ftype in _NUMBER_TYPES:
        return number_error(value)
    s = _cstr(value)
    if ftype == "BOOL":
        if s == "true" or s == "false":
            return None
        return "filter error: unrecognized boolean value " + s
    if ftype == "PORT":
        # empty -> 0; only digits -> stoi(); else a service name for getservbyname()
        if not s or s.isdigit() and s.isascii() or _service_known(s):
            return None
        return "unrecognized protocol " + s
    if ftype in ("IPADDR", "IPV4ADDR", "IPV6ADDR"):
        if ftype == "IPV4ADDR" or ftype == "IPADDR" and "." in s:
            return None if _inet_pton(False, s) else "unrecognized IPv4 address " + s
        return None if _inet_pton(True, s) else "unrecognized IPv6 address " + s
    if ftype in ("IPNET", "IPV4NET", "IPV6NET"):
        return _net_error(s)
    return None  # strings, buffers: copied as they are


def parses_values(ftype: str) -> bool:
    """Whether string_to_rawval() can refuse a value for this type."""
    return ftype not in _COPIED_TYPES


def hex_error(value: str) -> str | None:
    """filter.cpp add_filtercheck_value(): bcontains/bstartswith take sinsp_utils::unhex()
    strings (an even number of hex digits)."""
    if len(value) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in value):
        return None
    return "filter error: bcontains and bstartswith operator support hex strings only"


def split_type(ftype: str) -> tuple[str, bool]:
    """A catalogue type as (param type, is a list)."""
    if ftype.startswith("LIST(") and ftype.endswith(")"):
        return ftype[5:-1], True
    return ftype, False


def transformed_type(tr: str, ftype: str, field: str) -> tuple[str, str | None]:
    """sinsp_filter_check::add_transformer(): (type after `tr`, error)."""
    allowed = TRANSFORMER_TYPES.get(tr)
    if allowed is None:  # val() and transformers this module does not model
        return ftype, None
    t, is_list = split_type(ftype)
    if tr == "len" and is_list:
        return "UINT64", None
    if t not in allowed:
        return ftype, (f"can't add field transformer: type '{t}' is not supported by '{tr}' "
                       f"transformer applied on field '{field}'")
    return ("UINT64" if tr == "len" else ftype), None


def type_label(ftype: str) -> str:
    """param_type_to_string() plus " (list)", as check_rhs_field_type_consistency() says."""
    t, is_list = split_type(ftype)
    return t + " (list)" if is_list else t


# --- field names (parse_field_name of libsinsp's filterchecks) ---

def _libs_field(cat, name: str) -> bool:
    info = cat.fields.get(name)
    return info is not None and not info[2]


_MAX_PARAM_NAME = 64  # longer than any event parameter name (19 characters in 0.40 and 0.44)


def longest_event_param(cat, name: str) -> str | None:
    """sinsp_utils::find_longest_matching_evt_param(): the longest parameter name of the event
    table that `name` starts with."""
    params = cat.event_params
    for k in range(min(len(name), _MAX_PARAM_NAME), 0, -1):
        if name[:k] in params:
            return name[:k]
    return None


def _event_arg(cat, fld: str, val: str, raw: bool = False, around: bool = False):
    """sinsp_filter_check_event::extract_arg() (evt.arg, evt.rawarg, evt.around)."""
    n = len(fld)
    c = val[n] if len(val) > n else ""
    if c == "[":
        if raw:
            raise FieldError("evt.arg fields must be expressed explicitly")
        end = val.find("]")
        err = number_error(val[n + 1:end] if end >= 0 else val[n + 1:])
        if err:
            raise FieldError(err)
        return fld, (end + 1 if end >= 0 else len(val)), None
    if c == ".":
        if around:
            raise FieldError("wrong syntax for evt.around")
        arg = val[n + 1:]
        p = longest_event_param(cat, arg)
        if p is None:
            raise FieldError("unknown event argument " + arg)
        return fld, n + 1 + len(p), (cat.event_params[p] if raw else None)
    raise FieldError("filter syntax error: " + val)


def parse_special(cat, val: str):
    """The filtercheck parse_field_name() overrides of libs 0.20 for the fields that take an
    argument: (catalogue field, characters understood, type override) or None when the
    generic longest-name match applies. Raises FieldError with the message they throw.
    Only fields libsinsp provides itself (not a plugin's) are handled here."""
    if val.startswith("evt."):
        # sinsp_filter_check_event::parse_field_name()
        if val.startswith("evt.arg") and not val.startswith("evt.args"):
            return _event_arg(cat, "evt.arg", val) if _libs_field(cat, "evt.arg") else None
        if val.startswith("evt.rawarg") and _libs_field(cat, "evt.rawarg"):
            return _event_arg(cat, "evt.rawarg", val, raw=True)
        if val.startswith("evt.around") and _libs_field(cat, "evt.around"):
            return _event_arg(cat, "evt.around", val, around=True)
        if val.startswith("evt.abspath") and _libs_field(cat, "evt.abspath"):
            n = 15 if val.startswith(("evt.abspath.src", "evt.abspath.dst")) else 11
            return "evt.abspath", n, None
        if val.startswith("evt.type.is") and _libs_field(cat, "evt.type.is"):
            # extract_type(): a number or an event name after the dot, else nothing understood
            if len(val) > 11 and val[11] == ".":
                itype = val[12:]
                ok = _SSCANF_INT.match(itype) is not None or itype in cat.event_codes
                return "evt.type.is", (len(val) if ok else 0), None
            raise FieldError("filter syntax error: " + val)
        return None
    if val.startswith("arg"):
        # sinsp_filter_check_thread::parse_field_name()
        raise FieldError("filter error: proc.arg filter not implemented yet")
    if val.startswith("proc.a"):
        for fld in _ANCESTOR_FIELDS:
            if val.startswith(fld) and _libs_field(cat, fld):
                # extract_arg() throws unless "[<parsed32>]" follows; the throw is caught and
                # only the bare name is understood
                n = len(fld)
                if len(val) > n and val[n] == "[":
                    end = val.find("]")
                    if end >= 0 and number_error(val[n + 1:end]) is None:
                        return fld, end + 1, None
                return fld, (n if val == fld else 0), None
    if val.startswith(("proc.env", "proc.aenv")):
        fld = "proc.env" if val.startswith("proc.env") else "proc.aenv"
        if _libs_field(cat, fld):
            n = len(fld)
            if len(val) > n and val[n] == "[":
                end = val.find("]", n)
                if end >= 0:
                    return fld, end + 1, None
            return fld, (n if val == fld else 0), None
    if (val.startswith("thread.cgroup") and not val.startswith("thread.cgroups")
            and _libs_field(cat, "thread.cgroup")):
        if len(val) > 13 and val[13] == ".":
            end = 14
            while end < len(val) and val[end] in _ALPHA_:
                end += 1
            return "thread.cgroup", end, None
        raise FieldError("filter syntax error: " + val)
    if val.startswith("container.mount") and _libs_field(cat, "container.mount"):
        # sinsp_filter_check_container::parse_field_name() / extract_arg()
        if val.startswith("container.mount."):
            sub = next((s for s in _CONTAINER_MOUNT_SUBS if val.startswith(s, 16)), None)
            if sub is None:
                raise FieldError("filter syntax error: " + val)
            start = val.find("[", 16)
            end = val.find("]", start) if start >= 0 else -1
            if end < 0:
                raise FieldError("filter syntax error: " + val)
            return "container.mount." + sub, end + 1, None
        if val[15:16] != "s":
            # real Falco 0.40 takes a bare container.mount (the argument is optional)
            if val[15:16] == "[":
                end = val.find("]", 15)
                if end < 0:
                    raise FieldError("filter syntax error: " + val)
                return "container.mount", end + 1, None
            return "container.mount", 15, None
        return None
    if val.startswith("fd.types") and _libs_field(cat, "fd.types"):
        # sinsp_filter_check_fd::parse_field_name(): "[<parsed64>]", or all of the text
        if val[8:9] == "[":
            end = val.find("]")
            err = number_error(val[9:end] if end >= 0 else val[9:])
            if err:
                raise FieldError(err)
            return "fd.types", (end + 1 if end >= 0 else len(val)), None
        return "fd.types", len(val), None
    if val.startswith("k8s.") and ".label" in val:
        # sinsp_filter_check_k8s::extract_arg(): ".<name>" or "[<name>]"
        dot = val.find(".label")
        fld = val[:dot + 6]
        if val[dot + 6:dot + 7] != "s" and _libs_field(cat, fld):
            n = len(fld)
            c = val[n:n + 1]
            if c == ".":
                end = n + 1
                while end < len(val) and val[end] in _K8S_LABEL_CHARS:
                    end += 1
                return fld, end, None
            if c == "[":
                end = val.find("]", n)
                if end < 0:
                    raise FieldError(f"the field '{fld}' requires an argument but ']' is not "
                                     "found")
                return fld, end + 1, None
            raise FieldError("filter syntax error: " + val)
    return None


@lru_cache(maxsize=4096)
def resolve_field(cat, name: str, arg: str | None, plugins: frozenset) -> tuple[str, str | None]:
    """(type, error) of the field `name[arg]` of a condition: the compiler creates it with
    create_filtercheck_name() + new_filter_check_from_fldname(..., exact=true)."""
    full = name + "[" + arg + "]" if arg else name
    try:
        sp = parse_special(cat, full)
    except FieldError as exc:
        return "", exc.msg
    if sp is not None:
        base, used, override = sp
        if used != len(full):
            return "", "filter_check called with nonexistent field " + full
        return override or cat.fields[base][0], None
    info = cat.lookup(name, plugins)
    if info is None or (arg and not info[2]):
        # a libsinsp field without an argument of its own understands only its name
        return "", "filter_check called with nonexistent field " + full
    return info[0], None


def output_field(cat, rest: str, plugins: frozenset) -> tuple[str, int] | str:
    """new_filter_check_from_fldname(rest, exact=false) + parse_field_name() for the text after
    a '%' of an output: (field, characters used) or the error message."""
    if rest.startswith(_SPECIAL_PREFIXES):
        try:
            sp = parse_special(cat, rest)
        except FieldError as exc:
            return exc.msg
        if sp is not None:
            return sp[0], sp[1]
    cand = _NAME_CHARS.match(rest).group(0)
    return _output_name(cat, cand, plugins) or "invalid formatting token " + rest


@lru_cache(maxsize=4096)
def _output_name(cat, cand: str, plugins: frozenset) -> tuple[str, int] | None:
    for k in range(len(cand), 0, -1):
        info = cat.fields.get(cand[:k])
        if info is not None and (not info[2] or info[2] in plugins):
            return cand[:k], k  # the longest field name the text starts with
    info = cat.lookup(cand, plugins)  # a plugin field's dotted argument
    if info is not None:
        return cand, len(cand)
    return None


def output_error(cat, plugins: frozenset, transformers, fmt: str) -> str | None:
    """sinsp_evt_formatter::set_format() (libs eventformatter.cpp): the first exception it
    throws for the output `fmt`, or None. There is no "%%" escape: every '%' opens a field."""
    n = len(fmt)
    i = 0
    while True:
        i = fmt.find("%", i)
        if i < 0:
            return None
        if i == n - 1:
            return "invalid formatting syntax: formatting cannot end with a %"
        j = i + 1
        while j < n and fmt[j] in "0123456789":  # a length modifier
            j += 1
        if j == n:
            return "invalid formatting syntax: formatting cannot end with a number"
        # transformers: "name(" prefixes, no blanks allowed
        applied = []
        progress = fmt.find("(", j, j + 10) >= 0  # no transformer name is longer than 8
        while progress:
            progress = False
            for t in transformers:
                if fmt.startswith(t + "(", j) and j + len(t) + 1 < n:
                    applied.append(t)
                    j += len(t) + 1
                    progress = True
        res = output_field(cat, fmt[j:], plugins)
        if isinstance(res, str):
            return res
        field, used = res
        j += used
        if applied:
            ftype = cat.fields[field][0] if field in cat.fields else "CHARBUF"
            for t in reversed(applied):
                ftype, err = transformed_type(t, ftype, field)
                if err:
                    return err
                if j >= n or fmt[j] != ")":
                    return "missing closing transformer parenthesis: " + fmt[j - 1:]
                j += 1
        i = j
