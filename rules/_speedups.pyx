# cython: language_level=3, boundscheck=False, wraparound=False, binding=False
"""Compiled twins of the scan's hottest pure-Python functions; same results, a few times faster.

=======================  ===================================================================================
here                     the definition (used where this module is not built)
=======================  ===================================================================================
``fill``                 :func:`rules.page.fill_python`: the walk of a page, including the decoded strings
                         of escaped JSON (:func:`rules.walk.escaped_leaves`)
``light_and_compact``    :func:`rules.normalize.light_and_compact_python`
``light_bytes``          :func:`rules.normalize.light_bytes_python`
``light_indexes_of_full`` :func:`rules.normalize.light_indexes_of_full_python`
=======================  ===================================================================================

``pip install`` builds this module where a C compiler is present; ``rules.page.COMPILED`` says whether it
was. ``tests/rules/test_speedups.py`` checks that each pair gives the same results. Only an element type the
walk does not know goes back to :class:`rules.page.Page`'s own method.
"""

from collections.abc import Mapping
from types import MemberDescriptorType

from orjson import JSONDecodeError
from orjson import loads as orjson_loads

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy


cdef extern from "Python.h":
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)


cdef dict FIELDS
cdef list PATHS
cdef tuple CCD, TEXT0
cdef Py_ssize_t CACHED = 0, DEPTH_LIMIT = 0
cdef object element_fields, image_url, abstract, escape_pointer, TEXT_FIELD
cdef object make_field = tuple.__new__
cdef bint loaded = False


cdef int load() except -1:
    # On first use rather than at import: rules.page imports this module while it is being initialized.
    global FIELDS, PATHS, CCD, TEXT0, CACHED, DEPTH_LIMIT, element_fields, image_url, abstract, loaded
    global escape_pointer, TEXT_FIELD
    from rules import page, walk
    escape_pointer, TEXT_FIELD = walk.escape_pointer, walk.TextField
    FIELDS, PATHS, CCD, TEXT0, CACHED = page._FIELDS, page._PATHS, page._CCD, page._TEXT0, page._CACHED
    element_fields, image_url, abstract = page._element_fields, page._image_url, page._abstract
    DEPTH_LIMIT = walk.MAX_DEPTH
    load_message()
    loaded = True
    return 0


cdef inline bint is_map(object value):
    return type(value) is dict or isinstance(value, Mapping)


cdef inline object get(object mapping, str key):
    if type(mapping) is dict:
        return (<dict>mapping).get(key)
    return mapping.get(key)


cdef inline bint is_textual(tuple spec):
    # spec is (prefix, template); template is a TextField, whose item 4 is ``textual``.
    return (<tuple>spec[1])[4] is True


