"""srs.siprec.metadata and srs.siprec.metadata_state: RFC 7865 metadata in every dialect,
and its merging."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import MetadataError
from srs.siprec.metadata import (
    MAX_METADATA_BYTES,
    DataMode,
    ExtensionElement,
    Group,
    NameId,
    Participant,
    ParticipantSessionAssoc,
    ParticipantStreamAssoc,
    RecordingMetadata,
    Session,
    SessionRecordingAssoc,
    Stream,
    custom_parameters,
)
from srs.siprec.metadata_state import LabelParties, MetadataState
from tests.siprec.documents import partial_with_extensions

DATA = Path(__file__).parents[1] / "data" / "metadata"
RECORDING_1 = "urn:ietf:params:xml:ns:recording:1"


def load(name: str) -> RecordingMetadata:
    return RecordingMetadata.parse((DATA / name).read_bytes())


def senders(state: MetadataState, label: str) -> list[str]:
    return [p.participant_id for p in state.parties_for_label(label).senders]


class TestRfc7865:
    def test_complete_document(self) -> None:
        doc = load("rfc7865_complete.xml")
        session_id = "hVpd7YQgRW2nD22h7q60JQ=="
        bob, alice = "srfBElmCRp2QB23b7Mpk0w==", "zSfPoSvdSDCmU3A3TRDxAw=="
        s96, s97 = "UAAMm5GRQKSCMVvLyl4rFw==", "i1Pz3to5hGk8fuXl+PbwCw=="
        assert doc.data_mode is DataMode.COMPLETE
        assert (doc.namespace, doc.root_name, doc.recording_id) == (RECORDING_1, "recording", None)
        assert doc.groups == (
            Group(
                "7+OTCyoxTmqmqyA/1weDAg==",
                associate_time="2010-12-16T23:41:07Z",
                extensions=(
                    ExtensionElement(
                        "urn:ietf:params:xml:ns:callcenter",
                        "call-center",
                        children=(
                            ExtensionElement(
                                "urn:ietf:params:xml:ns:callcenter",
                                "supervisor",
                                "sip:alice@atlanta.com",
                            ),
                        ),
                    ),
                ),
            ),
        )
        (session,) = doc.sessions
        assert session.session_id == session_id
        # White space inside the folded sipSessionID collapses to single spaces.
        assert session.sip_session_ids == (
            "ab30317f1a784dc48ff824d0d3715d86; remote=47755a9de7794ba387653f2099600ef2",
        )
        assert session.group_ref == "7+OTCyoxTmqmqyA/1weDAg=="
        assert (session.start_time, session.stop_time) == ("2010-12-16T23:41:07Z", None)
        assert [e.local_name for e in session.extensions] == ["mydata"]
        assert doc.participants == (
            Participant(bob, (NameId("sip:bob@biloxy.com", "Bob", "it"),)),
            Participant(alice, (NameId("sip:alice@atlanta.com", "Alice", "en"),)),
        )
        assert (doc.participants[0].aor, doc.participants[0].name) == ("sip:bob@biloxy.com", "Bob")
        assert doc.streams == (Stream(s96, "96", session_id), Stream(s97, "97", session_id))
        assert doc.session_recording_assocs == (
            SessionRecordingAssoc(session_id, "2010-12-16T23:41:07Z"),
        )
        assert doc.participant_session_assocs == (
            ParticipantSessionAssoc(bob, session_id, "2010-12-16T23:41:07Z"),
        )
        assert doc.participant_stream_assocs == (
            ParticipantStreamAssoc(bob, (s96,), (s97,)),
            ParticipantStreamAssoc(alice, (s97,), (s96,)),
        )
        assert custom_parameters(doc.all_extensions()) == {
            "call-center.supervisor": "sip:alice@atlanta.com",
            "mydata.structure": "FOO!",
            "mydata.whatever": "bar",
        }

    def test_label_query(self) -> None:
        state = MetadataState().apply(load("rfc7865_complete.xml"))
        parties = state.parties_for_label("96")
        assert parties.stream == Stream(
            "UAAMm5GRQKSCMVvLyl4rFw==", "96", "hVpd7YQgRW2nD22h7q60JQ=="
        )
        assert [p.name for p in parties.senders] == ["Bob"]
        assert [p.name for p in parties.receivers] == ["Alice"]
        assert senders(state, " 97 ") == ["zSfPoSvdSDCmU3A3TRDxAw=="]
        assert state.parties_for_label("98") == LabelParties(None)


class TestDialects:
    def test_oracle_old_draft_without_1(self) -> None:
        doc = load("oracle_old_draft_no_1_namespace.xml")
        caller, callee = doc.participants
        assert doc.namespace == "urn:ietf:params:xml:ns:recording"
        assert doc.sessions == (
            Session(
                "urn:uuid:79b2fcd8-5c7f-455c-783f-db334e5d57d0", start_time="2011-06-27T17:03:57"
            ),
        )
        assert caller.participant_id == "urn:uuid:10ac9063-76b7-40bb-4587-08ba290d7327"
        assert caller.name_ids == (NameId("sip:caller@192.0.2.40", "Caller", None),)
        assert caller.send_stream_ids == ("urn:uuid:07868c77-ef8e-4d6f-6dd5-a02ff53a1329",)
        assert caller.associate_time == "2011-06-27T17:03:57"
        assert callee.name == "Callee"
        assert [s.label for s in doc.streams] == ["1", "2"]
        assert doc.streams[0].session_id == "urn:uuid:79b2fcd8-5c7f-455c-783f-db334e5d57d0"
        apkt = "http://acmepacket.com/siprec/extensiondata"
        assert caller.extensions == (
            ExtensionElement(apkt, "callingParty", "true"),
            ExtensionElement(apkt, "in-realm", "core"),
            ExtensionElement(
                apkt,
                "header",
                attributes=(("label", "P-Asserted-Identity"),),
                children=(
                    ExtensionElement(
                        "urn:ietf:params:xml:ns:recording", "value", "sip:caller@example.com"
                    ),
                ),
            ),
        )
        assert custom_parameters(doc.all_extensions()) == {
            "callingParty": "true",
            "in-realm": "core",
            "header@label": "P-Asserted-Identity",
            "header.value": "sip:caller@example.com",
            "mode": "separate",
            "mode#2": "separate",
        }
        state = MetadataState().apply(doc)
        assert senders(state, "1") == [caller.participant_id]
        assert senders(state, "2") == [callee.participant_id]

    def test_prefixed(self) -> None:
        doc = load("prefixed_tns.xml")
        assert (doc.namespace, doc.root_name) == (RECORDING_1, "recording")
        assert doc.sessions[0].sip_session_ids == ("0123456789abcdef0123456789abcdef",)
        assert [p.aor for p in doc.participants] == ["tel:+15551230001", "tel:+15551230002"]
        assert [p.name for p in doc.participants] == ["Agent 7", None]
        state = MetadataState().apply(doc)
        assert senders(state, "a_leg") == ["cGFydC1h"]
        assert senders(state, "b_leg") == ["cGFydC1i"]

    def test_broadworks(self) -> None:
        doc = load("broadworks_siprec.xml")
        assert doc.namespace == "urn:ietf:params:xml:ns:siprec"
        assert doc.root_name == "recording_metadata"
        assert doc.sessions[0].sip_session_ids == ("BW1234567890@192.0.2.70",)
        state = MetadataState().apply(doc)
        parties = state.parties_for_label("1")
        assert [p.name for p in parties.senders] == ["Front Desk"]
        assert [p.aor for p in parties.receivers] == ["sip:+15550199@as.example.net"]

    def test_old_draft_send_id(self) -> None:
        doc = load("old_draft_send_id.xml")
        first, second = doc.participants
        assert (first.send_stream_ids, first.recv_stream_ids) == (("OLDS1",), ("OLDS2",))
        assert second.send_stream_ids == ("OLDS2",)
        state = MetadataState().apply(doc)
        assert senders(state, "10") == ["OLDP1"]
        parties = state.parties_for_label("20")
        assert [p.participant_id for p in parties.senders] == ["OLDP2"]
        assert [p.participant_id for p in parties.receivers] == ["OLDP1"]

    def test_twilio_parameters(self) -> None:
        doc = load("twilio_parameters.xml")
        expected = {"CustomerId": "C-1001", "Queue": "billing"}
        assert custom_parameters(doc.all_extensions()) == expected
        state = MetadataState().apply(doc)
        assert senders(state, "inbound_track") == ["aW5ib3VuZA=="]
        assert state.parties_for_label("outbound_track").senders[0].aor == (
            "sip:+15005550001@example.twilio.com"
        )

    def test_jambonz_callsid(self) -> None:
        doc = load("jambonz_callsid.xml")
        assert doc.sessions[0].extensions == (
            ExtensionElement(
                "http://jambonz.org/siprec", "callsid", "5e5a1b0c-8f1e-4d43-9b1a-000000000001"
            ),
        )
        state = MetadataState().apply(doc)
        assert state.custom_parameters() == {"callsid": "5e5a1b0c-8f1e-4d43-9b1a-000000000001"}

    def test_sonus_call_data(self) -> None:
        doc = load("sonus_complete_calldata.xml")
        assert custom_parameters(doc.extensions) == {
            "callData.gcid": "12345678",
            "callData.direction": "inbound",
        }
        # Ribbon/Sonus: label 1 is the agent's stream here, not the caller's.
        state = MetadataState().apply(doc)
        assert [p.name for p in state.parties_for_label("1").senders] == ["Agent"]
        assert [p.name for p in state.parties_for_label("2").senders] == ["Caller"]


class TestState:
    def test_partial_update_from_sonus_bye(self) -> None:
        complete = load("sonus_complete_calldata.xml")
        bye = load("sonus_partial_bye.xml")
        assert bye.data_mode is DataMode.PARTIAL
        assert [p.disassociate_time for p in bye.participants] == ["2024-06-25T04:58:15Z"] * 2
        state = MetadataState().apply(complete).apply(bye)
        assert state.updates_applied == 2
        (session,) = state.current.sessions
        assert session.stop_time == "2024-06-25T04:58:15Z"
        # Merged, not replaced: what the BYE left out is still known.
        assert session.sip_session_ids == ("6508053e-5280-10@198.51.100.9",)
        assert session.start_time == "2024-06-25T04:50:00Z"
        assert [p.name for p in state.current.participants] == ["Caller", "Agent"]
        assert [p.disassociate_time for p in state.current.participants] == [
            "2024-06-25T04:58:15Z"
        ] * 2
        # Participants that left are no longer reported as senders.
        assert state.parties_for_label("1").senders == ()
        assert state.parties_for_label("1").stream is not None
        assert state.custom_parameters() == {
            "callData.gcid": "12345678",
            "callData.direction": "inbound",
        }

    def test_partial_update_from_avaya_transfer(self) -> None:
        state = MetadataState().apply(load("avaya_complete.xml"))
        assert senders(state, "1") == ["QVZBWUEtUDE="]
        state = state.apply(load("avaya_ucid_partial.xml"))
        # The agent's association ended; the supervisor now sends on the same stream.
        assert senders(state, "1") == ["QVZBWUEtUDM="]
        assert [p.name for p in state.parties_for_label("1").senders] == ["Supervisor"]
        assert senders(state, "2") == ["QVZBWUEtUDI="]
        assocs = {a.participant_id: a for a in state.current.participant_stream_assocs}
        assert assocs["QVZBWUEtUDE="] == ParticipantStreamAssoc(
            "QVZBWUEtUDE=",
            ("QVZBWUEtUzE=",),
            ("QVZBWUEtUzI=",),
            disassociate_time="2024-01-10T09:15:00Z",
        )
        assert len(state.current.participants) == 3
        assert state.custom_parameters() == {"UCID": "00001002891704878100"}

    def test_reassociation_reopens(self) -> None:
        state = MetadataState().apply(load("avaya_complete.xml"))
        state = state.apply(load("avaya_ucid_partial.xml"))
        back = RecordingMetadata.parse(
            b"<recording><datamode>partial</datamode>"
            b"<participantstreamassoc participant_id='QVZBWUEtUDE='>"
            b"<associate-time>2024-01-10T09:20:00Z</associate-time>"
            b"</participantstreamassoc></recording>"
        )
        state = state.apply(back)
        assocs = {a.participant_id: a for a in state.current.participant_stream_assocs}
        assert assocs["QVZBWUEtUDE="] == ParticipantStreamAssoc(
            "QVZBWUEtUDE=",
            ("QVZBWUEtUzE=",),
            ("QVZBWUEtUzI=",),
            associate_time="2024-01-10T09:20:00Z",
        )
        assert senders(state, "1") == ["QVZBWUEtUDE=", "QVZBWUEtUDM="]

    def test_complete_snapshot_replaces(self) -> None:
        state = MetadataState().apply(load("avaya_complete.xml")).apply(load("prefixed_tns.xml"))
        assert state.current == load("prefixed_tns.xml")
        assert state.parties_for_label("1") == LabelParties(None)
        assert state.updates_applied == 2

    def test_partial_first_merges_into_empty(self) -> None:
        state = MetadataState().apply(load("avaya_ucid_partial.xml"))
        assert senders(state, "1") == []  # no stream with that label is known yet
        assert state.participant("QVZBWUEtUDM=") is not None
        assert state.participant("nobody") is None

    def test_sender_referenced_but_not_described(self) -> None:
        doc = RecordingMetadata.parse(
            b"<recording><stream stream_id='s'><label>7</label></stream>"
            b"<participantstreamassoc participant_id='ghost'><send>s</send>"
            b"</participantstreamassoc></recording>"
        )
        assert MetadataState().apply(doc).parties_for_label("7").senders == (Participant("ghost"),)


class TestLenience:
    def test_minimal_and_unknown_values(self) -> None:
        doc = RecordingMetadata.parse(b"<recording><datamode>bogus</datamode></recording>")
        assert doc == RecordingMetadata(namespace="", root_name="recording")

    def test_elements_without_ids_are_skipped_and_unknown_kept(self) -> None:
        doc = RecordingMetadata.parse(
            b"<?xml version='1.0' encoding='ISO-8859-1'?>"
            b"<recording id='rs-1' xmlns='urn:ietf:params:xml:ns:recording:1'>"
            b"<!-- a comment --><?pi data?>"
            b"<participant><nameID aor='x'/></participant><stream><label>1</label></stream>"
            b"<participantstreamassoc><send>x</send></participantstreamassoc>"
            b"<Parameter name='k' value='\xe9'/></recording>"
        )
        assert doc.recording_id == "rs-1"
        assert (doc.participants, doc.streams, doc.participant_stream_assocs) == ((), (), ())
        assert doc.extensions == (
            ExtensionElement(
                RECORDING_1, "Parameter", attributes=(("name", "k"), ("value", "\xe9"))
            ),
        )

    def test_custom_parameter_key_scheme(self) -> None:
        extensions = [
            ExtensionElement("", "a", "1", (("x", "y"),), (ExtensionElement("", "b", "2"),)),
            ExtensionElement("", "a", "3"),
            ExtensionElement("", "a", "4"),
            ExtensionElement("", "Parameter", attributes=(("Name", "a"), ("Value", "5"))),
            ExtensionElement("", "empty"),
        ]
        assert custom_parameters(extensions) == {
            "a": "1",
            "a@x": "y",
            "a.b": "2",
            "a#2": "3",
            "a#3": "4",
            "a#4": "5",
        }


class TestRefused:
    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("billion_laughs.xml", "metadata refused: DOCTYPE (DTD) not allowed"),
            ("external_entity.xml", "metadata refused: DOCTYPE (DTD) not allowed"),
            ("dtd_only.xml", "metadata refused: DOCTYPE (DTD) not allowed"),
        ],
    )
    def test_dtd_and_entities(self, name: str, reason: str) -> None:
        with pytest.raises(MetadataError) as caught:
            load(name)
        assert (caught.value.reason, caught.value.status) == (reason, 400)

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"x" * (MAX_METADATA_BYTES + 1), f"metadata over {MAX_METADATA_BYTES} bytes"),
            (b"<recording>" + b"<a/>" * 2000 + b"</recording>", "metadata over 2000 elements"),
            (
                b"<recording>" + b"<a>" * 40 + b"</a>" * 40 + b"</recording>",
                "metadata nested deeper than 32",
            ),
            (b"<html/>", "metadata root is <html>, not <recording>"),
            (b"", "metadata is not well-formed XML: no element found: line 1, column 0"),
            (
                b"<recording>",
                "metadata is not well-formed XML: no element found: line 1, column 11",
            ),
            (
                b"<tns:recording/>",
                "metadata is not well-formed XML: unbound prefix: line 1, column 0",
            ),
            (
                b"<?xml version='1.0' encoding='x-unknown'?><recording/>",
                "metadata declares an unknown encoding",
            ),
            (
                # Known to Python, refused by expat: found by the metadata fuzz target.
                b"<?xml version='1.0' encoding='UTF-7'?><recording/>",
                "metadata declares an unsupported encoding (UTF-7)",
            ),
            (
                b"<?xml version='1.0' encoding='shift_jis'?><recording/>",
                "metadata declares an unsupported encoding (shift_jis)",
            ),
        ],
    )
    def test_invalid(self, data: bytes, reason: str) -> None:
        with pytest.raises(MetadataError) as caught:
            RecordingMetadata.parse(data)
        assert caught.value.reason == reason

    def test_entity_without_doctype_is_not_expanded(self) -> None:
        with pytest.raises(MetadataError) as caught:
            RecordingMetadata.parse(b"<recording>&xxe;</recording>")
        assert caught.value.reason.startswith("metadata is not well-formed XML: undefined entity")

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=500))
    def test_any_bytes_give_value_or_metadata_error(self, data: bytes) -> None:
        with contextlib.suppress(MetadataError):
            RecordingMetadata.parse(data)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    "<datamode>partial</datamode>",
                    "<participant participant_id='p'><nameID aor='sip:a'/></participant>",
                    "<participant id='q'><send><id>s</id></send></participant>",
                    "<stream stream_id='s'><label>1</label></stream>",
                    "<participantstreamassoc participant_id='p'><send>s</send>"
                    "</participantstreamassoc>",
                    "<participantstreamassoc participant_id='p'>"
                    "<disassociate-time>t</disassociate-time></participantstreamassoc>",
                    "<session session_id='c'><stop-time>t</stop-time></session>",
                    "<x:y xmlns:x='urn:x' a='b'>t<z/></x:y>",
                    "<extensiondata><k>v</k></extensiondata>",
                    "<group/>",
                    "&amp;",
                    "<",
                ]
            ),
            max_size=12,
        ),
        st.lists(st.integers(0, 1), min_size=1, max_size=4),
    )
    def test_fragments_parse_and_merge(self, fragments: list[str], splits: list[int]) -> None:
        try:
            doc = RecordingMetadata.parse(f"<recording>{''.join(fragments)}</recording>".encode())
        except MetadataError:
            assert "<" in fragments or "&amp;" in fragments
            return
        state = MetadataState()
        for _ in splits:
            state = state.apply(doc)
        # Applying the same document again changes nothing but the count.
        assert state.current == MetadataState().apply(doc).apply(doc).current
        parties = state.parties_for_label("1")
        assert parties.stream is None or parties.stream.label == "1"
        custom_parameters(doc.all_extensions())


def test_partial_updates_cannot_grow_a_session_without_bound() -> None:
    from srs.siprec.metadata_state import MAX_MERGED_ELEMENTS, MetadataState

    def partial(first: int) -> bytes:
        people = "".join(
            f'<participant participant_id="p{i}"><nameID aor="sip:u{i}@x"/></participant>'
            for i in range(first, first + 100))
        return (b'<recording xmlns="urn:ietf:params:xml:ns:recording:1">'
                b"<datamode>partial</datamode>" + people.encode() + b"</recording>")

    state = MetadataState()
    for first in range(0, MAX_MERGED_ELEMENTS - 99, 100):
        state = state.apply(RecordingMetadata.parse(partial(first)))
    with pytest.raises(MetadataError, match=f"exceeds {MAX_MERGED_ELEMENTS} participants"):
        state.apply(RecordingMetadata.parse(partial(1000)))


def test_flattening_repeated_keys_costs_one_lookup_each() -> None:
    """2,000 values under one name (a document's worth) take 2,000 lookups, not two
    million: each repetition goes straight to its next free ``#n``."""
    from srs.siprec.metadata import CustomParameters, ExtensionElement

    same = [ExtensionElement("urn:x", "p", attributes=(("name", "k"), ("value", f"v{i}")))
            for i in range(2000)]
    flat = CustomParameters.flatten(same)
    assert list(flat.values) == ["k", *(f"k#{n}" for n in range(2, 2001))]
    assert list(flat.values.values()) == [f"v{i}" for i in range(2000)]
    assert flat.collisions == 0
    # Keys that look like the suffixes: each taken key is passed over at most twice.
    literal = [ExtensionElement("urn:x", "p", attributes=(("name", f"k#{n}"), ("value", "lit")))
               for n in range(2, 1002)]
    mixed = CustomParameters.flatten([*literal, *same[:1000], *literal])
    assert len(mixed.values) == 3000 and mixed.collisions <= 2 * 3000
    assert mixed.values["k#1001"] == "lit" and mixed.values["k#1002"] == "v1"
    assert mixed.values["k#2#2"] == "lit"
    assert custom_parameters(same) == flat.values


def test_partial_updates_cannot_accumulate_extensions_without_bound() -> None:
    """Each update may carry a document's worth of extensions for other participants;
    the merged state holds at most one document's worth."""
    from srs.siprec.metadata_state import MAX_MERGED_EXTENSION_ELEMENTS, MetadataState

    partial = partial_with_extensions
    state = MetadataState()
    for first in range(0, 20, 10):
        state = state.apply(RecordingMetadata.parse(partial(first)))
    assert len(state.custom_parameters()) == 1800
    with pytest.raises(MetadataError, match=f"exceeds {MAX_MERGED_EXTENSION_ELEMENTS} extension"):
        state.apply(RecordingMetadata.parse(partial(20)))
    # Replacing extensions already held stays within the bound.
    assert len(state.apply(RecordingMetadata.parse(partial(10))).custom_parameters()) == 1800


def test_custom_parameters_are_flattened_once_per_metadata_version() -> None:
    state = MetadataState().apply(load("avaya_complete.xml"))
    assert state.custom_parameters()
    assert state.custom_parameters() is state.custom_parameters()
    assert dict(state.custom_parameters()) == custom_parameters(state.current.all_extensions())
