"""srs.siprec.multipart: media types, multipart/mixed splitting and the SIPREC body picker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import PeerError, UnsupportedMediaType
from srs.siprec.multipart import (
    ACCEPTED_BODY_TYPES,
    MAX_BODY_BYTES,
    MAX_PARTS,
    BodyPart,
    MediaType,
    MissingSdp,
    MultipartBody,
    MultipartError,
    SiprecBody,
    split_siprec_body,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
XML = b'<?xml version="1.0"?>\r\n<recording xmlns="urn:ietf:params:xml:ns:recording:1"/>'
MIXED_B = "multipart/mixed;boundary=b"
RS_XML = "application/rs-metadata+xml"


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# RFC 7866 §9 shape: SDP first, metadata second, closing delimiter, CRLF.
STANDARD = (
    b"--foobar\r\n"
    b"Content-Type: application/sdp\r\n"
    b"\r\n" + SDP + b"\r\n"
    b"--foobar\r\n"
    b"Content-Type: application/rs-metadata+xml\r\n"
    b"Content-Disposition: recording-session\r\n"
    b"\r\n" + XML + b"\r\n"
    b"--foobar--\r\n"
)


class TestMediaType:
    def test_parse_lowercases_type_and_keeps_quoted_value(self) -> None:
        parsed = MediaType.parse('Multipart/Mixed; Boundary="a b\\"c";charset=utf-8')
        params = (("boundary", 'a b"c'), ("charset", "utf-8"))
        assert parsed == MediaType("multipart", "mixed", params)
        assert parsed.essence == "multipart/mixed"
        assert parsed.param("BOUNDARY") == 'a b"c'
        assert parsed.param("missing") is None

    def test_str_round_trip(self) -> None:
        for text in ("application/sdp", 'multipart/mixed;boundary="a b"', MIXED_B):
            assert MediaType.parse(str(MediaType.parse(text))) == MediaType.parse(text)
        assert str(MediaType.parse('multipart/mixed; boundary="unique-boundary-1"')) == (
            "multipart/mixed;boundary=unique-boundary-1"
        )

    def test_unquoted_boundary_with_non_token_characters(self) -> None:
        # Some stacks send '=' and '/' unquoted.
        assert MediaType.parse("multipart/mixed;boundary=abc=/def").param("boundary") == "abc=/def"

    def test_empty_parameters_tolerated(self) -> None:
        assert MediaType.parse("application/sdp;;").params == ()

    @pytest.mark.parametrize(
        ("value", "reason"),
        [
            ("application", "bad media type 'application'"),
            ("application/", "bad media type 'application/'"),
            ("app lication/sdp", "bad media type 'app lication/sdp'"),
            ("multipart/mixed;boundary", "bad media type parameter 'boundary'"),
            ("multipart/mixed;bo@undary=x", "bad media type parameter 'bo@undary'"),
            ('multipart/mixed;boundary="abc', "unterminated quoted media type parameter"),
            ("multipart/mixed;boundary=", "empty media type parameter value"),
            ('multipart/mixed;boundary="a" junk', "junk after media type parameter 'boundary'"),
            ("a/b" + ";x=y" * 17, "too many media type parameters"),
            ("a/" + "b" * 1100, "Content-Type too long"),
        ],
    )
    def test_invalid(self, value: str, reason: str) -> None:
        with pytest.raises(MultipartError) as caught:
            MediaType.parse(value)
        assert caught.value.reason == reason
        assert caught.value.status == 400


class TestMultipartBody:
    def test_standard_body(self) -> None:
        body = MultipartBody.parse(STANDARD, "multipart/mixed;boundary=foobar")
        assert body.boundary == "foobar"
        assert body.parts == (
            BodyPart((("Content-Type", "application/sdp"),), SDP),
            BodyPart(
                (
                    ("Content-Type", "application/rs-metadata+xml"),
                    ("Content-Disposition", "recording-session"),
                ),
                XML,
            ),
        )
        assert body.parts[1].disposition == "recording-session"
        assert body.parts[1].content_type.essence == "application/rs-metadata+xml"

    def test_round_trip(self) -> None:
        body = MultipartBody.parse(STANDARD, "multipart/mixed;boundary=foobar")
        assert bytes(body) == STANDARD
        media_type = MediaType.parse("multipart/mixed;boundary=foobar")
        assert MultipartBody.parse(bytes(body), media_type) == body

    def test_lf_only_no_space_no_close_delimiter_preamble(self) -> None:
        data = (
            b"This is a preamble\n"
            b"--OSS-unique-boundary-42\n"
            b"Content-Type:application/rs-metadata\n"
            b"Content-Disposition:recording-session\n"
            b"\n<recording/>\n"
            b"--OSS-unique-boundary-42\n"
            b"Content-Type:application/sdp\n"
            b"\nv=0\n"
        )
        body = MultipartBody.parse(data, 'multipart/mixed;boundary="OSS-unique-boundary-42"')
        assert body.parts == (
            BodyPart(
                (
                    ("Content-Type", "application/rs-metadata"),
                    ("Content-Disposition", "recording-session"),
                ),
                b"<recording/>",
            ),
            BodyPart((("Content-Type", "application/sdp"),), b"v=0\n"),
        )

    def test_epilogue_and_transport_padding_ignored(self) -> None:
        data = b"--b \t\r\n\r\npart one\r\n--b--  \r\nepilogue\r\n--b\r\n\r\nnot a part\r\n"
        body = MultipartBody.parse(data, MIXED_B)
        assert body.parts == (BodyPart((), b"part one"),)
        assert body.parts[0].content_type == MediaType("text", "plain")
        assert body.parts[0].disposition is None

    def test_boundary_prefix_inside_content_is_not_a_delimiter(self) -> None:
        data = b"--b\r\n\r\nline\r\n--bx is content\r\n--b--\r\n"
        assert MultipartBody.parse(data, MIXED_B).parts == (
            BodyPart((), b"line\r\n--bx is content"),
        )

    def test_empty_part(self) -> None:
        body = MultipartBody.parse(b"--b\r\n\r\n--b--", MIXED_B)
        assert body.parts == (BodyPart((), b""),)

    def test_folded_header_and_part_without_body(self) -> None:
        data = b"--b\r\nContent-Type: application/sdp;\r\n charset=utf-8\r\n--b--"
        body = MultipartBody.parse(data, MIXED_B)
        assert body.parts == (BodyPart((("Content-Type", "application/sdp; charset=utf-8"),), b""),)

    @pytest.mark.parametrize(
        ("data", "content_type", "reason"),
        [
            (STANDARD, "application/sdp", "not a multipart type: application/sdp"),
            (STANDARD, "multipart/mixed", "multipart Content-Type without boundary"),
            (STANDARD, "multipart/mixed;boundary=" + "x" * 201, "multipart boundary too long"),
            (STANDARD, "multipart/mixed;boundary=\u00e9t\u00e9", "multipart boundary is not ASCII"),
            (b"x" * (MAX_BODY_BYTES + 1), MIXED_B, f"body over {MAX_BODY_BYTES} bytes"),
            (b"no delimiter here", MIXED_B, "no body part delimited by the boundary"),
            (b"--b--\r\n", MIXED_B, "no body part delimited by the boundary"),
            (b"--b\r\n\r\n" * (MAX_PARTS + 2), MIXED_B, f"more than {MAX_PARTS} body parts"),
            (
                b"--b\r\n\r\nx\r\n" * (MAX_PARTS + 1) + b"--b--",
                MIXED_B,
                f"more than {MAX_PARTS} body parts",
            ),
            (b"--b\r\nno colon\r\n\r\nx", MIXED_B, "bad body part header line 'no colon'"),
            (b"--b\r\nX-\xff: y\r\n\r\nx", MIXED_B, "body part headers are not UTF-8"),
            (
                b"--b\r\n" + b"X-A: 1\r\n" * 33 + b"\r\nx",
                MIXED_B,
                "more than 32 body part headers",
            ),
            (
                b"--b\r\nX-Long: " + b"v" * 1025 + b"\r\n\r\nx",
                MIXED_B,
                "body part header 'X-Long' too long",
            ),
        ],
    )
    def test_invalid(self, data: bytes, content_type: str, reason: str) -> None:
        with pytest.raises(MultipartError) as caught:
            MultipartBody.parse(data, content_type)
        assert caught.value.reason == reason

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_any_bytes_give_parts_or_multipart_error(self, data: bytes) -> None:
        try:
            body = MultipartBody.parse(b"--b\r\n" + data, MIXED_B)
        except MultipartError:
            return
        assert 1 <= len(body.parts) <= MAX_PARTS

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.lists(
                    st.tuples(
                        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True),
                        st.from_regex(r"[!-~]([ -~]{0,20}[!-~])?", fullmatch=True),
                    ),
                    max_size=3,
                ),
                st.binary(max_size=80).filter(lambda b: b"--bnd" not in b),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_round_trip_property(self, parts: list[tuple[list[tuple[str, str]], bytes]]) -> None:
        body = MultipartBody("bnd", tuple(BodyPart(tuple(h), b) for h, b in parts if h))
        if not body.parts:
            return
        assert MultipartBody.parse(bytes(body), "multipart/mixed;boundary=bnd") == body


class TestSplitSiprecBody:
    def test_standard(self) -> None:
        assert split_siprec_body(STANDARD, "multipart/mixed;boundary=foobar") == SiprecBody(
            SDP, XML, "application/rs-metadata+xml"
        )

    def test_reversed_order_old_type_and_cisco_gtd(self) -> None:
        data = crlf(
            "--uniqueBoundary\n"
            "Content-Type:application/rs-metadata\n"
            "Content-Disposition:recording-session\n"
            "\n<recording/>\n"
            "--uniqueBoundary\n"
            "Content-Type:application/gtd\n"
            "Content-Disposition:signal;handling=optional\n"
            "\nIAM,\n"
            "--uniqueBoundary\n"
            "Content-Type:application/sdp\n"
            "\nv=0\n"
            "--uniqueBoundary--\n"
        )
        result = split_siprec_body(data, "multipart/mixed;boundary=uniqueBoundary")
        assert result.sdp == b"v=0"
        assert result.metadata == b"<recording/>"
        assert result.metadata_type == "application/rs-metadata"
        assert result.other_parts == (
            BodyPart(
                (
                    ("Content-Type", "application/gtd"),
                    ("Content-Disposition", "signal;handling=optional"),
                ),
                b"IAM,",
            ),
        )

    def test_tagged_metadata_part_preferred(self) -> None:
        data = (
            b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<untagged/>\r\n"
            b"--b\r\nContent-Type: application/rs-metadata+xml\r\n"
            b"Content-Disposition: recording-session;handling=required\r\n\r\n<tagged/>\r\n"
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--"
        )
        result = split_siprec_body(data, MIXED_B)
        assert result.metadata == b"<tagged/>"
        assert [p.body for p in result.other_parts] == [b"<untagged/>"]

    def test_recording_session_disposition_on_generic_xml(self) -> None:
        data = (
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"--b\r\nContent-Type: application/xml\r\n"
            b"Content-Disposition: recording-session\r\n\r\n<r/>\r\n"
            b"--b--"
        )
        result = split_siprec_body(data, MIXED_B)
        assert (result.metadata, result.metadata_type) == (b"<r/>", "application/xml")

    def test_unreadable_part_type_is_kept_as_other(self) -> None:
        data = (
            b"--b\r\nContent-Type: garbage\r\n\r\nx\r\n"
            b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--"
        )
        result = split_siprec_body(data, MIXED_B)
        assert result.sdp == b"v=0"
        assert [p.header("content-type") for p in result.other_parts] == ["garbage"]

    def test_plain_sdp(self) -> None:
        assert split_siprec_body(SDP, "application/sdp") == SiprecBody(SDP, None)
        assert split_siprec_body(SDP, "Application/SDP; charset=utf-8") == SiprecBody(SDP, None)

    def test_metadata_only_when_sdp_not_required(self) -> None:
        expected = SiprecBody(None, XML, RS_XML)
        assert split_siprec_body(XML, RS_XML, require_sdp=False) == expected
        data = b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<r/>\r\n--b--\r\n"
        result = split_siprec_body(data, MIXED_B, require_sdp=False)
        assert result.metadata == b"<r/>"

    def test_empty_body(self) -> None:
        assert split_siprec_body(b"", None, require_sdp=False) == SiprecBody(None, None)
        with pytest.raises(MissingSdp) as caught:
            split_siprec_body(b"", "")
        assert caught.value.status == 488

    @pytest.mark.parametrize(
        ("data", "content_type", "error", "status", "reason"),
        [
            (XML, RS_XML, MissingSdp, 488, "no application/sdp offer in the body"),
            (
                b"--b\r\nContent-Type: application/rs-metadata+xml\r\n\r\n<r/>\r\n--b--\r\n",
                MIXED_B,
                MissingSdp,
                488,
                "no application/sdp offer in the body",
            ),
            (b"hello", "text/plain", UnsupportedMediaType, 415, "unsupported body type text/plain"),
            (STANDARD, "multipart/alternative;boundary=foobar", UnsupportedMediaType, 415,
             "unsupported body type multipart/alternative"),
            (SDP, None, UnsupportedMediaType, 415, "body without Content-Type"),
            (SDP, "sdp", MultipartError, 400, "bad media type 'sdp'"),
            (
                b"x" * (MAX_BODY_BYTES + 1),
                "application/sdp",
                MultipartError,
                400,
                f"body over {MAX_BODY_BYTES} bytes",
            ),
        ],
    )
    def test_invalid(
        self,
        data: bytes,
        content_type: str | None,
        error: type[PeerError],
        status: int,
        reason: str,
    ) -> None:
        with pytest.raises(error) as caught:
            split_siprec_body(data, content_type)
        assert caught.value.status == status
        assert caught.value.reason == reason

    def test_accepted_types_for_415(self) -> None:
        assert ACCEPTED_BODY_TYPES == (
            "application/sdp",
            "multipart/mixed",
            "application/rs-metadata+xml",
            "application/rs-metadata",
        )

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400), st.sampled_from([MIXED_B, "application/sdp", "x/y", "bad"]))
    def test_any_input_gives_body_or_peer_error(self, data: bytes, content_type: str) -> None:
        try:
            result = split_siprec_body(data, content_type, require_sdp=False)
        except PeerError as error:
            assert error.status in (400, 415, 488)
            return
        assert isinstance(result, SiprecBody)
