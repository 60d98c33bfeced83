"""RFC 7865 recording metadata, parsed leniently into frozen values.

:meth:`RecordingMetadata.parse` reads one metadata document (the ``recording-session``
body part, RFC 7866 §9).  Elements are matched by local name, case-insensitively, whatever
their namespace or prefix, because SRCs disagree on both: ``urn:ietf:params:xml:ns:
recording:1`` (RFC 7865 §6.1), ``...:recording`` without ``:1`` and BroadWorks'
``urn:ietf:params:xml:ns:siprec`` with root ``recording_metadata`` all read the same.
Old-draft names (``id``/``session`` attributes, ``<aor>``, ``<send>`` inside
``<participant>``) are read too.  Every element outside the model is kept as an
:class:`ExtensionElement`; :func:`custom_parameters` flattens them into a ``dict``.

Missing optional elements never fail a parse; only XML that cannot be read at all (or
that is over the limits, or uses a DTD or entities) raises
:class:`~srs.errors.MetadataError` (400).  Merging documents over a call is
:mod:`srs.siprec.metadata_state`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import fromstring

from srs.errors import MetadataError

__all__ = [
    "DataMode",
    "ExtensionElement",
    "Group",
    "MAX_METADATA_BYTES",
    "MAX_METADATA_ELEMENTS",
    "NameId",
    "Participant",
    "ParticipantSessionAssoc",
    "ParticipantStreamAssoc",
    "RecordingMetadata",
    "Session",
    "SessionRecordingAssoc",
    "Stream",
    "custom_parameters",
    "CustomParameters",
]

MAX_METADATA_BYTES = 65_536
MAX_METADATA_ELEMENTS = 2_000
MAX_METADATA_DEPTH = 32

# Root local names: RFC 7865 §6.1 ``recording``; BroadWorks ``recording_metadata``; the
# early drafts' ``recording-metadata``.
_ROOT_NAMES = frozenset(("recording", "recording_metadata", "recording-metadata"))
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class DataMode(enum.StrEnum):
    """RFC 7865 §6.1: a ``complete`` snapshot or a ``partial`` update."""

    COMPLETE = "complete"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class ExtensionElement:
    """An element srs does not model, kept whole: namespace URI ("" for none), local name,
    stripped text, attributes (local name, value) and child elements."""

    namespace: str
    local_name: str
    text: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    children: tuple[ExtensionElement, ...] = ()

    def attribute(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.attributes if k.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class NameId:
    """A participant's name: ``<nameID aor=...><name xml:lang=...>`` (RFC 7865 §6.4)."""

    aor: str | None = None
    name: str | None = None
    name_lang: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """A communication session group (RFC 7865 §6.2)."""

    group_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[ExtensionElement, ...] = ()