cdef class Walker:
    """Appends the fields and elements of messages to a :class:`rules.page.Page`'s lists."""

    cdef object page
    cdef list texts, owners, specs, other_texts, other_owners, other_specs, other_at
    cdef list elements, element_owners

    def __init__(self, page):
        self.page = page
        self.texts = page.texts
        self.owners = page.owners
        self.specs = page.specs
        self.other_texts = page.other_texts
        self.other_owners = page.other_owners
        self.other_specs = page.other_specs
        self.other_at = page.other_at
        self.elements = page.elements
        self.element_owners = page.element_owners

    cdef int add(self, Py_ssize_t n, tuple spec, object text, bint json) except -1:
        if is_textual(spec):
            self.texts.append(text)
            self.owners.append(n)
            self.specs.append(spec)
        else:
            self.other_texts.append(text)
            self.other_owners.append(n)
            self.other_specs.append(spec)
            self.other_at.append(len(self.texts))
        if json and "\\" in text:
            self.escaped_leaves(n, spec, text)
        return 0

    cdef int escaped_leaves(self, Py_ssize_t n, tuple spec, object text) except -1:
        # rules.walk.escaped_leaves: the strings of a JSON document that its text shows escaped.
        cdef object stripped = text.lstrip()
        if not stripped.startswith(("{", "[", '"')):
            return 0
        try:
            document = orjson_loads(stripped)
        except JSONDecodeError:
            return 0
        self.json_strings(n, spec, text, document, "")
        return 0

    cdef int json_strings(self, Py_ssize_t n, tuple spec, object text, object value, str pointer) except -1:
        # rules.walk.json_strings, depth first in document order (orjson bounds the depth).
        cdef object template
        cdef Py_ssize_t k
        if type(value) is str:
            if value and value not in text:
                template = (<tuple>spec[1])
                template = make_field(
                    TEXT_FIELD, (f"{template[0]}#{pointer}", template[1], template[2], "", template[4])
                )
                self.add(n, ((<tuple>spec)[0], template), value, False)
        elif type(value) is dict:
            for key, child in (<dict>value).items():
                self.json_strings(n, spec, text, child, f"{pointer}/{escape_pointer(str(key))}")
        elif type(value) is list:
            for k in range(len(<list>value)):
                self.json_strings(n, spec, text, (<list>value)[k], f"{pointer}/{k}")
        return 0

    cdef int body(self, Py_ssize_t n, object body, str prefix, Py_ssize_t depth) except -1:
        cdef Py_ssize_t i = -1
        cdef str path
        cdef tuple entry, spec
        cdef object element, kind, content, known, value
        for element in body:
            i += 1
            if not is_map(element):
                continue
            kind = get(element, "MsgType")
            content = get(element, "MsgContent")
            if type(kind) is not str or not is_map(content):
                continue
            path = <str>PATHS[i] if i < CACHED else f"MsgBody[{i}]"
            self.elements.append((prefix + path if prefix else path, kind, content, depth))
            self.element_owners.append(n)
            known = FIELDS.get(kind)
            if known is None:
                self.page._unknown(n, content, f"{path}.MsgContent.", prefix, kind)
                continue
            for entry in ((<list>known)[i] if i < CACHED else element_fields(kind, i)):
                value = get(content, <str>entry[0])
                if type(value) is not str or not value:
                    continue
                spec = (prefix, (<tuple>entry[1])[1]) if prefix else <tuple>entry[1]
                if (entry[2] is True and "\\" in value) or not is_textual(spec):
                    self.add(n, spec, value, entry[2] is True)
                else:
                    self.texts.append(value)
                    self.owners.append(n)
                    self.specs.append(spec)
            if kind == "TIMImageElem":
                self.images(n, content, i, prefix)
            elif kind == "TIMRelayElem":
                self.relay(n, content, f"{prefix}{path}.MsgContent.", depth)
        return 0

    cdef int images(self, Py_ssize_t n, object content, Py_ssize_t i, str prefix) except -1:
        cdef Py_ssize_t j = -1
        infos = get(content, "ImageInfoArray")
        if not isinstance(infos, list):
            return 0
        for info in <list>infos:
            j += 1
            if not is_map(info):
                continue
            url = get(info, "URL")
            if isinstance(url, str) and url:
                self.add(n, (prefix, image_url(i, j)), url, False)
        return 0

    cdef int relay(self, Py_ssize_t n, object content, str base, Py_ssize_t depth) except -1:
        cdef Py_ssize_t j = -1
        abstracts = get(content, "AbstractList")
        if isinstance(abstracts, list):
            for line in <list>abstracts:
                j += 1
                if isinstance(line, str) and line:
                    self.add(n, (base, abstract(j)), line, False)
        items = get(content, "MsgList")
        if not isinstance(items, list) or depth + 1 > DEPTH_LIMIT:
            return 0
        j = -1
        for item in <list>items:
            j += 1
            if not is_map(item):
                continue
            prefix = f"{base}MsgList[{j}]."
            body = get(item, "MsgBody")
            if isinstance(body, list):
                self.body(n, body, prefix, depth + 1)
            ccd = get(item, "CloudCustomData")
            if isinstance(ccd, str) and ccd:
                self.add(n, (prefix, <tuple>CCD[1]), ccd, True)
        return 0


# Message is a slotted dataclass: its fields sit at fixed offsets in the object, where reading them costs a
# pointer load instead of an attribute lookup (a sixth of the walk's time). The offsets are read off the
# class's own member descriptors at load time.
cdef extern from "structmember.h":  # PyMemberDef (Python.h declares it only from 3.12 on)
    ctypedef struct PyMemberDef:
        Py_ssize_t offset

cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member

cdef object MESSAGE = None
cdef Py_ssize_t MSG_KEY, FROM_ACCOUNT, TIMESTAMP, BODY, CLOUD_CUSTOM_DATA


cdef Py_ssize_t slot_offset(type cls, str name) except -1:
    descriptor = cls.__dict__[name]
    if type(descriptor) is not MemberDescriptorType:
        raise TypeError(f"{cls.__name__}.{name} is not a slot")
    return (<PyMemberDescrObject*><PyObject*>descriptor).d_member.offset


