"""The metadata of one recording session as it evolves over the call (RFC 7865 §6.1).

An SRC sends a ``complete`` snapshot in the INVITE and then ``complete`` snapshots or
``partial`` updates on re-INVITE, UPDATE and BYE.  :meth:`MetadataState.apply` folds them,
in order, into a new immutable :class:`MetadataState`: a complete snapshot replaces the
state; a partial update merges each element into the one with the same id.  The state
answers the question the recorder has for each m-line: which stream carries this SDP
``a=label`` and who sends it (:meth:`MetadataState.parties_for_label`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from srs.errors import MetadataError
from srs.siprec.metadata import (
    MAX_METADATA_ELEMENTS,
    CustomParameters,
    DataMode,
    ExtensionElement,
    Participant,
    RecordingMetadata,
    Stream,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["LabelParties", "MetadataState"]

# The metadata elements (Group, Participant, Stream, the associations): dataclasses.
_T = TypeVar("_T", bound="DataclassInstance")


@dataclass(frozen=True, slots=True)
class LabelParties:
    """The stream an SDP ``a=label`` names, and who sends and receives it.

    ``stream`` is None when no metadata stream has the label (the caller then falls back
    to what it knows without metadata).
    """

    stream: Stream | None
    senders: tuple[Participant, ...] = ()
    receivers: tuple[Participant, ...] = ()


# The most elements of one kind a session's merged metadata may hold.
MAX_MERGED_ELEMENTS = 256
# The most extension elements (each counted with its descendants) it may hold: as many as
# one document may have.  Partial updates each replace the extensions of the elements
# they name, so without this bound 256 participants, streams ... could each carry a
# document's worth, and every sidecar written would carry all of them.
MAX_MERGED_EXTENSION_ELEMENTS = MAX_METADATA_ELEMENTS


@dataclass(frozen=True, slots=True)
class MetadataState:
    """The merged metadata of a recording session.  Start from ``MetadataState()``.

    ``current`` is the merged document, always with ``data_mode`` complete.
    """

    current: RecordingMetadata = RecordingMetadata()
    updates_applied: int = 0
    # custom_parameters() of ``current``, flattened once when the state is made (every
    # sidecar written reads it).
    parameters: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False)

    @classmethod
    def _of(cls, current: RecordingMetadata, updates_applied: int) -> MetadataState:
        extensions = current.all_extensions()
        count = _count(extensions)
        if count > MAX_MERGED_EXTENSION_ELEMENTS:
            raise MetadataError(
                f"metadata update exceeds {MAX_MERGED_EXTENSION_ELEMENTS} extension elements")
        flat = CustomParameters.flatten(extensions).values
        return cls(current, updates_applied, MappingProxyType(flat))

    def apply(self, update: RecordingMetadata) -> MetadataState:
        """The state after ``update`` (RFC 7865 §6.1).

        ``complete``: the update is the whole state.  ``partial``: each element merges
        into the element with the same id (group_id, session_id, participant_id,
        stream_id; participant_id + session_id for participantsessionassoc).  Within an
        element, a field the update carries replaces the old value and a field it leaves
        out keeps it; so a ``<stop-time>`` or ``<disassociate-time>`` is added to what was
        known.  A ``<participantstreamassoc>`` that lists ``<send>``/``<recv>`` replaces
        that participant's lists.  Elements are never deleted: disassociation is a time,
        and an update that states the association again (an associate-time or streams
        without a disassociate-time) reopens it.
        """
        if update.data_mode is DataMode.COMPLETE:
            return MetadataState._of(update, self.updates_applied + 1)
        old = self.current
        merged = RecordingMetadata(
            recording_id=update.recording_id or old.recording_id,
            groups=_merge(old.groups, update.groups, lambda g: g.group_id),
            sessions=_merge(old.sessions, update.sessions, lambda s: s.session_id),
            participants=_merge(
                old.participants, update.participants, lambda p: p.participant_id
            ),
            streams=_merge(old.streams, update.streams, lambda s: s.stream_id),
            session_recording_assocs=_merge(
                old.session_recording_assocs,
                update.session_recording_assocs,
                lambda a: a.session_id,
            ),
            participant_session_assocs=_merge(
                old.participant_session_assocs,
                update.participant_session_assocs,
                lambda a: (a.participant_id, a.session_id),
            ),
            participant_stream_assocs=_merge(
                old.participant_stream_assocs,
                update.participant_stream_assocs,
                lambda a: a.participant_id,
            ),
            extensions=update.extensions or old.extensions,
            namespace=old.namespace or update.namespace,
            root_name=old.root_name,
        )
        # Partial updates only ever add elements: bound what a session can accumulate, as
        # one document is bounded (a peer could otherwise grow it update by update).
        for name in ("groups", "sessions", "participants", "streams",
                     "participant_session_assocs", "participant_stream_assocs"):
            if len(getattr(merged, name)) > MAX_MERGED_ELEMENTS:
                raise MetadataError(f"metadata update exceeds {MAX_MERGED_ELEMENTS} {name}")
        return MetadataState._of(merged, self.updates_applied + 1)

    def stream_for_label(self, label: str) -> Stream | None:
        """The stream whose ``<label>`` is the SDP ``a=label`` (RFC 7865 §6.5, RFC 4574)."""
        wanted = label.strip()
        return next((s for s in self.current.streams if s.label == wanted), None)

    def participant(self, participant_id: str) -> Participant | None:
        participants = self.current.participants
        return next((p for p in participants if p.participant_id == participant_id), None)

    def parties_for_label(self, label: str) -> LabelParties:
        """Who sends and receives the stream with this label: label -> ``<stream>`` ->
        ``<participantstreamassoc>`` ``send``/``recv`` (RFC 7865 §6.8), or old-draft
        ``<send>``/``<recv>`` inside ``<participant>``.  Never by position.

        Associations and participants with a disassociate-time are left out.
        """
        stream = self.stream_for_label(label)
        if stream is None:
            return LabelParties(None)
        sender_ids: list[str] = []
        receiver_ids: list[str] = []
        for assoc in self.current.participant_stream_assocs:
            if assoc.disassociate_time is not None:
                continue
            if stream.stream_id in assoc.send:
                sender_ids.append(assoc.participant_id)
            if stream.stream_id in assoc.recv:
                receiver_ids.append(assoc.participant_id)
        for participant in self.current.participants:
            if stream.stream_id in participant.send_stream_ids:
                sender_ids.append(participant.participant_id)
            if stream.stream_id in participant.recv_stream_ids:
                receiver_ids.append(participant.participant_id)
        return LabelParties(stream, self._present(sender_ids), self._present(receiver_ids))

    def _present(self, participant_ids: list[str]) -> tuple[Participant, ...]:
        found: list[Participant] = []
        for participant_id in dict.fromkeys(participant_ids):
            participant = self.participant(participant_id)
            if participant is None:
                # Referenced but not described: still a party, known by id only.
                participant = Participant(participant_id)
            if participant.disassociate_time is None:
                found.append(participant)
        return tuple(found)

    def custom_parameters(self) -> Mapping[str, str]:
        """Every extension element flattened (see :func:`srs.siprec.metadata.custom_parameters`),
        as it was when this state was made: no work per call."""
        return self.parameters


def _count(extensions: Iterable[ExtensionElement]) -> int:
    """Extension elements with all their descendants."""
    count, stack = 0, list(extensions)
    while stack:
        element = stack.pop()
        count += 1
        stack.extend(element.children)
    return count


def _merge(
    old: tuple[_T, ...], new: tuple[_T, ...], key: Callable[[_T], Hashable]
) -> tuple[_T, ...]:
    """Merge ``new`` into ``old`` by key, keeping first-seen order."""
    merged: dict[Hashable, _T] = {key(item): item for item in old}
    for item in new:
        previous = merged.get(key(item))
        merged[key(item)] = item if previous is None else _merge_fields(previous, item)
    return tuple(merged.values())


def _merge_fields(old: _T, new: _T) -> _T:
    """Fields ``new`` carries (not None, not empty) replace those of ``old``.

    RFC 7865 §6.7/§6.8: a participant may associate and disassociate several times.  An
    update that states an association (an associate-time, or send/recv streams) without
    a disassociate-time therefore reopens it.
    """
    changes: dict[str, object] = {}
    for f in fields(new):
        value = getattr(new, f.name)
        if value is not None and value != ():
            changes[f.name] = value
    states_association = any(name in changes for name in ("associate_time", "send", "recv"))
    if states_association and "disassociate_time" not in changes:
        changes["disassociate_time"] = None
    return replace(old, **changes)