@dataclass(frozen=True, slots=True)
class Session:
    """A communication session (RFC 7865 §6.3).  Times are the xs:dateTime text as sent."""

    session_id: str
    sip_session_ids: tuple[str, ...] = ()
    group_ref: str | None = None
    start_time: str | None = None
    stop_time: str | None = None
    extensions: tuple[ExtensionElement, ...] = ()


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant (RFC 7865 §6.4).

    ``send_stream_ids`` / ``recv_stream_ids`` come from old-draft ``<send>``/``<recv>``
    inside ``<participant>``; RFC 7865 puts them in ``<participantstreamassoc>``.
    ``disassociate_time`` comes from a ``<disassociate-time>`` inside the participant.
    """

    participant_id: str
    name_ids: tuple[NameId, ...] = ()
    send_stream_ids: tuple[str, ...] = ()
    recv_stream_ids: tuple[str, ...] = ()
    associate_time: str | None = None
    disassociate_time: str | None = None
    extensions: tuple[ExtensionElement, ...] = ()

    @property
    def aor(self) -> str | None:
        """The first address of record given."""
        return next((n.aor for n in self.name_ids if n.aor), None)

    @property
    def name(self) -> str | None:
        """The first display name given."""
        return next((n.name for n in self.name_ids if n.name), None)


@dataclass(frozen=True, slots=True)
class Stream:
    """A media stream (RFC 7865 §6.5): ``label`` is the SDP ``a=label`` (RFC 4574)."""

    stream_id: str
    label: str | None = None
    session_id: str | None = None
    extensions: tuple[ExtensionElement, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionRecordingAssoc:
    """``<sessionrecordingassoc>`` (RFC 7865 §6.6)."""

    session_id: str
    associate_time: str | None = None
    disassociate_time: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantSessionAssoc:
    """``<participantsessionassoc>`` (RFC 7865 §6.7)."""

    participant_id: str
    session_id: str | None = None
    associate_time: str | None = None
    disassociate_time: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantStreamAssoc:
    """``<participantstreamassoc>`` (RFC 7865 §6.8): the streams a participant sends and
    receives."""

    participant_id: str
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    associate_time: str | None = None
    disassociate_time: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """One metadata document (RFC 7865 §6).

    ``namespace`` and ``root_name`` say which dialect was read.  ``recording_id`` is the
    root's ``id`` attribute if it has one.  ``extensions`` holds unmodelled elements at
    the root (and in a root-level ``<extensiondata>``).
    """

    data_mode: DataMode = DataMode.COMPLETE
    recording_id: str | None = None
    groups: tuple[Group, ...] = ()
    sessions: tuple[Session, ...] = ()
    participants: tuple[Participant, ...] = ()
    streams: tuple[Stream, ...] = ()
    session_recording_assocs: tuple[SessionRecordingAssoc, ...] = ()
    participant_session_assocs: tuple[ParticipantSessionAssoc, ...] = ()
    participant_stream_assocs: tuple[ParticipantStreamAssoc, ...] = ()
    extensions: tuple[ExtensionElement, ...] = ()
    namespace: str = ""
    root_name: str = "recording"

    @classmethod
    def parse(cls, data: bytes) -> RecordingMetadata:
        return _read(_parse_xml(data))

    def all_extensions(self) -> tuple[ExtensionElement, ...]:
        """Every extension element of the document, root first, then per element."""
        owners: Iterable[tuple[ExtensionElement, ...]] = (
            self.extensions,
            *(g.extensions for g in self.groups),
            *(s.extensions for s in self.sessions),
            *(p.extensions for p in self.participants),
            *(s.extensions for s in self.streams),
        )
        return tuple(ext for owner in owners for ext in owner)


def _parse_xml(data: bytes) -> Element:
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata over {MAX_METADATA_BYTES} bytes")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        # Entities and DTDs are refused: billion laughs, external entity reads.
        raise MetadataError("metadata refused: DOCTYPE (DTD) not allowed") from None
    except EntitiesForbidden:
        raise MetadataError("metadata refused: entity declaration not allowed") from None
    except DefusedXmlException as error:
        raise MetadataError(f"metadata refused: {type(error).__name__}") from None
    except ParseError as error:
        raise MetadataError(f"metadata is not well-formed XML: {error}") from None
    except LookupError:
        raise MetadataError("metadata declares an unknown encoding") from None
    except ValueError:
        # expat decodes only single-byte codecs and UTF-8/16 itself: a declared multi-byte
        # codec Python knows (UTF-7, Shift_JIS) is refused by the parser with ValueError.
        raise MetadataError(
            f"metadata declares an unsupported encoding ({_declared_encoding(data)})") from None
    _check_shape(root)
    return root


# The encoding name of an XML declaration (XML 1.0 §4.3.3 EncName), for the error text.
_ENCODING_DECL = re.compile(rb"""encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]{0,39})["']""")


def _declared_encoding(data: bytes) -> str:
    found = _ENCODING_DECL.search(data[:256])
    return found.group(1).decode("ascii") if found else "?"


def _check_shape(root: Element) -> None:
    """Element count and depth limits, checked without recursion."""
    count = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if count > MAX_METADATA_ELEMENTS:
            raise MetadataError(f"metadata over {MAX_METADATA_ELEMENTS} elements")
        if depth > MAX_METADATA_DEPTH:
            raise MetadataError(f"metadata nested deeper than {MAX_METADATA_DEPTH}")
        stack.extend((child, depth + 1) for child in element)


def _split_tag(tag: object) -> tuple[str, str]:
    """(namespace, local name) of an ElementTree tag ``{uri}local``."""
    if not isinstance(tag, str):  # comments and processing instructions
        return "", ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _local(element: Element) -> str:
    return _split_tag(element.tag)[1].lower()


def _text(element: Element) -> str:
    return (element.text or "").strip()


def _attr(element: Element, *names: str) -> str | None:
    """The first present attribute among ``names`` (local names, case-insensitive)."""
    by_local = {_split_tag(key)[1].lower(): value.strip() for key, value in element.attrib.items()}
    for name in names:
        value = by_local.get(name.lower())
        if value:
            return value
    return None


def _extension(element: Element) -> ExtensionElement:
    namespace, local = _split_tag(element.tag)
    return ExtensionElement(
        namespace=namespace,
        local_name=local,
        text=_text(element),
        attributes=tuple((_split_tag(k)[1], v) for k, v in element.attrib.items()),
        children=tuple(_extension(child) for child in element if _split_tag(child.tag)[1]),
    )