cdef inline object slot(object instance, Py_ssize_t offset):
    cdef PyObject* value = (<PyObject**>((<char*><PyObject*>instance) + offset))[0]
    if value == NULL:  # never for a constructed frozen dataclass; the same error as attribute access
        raise AttributeError("slot not set")
    return <object>value


cdef int load_message() except -1:
    global MESSAGE, MSG_KEY, FROM_ACCOUNT, TIMESTAMP, BODY, CLOUD_CUSTOM_DATA
    from worker.tim.models import Message
    MSG_KEY = slot_offset(Message, "msg_key")
    FROM_ACCOUNT = slot_offset(Message, "from_account")
    TIMESTAMP = slot_offset(Message, "timestamp")
    BODY = slot_offset(Message, "body")
    CLOUD_CUSTOM_DATA = slot_offset(Message, "cloud_custom_data")
    MESSAGE = Message
    return 0


def fill(page, messages):
    """Append the fields and elements of ``messages`` to ``page`` (a new :class:`rules.page.Page`)."""
    if not loaded:
        load()
    cdef Walker walker = Walker(page)
    cdef list texts = walker.texts, owners = walker.owners, specs = walker.specs
    cdef list elements = walker.elements, element_owners = walker.element_owners
    cdef list keys = page.keys, senders = page.senders, times = page.times, starts = page.starts
    cdef Py_ssize_t n = -1
    cdef object body, element, content, text, ccd
    for message in messages:
        n += 1
        starts.append(len(texts))
        if type(message) is MESSAGE:
            keys.append(slot(message, MSG_KEY))
            senders.append(slot(message, FROM_ACCOUNT))
            times.append(slot(message, TIMESTAMP))
            body = slot(message, BODY)
            ccd = slot(message, CLOUD_CUSTOM_DATA)
        else:
            keys.append(message.msg_key)
            senders.append(message.from_account)
            times.append(message.timestamp)
            body = message.body
            ccd = message.cloud_custom_data
        # A lone text element without CloudCustomData: half of all chat messages.
        if not ccd and len(body) == 1:
            element = body[0]
            if type(element) is dict and (<dict>element).get("MsgType") == "TIMTextElem":
                content = (<dict>element).get("MsgContent")
                if type(content) is dict:
                    elements.append(("MsgBody[0]", "TIMTextElem", content, 0))
                    element_owners.append(n)
                    text = (<dict>content).get("Text")
                    if type(text) is str and text:
                        texts.append(text)
                        owners.append(n)
                        specs.append(TEXT0)
                    continue
        walker.body(n, body, "", 0)
        if ccd:
            walker.add(n, CCD, ccd, True)
    starts.append(len(texts))


cdef inline bint is_word(Py_UCS4 c):
    # A letter or digit of the light form: what rules.normalize's _WORD_RUN matches.
    return c >= 0x80 or (c >= 0x61 and c <= 0x7A) or (c >= 0x30 and c <= 0x39)


def light_indexes_of_full(str light, str full, offsets):
    """The indexes in ``light`` of the characters at ``offsets`` (ascending) of its full form."""
    cdef Py_ssize_t n = len(light), at = 0, seen = 0, pos = 0, before = 0, offset
    cdef list out = []
    for offset in offsets:
        while pos < offset:  # letters and digits of the full form before offset
            if full[pos] != " ":
                before += 1
            pos += 1
        while at < n:
            if is_word(light[at]):
                if seen == before:
                    break
                seen += 1
            at += 1
        out.append(at)
    return out


# ---- light_bytes --------------------------------------------------------------------------------------------

cdef list BMP_LIGHT = [None] * 0x10000  # code point -> its light form in UTF-8, filled on first sight
cdef dict ASTRAL_LIGHT = {}
cdef Py_ssize_t ASTRAL_LIMIT = 1 << 16


cdef bytes compute_light(Py_ssize_t c):
    from rules.normalize import light_joined  # the definition, per character

    return light_joined(chr(<Py_UCS4>c)).encode()


cdef bytes light_char(Py_ssize_t c):
    # The light form of a character outside the fast ranges, memoized.
    cdef object found
    if c < 0x10000:
        found = BMP_LIGHT[c]
        if found is None:
            found = BMP_LIGHT[c] = compute_light(c)
        return <bytes>found
    found = ASTRAL_LIGHT.get(c)
    if found is None:
        found = compute_light(c)
        if len(ASTRAL_LIGHT) < ASTRAL_LIMIT:
            ASTRAL_LIGHT[c] = found
    return <bytes>found


cdef inline bint is_ascii_control(unsigned int c) noexcept:
    # Removed by the light form; NUL (the field sentinel), tab, LF and CR are kept.
    return (c >= 1 and c <= 8) or c == 11 or c == 12 or (c >= 14 and c <= 31) or c == 127


ctypedef fused char_t:  # the three widths of a str's characters (Py_UCS1, Py_UCS2, Py_UCS4)
    uint8_t
    uint16_t
    uint32_t


cdef struct Buffers:
    unsigned char* light
    unsigned char* compact  # never longer than light
    Py_ssize_t size  # allocated, each
    Py_ssize_t light_used
    Py_ssize_t compact_used


cdef inline bint is_kept_in_compact(unsigned int b) noexcept:
    # A byte of the light form that the compact form keeps: all but the ASCII separators.
    return b >= 0x80 or b == 0 or (b >= 0x61 and b <= 0x7A) or (b >= 0x30 and b <= 0x39)


cdef int fold_into(const char_t* chars, Py_ssize_t n, Buffers* out, bint with_compact) except -1:
    # Room for 3 bytes a character, what all but light_char() need, is there on entry; grown when needed.
    cdef Py_ssize_t k = 0, j = 0, m, i, b
    cdef unsigned char* light = out.light
    cdef unsigned char* compact = out.compact
    cdef unsigned char* grown
    cdef const unsigned char* bytes_of
    cdef unsigned int c
    cdef bytes piece
    for i in range(n):
        c = chars[i]
        if c < 0x80:
            if c >= 0x41 and c <= 0x5A:
                c += 32
            elif is_ascii_control(c):
                continue
            light[k] = <unsigned char>c
            k += 1
            if with_compact and is_kept_in_compact(c):
                compact[j] = <unsigned char>c
                j += 1
        elif (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or (0xAC00 <= c <= 0xD7A3):
            # CJK ideographs and Hangul syllables: unchanged by every step of the light form.
            light[k] = <unsigned char>(0xE0 | (c >> 12))
            light[k + 1] = <unsigned char>(0x80 | ((c >> 6) & 0x3F))
            light[k + 2] = <unsigned char>(0x80 | (c & 0x3F))
            if with_compact:
                memcpy(compact + j, light + k, 3)
                j += 3
            k += 3
        else:
            piece = light_char(c)
            m = len(piece)
            if k + m + 3 * (n - i - 1) > out.size:  # one character's light form can be 18 characters long
                out.size = 2 * out.size + m
                grown = <unsigned char*>PyMem_Realloc(out.light, out.size)
                if grown == NULL:
                    raise MemoryError()
                out.light = light = grown
                if with_compact:
                    grown = <unsigned char*>PyMem_Realloc(out.compact, out.size)
                    if grown == NULL:
                        raise MemoryError()
                    out.compact = compact = grown
            bytes_of = <const unsigned char*>(<const char*>piece)
            memcpy(light + k, bytes_of, m)
            k += m
            for b in range(m if with_compact else 0):
                if is_kept_in_compact(bytes_of[b]):
                    compact[j] = bytes_of[b]
                    j += 1
    out.light_used, out.compact_used = k, j
    return 0


cdef tuple fold(str text, bint with_compact):
    # (light, compact or None) of text, reading its characters at their stored width.
    cdef Py_ssize_t n = len(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    cdef Buffers out
    out.size, out.light_used, out.compact_used = 3 * n + 16, 0, 0
    out.light = <unsigned char*>PyMem_Malloc(out.size)
    out.compact = <unsigned char*>PyMem_Malloc(out.size) if with_compact else NULL
    try:
        if out.light == NULL or (with_compact and out.compact == NULL):
            raise MemoryError()
        if kind == 1:
            fold_into(<const uint8_t*>data, n, &out, with_compact)
        elif kind == 2:
            fold_into(<const uint16_t*>data, n, &out, with_compact)
        else:
            fold_into(<const uint32_t*>data, n, &out, with_compact)
        light = PyBytes_FromStringAndSize(<const char*>out.light, out.light_used)
        if not with_compact:
            return light, None
        return light, PyBytes_FromStringAndSize(<const char*>out.compact, out.compact_used)
    finally:
        PyMem_Free(out.light)
        PyMem_Free(out.compact)


def light_and_compact(str text):
    """``light_joined(text).encode()``, and that without separators: both in one pass over the characters."""
    return fold(text, True)


def light_bytes(str text):
    """``light_joined(text).encode()``."""
    return fold(text, False)[0]