def _read(root: Element) -> RecordingMetadata:
    """Read the document's children by local name into the model."""
    namespace, root_name = _split_tag(root.tag)
    if root_name.lower() not in _ROOT_NAMES:
        raise MetadataError(f"metadata root is <{root_name[:40]}>, not <recording>")
    data_mode = DataMode.COMPLETE
    groups: list[Group] = []
    sessions: list[Session] = []
    participants: list[Participant] = []
    streams: list[Stream] = []
    recording_assocs: list[SessionRecordingAssoc] = []
    session_assocs: list[ParticipantSessionAssoc] = []
    stream_assocs: list[ParticipantStreamAssoc] = []
    extensions: list[ExtensionElement] = []
    for child in root:
        name = _local(child)
        if name == "datamode":
            # RFC 7865 §6.1: complete unless it says partial.  Tolerated: any case
            # ("Partial" from Sonus/Ribbon).
            if _text(child).lower() == DataMode.PARTIAL:
                data_mode = DataMode.PARTIAL
        elif name == "group" and (group_id := _attr(child, "group_id", "id")):
            groups.append(_group(group_id, child))
        elif name == "session" and (session_id := _attr(child, "session_id", "id")):
            sessions.append(_session(session_id, child))
        elif name == "participant" and (pid := _attr(child, "participant_id", "id")):
            participants.append(_participant(pid, child))
        elif name == "stream" and (stream_id := _attr(child, "stream_id", "id")):
            streams.append(_stream(stream_id, child))
        elif name == "sessionrecordingassoc" and (sid := _attr(child, "session_id")):
            recording_assocs.append(SessionRecordingAssoc(sid, *_times(child)))
        elif name == "participantsessionassoc" and (pid := _attr(child, "participant_id")):
            session_assocs.append(
                ParticipantSessionAssoc(pid, _attr(child, "session_id"), *_times(child))
            )
        elif name == "participantstreamassoc" and (pid := _attr(child, "participant_id")):
            stream_assocs.append(_stream_assoc(pid, child))
        elif name in _MODEL_NAMES:
            continue  # a model element without its id: nothing to key it by
        elif _split_tag(child.tag)[1]:
            extensions.extend(_extensions_of(child))
    return RecordingMetadata(
        data_mode=data_mode,
        recording_id=_attr(root, "id"),
        groups=tuple(groups),
        sessions=tuple(sessions),
        participants=tuple(participants),
        streams=tuple(streams),
        session_recording_assocs=tuple(recording_assocs),
        participant_session_assocs=tuple(session_assocs),
        participant_stream_assocs=tuple(stream_assocs),
        extensions=tuple(extensions),
        namespace=namespace,
        root_name=root_name,
    )


_MODEL_NAMES = frozenset(
    (
        "group",
        "session",
        "participant",
        "stream",
        "sessionrecordingassoc",
        "participantsessionassoc",
        "participantstreamassoc",
    )
)


def _extensions_of(element: Element) -> list[ExtensionElement]:
    """An unmodelled element; an ``<extensiondata>`` wrapper (old drafts, Oracle) gives
    its children instead of itself."""
    if _local(element) == "extensiondata":
        return [_extension(child) for child in element if _split_tag(child.tag)[1]]
    return [_extension(element)]


def _times(element: Element) -> tuple[str | None, str | None]:
    associate = disassociate = None
    for child in element:
        name = _local(child)
        if name == "associate-time":
            associate = _text(child) or None
        elif name == "disassociate-time":
            disassociate = _text(child) or None
    return associate, disassociate


def _group(group_id: str, element: Element) -> Group:
    extensions = [
        ext
        for child in element
        if _split_tag(child.tag)[1] and _local(child) not in ("associate-time", "disassociate-time")
        for ext in _extensions_of(child)
    ]
    return Group(group_id, *_times(element), extensions=tuple(extensions))


def _session(session_id: str, element: Element) -> Session:
    sip_session_ids: list[str] = []
    group_ref = start_time = stop_time = None
    extensions: list[ExtensionElement] = []
    for child in element:
        name = _local(child)
        if name == "sipsessionid":
            if text := " ".join(_text(child).split()):
                sip_session_ids.append(text)
        elif name == "group-ref":
            group_ref = _text(child) or None
        elif name in ("start-time", "associate-time"):
            # Tolerated: old-draft <associate-time> for the start (Oracle).
            start_time = start_time or _text(child) or None
        elif name in ("stop-time", "disassociate-time"):
            stop_time = stop_time or _text(child) or None
        elif _split_tag(child.tag)[1]:
            extensions.extend(_extensions_of(child))
    return Session(
        session_id, tuple(sip_session_ids), group_ref, start_time, stop_time, tuple(extensions)
    )


def _stream_ids(element: Element) -> str | None:
    """A ``<send>``/``<recv>`` value; tolerated: old-draft ``<send><id>x</id></send>``."""
    if text := _text(element):
        return text
    return next((_text(c) for c in element if _local(c) == "id" and _text(c)), None)


def _participant(participant_id: str, element: Element) -> Participant:
    name_ids: list[NameId] = []
    send: list[str] = []
    recv: list[str] = []
    old_aor = old_name = old_lang = None
    associate = disassociate = None
    extensions: list[ExtensionElement] = []
    for child in element:
        name = _local(child)
        if name == "nameid":
            name_ids.append(_name_id(child))
        elif name == "aor":
            old_aor = old_aor or _text(child) or None  # old drafts (Oracle)
        elif name == "name":
            old_name, old_lang = old_name or _text(child) or None, child.get(_XML_LANG)
        elif name in ("send", "recv") and (stream_id := _stream_ids(child)):
            (send if name == "send" else recv).append(stream_id)  # old drafts
        elif name in ("associate-time", "start-time"):
            associate = associate or _text(child) or None
        elif name in ("disassociate-time", "stop-time"):
            disassociate = disassociate or _text(child) or None  # Sonus/Ribbon on BYE
        elif _split_tag(child.tag)[1]:
            extensions.extend(_extensions_of(child))
    if old_aor is not None or old_name is not None:
        name_ids.append(NameId(old_aor, old_name, old_lang))
    return Participant(
        participant_id,
        tuple(name_ids),
        tuple(send),
        tuple(recv),
        associate,
        disassociate,
        tuple(extensions),
    )


def _name_id(element: Element) -> NameId:
    aor = _attr(element, "aor")
    name_element = next((c for c in element if _local(c) == "name"), None)
    if name_element is None:
        return NameId(aor)
    return NameId(aor, _text(name_element) or None, name_element.get(_XML_LANG))


def _stream(stream_id: str, element: Element) -> Stream:
    label = None
    extensions: list[ExtensionElement] = []
    for child in element:
        if _local(child) == "label":
            label = label or _text(child) or None
        elif _split_tag(child.tag)[1]:
            extensions.extend(_extensions_of(child))
    return Stream(stream_id, label, _attr(element, "session_id", "session"), tuple(extensions))


def _stream_assoc(participant_id: str, element: Element) -> ParticipantStreamAssoc:
    send = [s for c in element if _local(c) == "send" and (s := _stream_ids(c))]
    recv = [s for c in element if _local(c) == "recv" and (s := _stream_ids(c))]
    return ParticipantStreamAssoc(participant_id, tuple(send), tuple(recv), *_times(element))


def custom_parameters(extensions: Iterable[ExtensionElement]) -> dict[str, str]:
    """Flatten extension elements into custom parameters.

    Key scheme, applied depth first in document order:

    * an element with ``name`` and ``value`` attributes (Twilio ``<Parameter>``, generic
      name/value pairs) gives ``{name: value}``;
    * otherwise an element with text gives ``{path: text}``, where ``path`` joins the
      local names from the outermost extension element down with ``.``
      (``jb:callsid`` -> ``callsid``; ``<callData><ucid>`` -> ``callData.ucid``);
    * each other attribute gives ``{path@attribute: value}``.

    A key seen again gets ``#2``, ``#3``... appended, so no value is lost.
    """
    return CustomParameters.flatten(extensions).values


class CustomParameters:
    """The flattening of :func:`custom_parameters`, in time linear in the number of values.

    Each key remembers the next ``#n`` it would take, so the k-th repetition of a key
    costs one lookup, not k (a document of 2,000 identical names would otherwise take two
    million).  ``collisions`` counts the lookups that found a taken key: each key taken
    is passed over at most twice (by its base key's counter and by its own).
    """

    __slots__ = ("values", "collisions", "_next")

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.collisions = 0
        self._next: dict[str, int] = {}

    @classmethod
    def flatten(cls, extensions: Iterable[ExtensionElement]) -> CustomParameters:
        flat = cls()
        stack = [(ext, ext.local_name) for ext in reversed(list(extensions))]
        while stack:
            element, path = stack.pop()
            name, value = element.attribute("name"), element.attribute("value")
            if name is not None and value is not None:
                flat.put(name, value)
            else:
                if element.text:
                    flat.put(path, element.text)
                for attribute, attribute_value in element.attributes:
                    flat.put(f"{path}@{attribute}", attribute_value)
            stack.extend((c, f"{path}.{c.local_name}") for c in reversed(element.children))
        return flat

    def put(self, key: str, value: str) -> None:
        n = self._next.get(key, 1)
        candidate = key if n == 1 else f"{key}#{n}"
        while candidate in self.values:
            self.collisions += 1
            n += 1
            candidate = f"{key}#{n}"
        self._next[key] = n + 1
        self.values[candidate] = value
