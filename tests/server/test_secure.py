"""Secure recording: SDES-SRTP media negotiated over SIP/TLS (Twilio `secure=true`)."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest
import soundfile as sf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from srs.codecs.g711 import pcmu_decode, pcmu_encode
from srs.rtp.srtp import SUITES
from srs.server.tls import certificate_fingerprint
from tests.conftest import TOKEN, RunningServer, rtp_range, start_server, wait_for_event
from tests.sipclient import SipClient, rtp_packet, sdp_offer, tone

KEY_30 = bytes(range(1, 31))  # AES_CM_128 master key (16) || salt (14)


def crypto_line(suite: str, key_salt: bytes, tag: int = 1, extra: str = "") -> str:
    return f"a=crypto:{tag} {suite} inline:{base64.b64encode(key_salt).decode()}{extra}"


def savp_offer(lines: list[str], *, labels: tuple[str, ...] = ("caller",), version: int = 1,
               proto: str = "RTP/SAVP") -> str:
    offer = sdp_offer([40000 + 2 * i for i in range(len(labels))], labels, codecs="0",
                      version=version)
    out = []
    for line in offer.split("\r\n"):
        out.append(line.replace("RTP/AVP", proto))
        if line.startswith("a=sendonly"):
            out.extend(lines)
    return "\r\n".join(out)


def sender_session(suite: str, key_salt: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=key_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=SUITES[suite].profile)
    return pylibsrtp.Session(policy=policy)


def tls_client(server: RunningServer) -> SipClient:
    return SipClient("127.0.0.1", server.tls_port, "tls", token=TOKEN)


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    return data


def stream_doc(server: RunningServer) -> dict:
    [doc] = server.wait_sidecar()
    return doc["streams"][0]


def send_srtp(port: int, session: pylibsrtp.Session, count: int, *, seq0: int = 0, ts0: int = 0,
              ssrc: int = 0x7777, freq: float = 440.0, start: int = 0,
              sock: socket.socket | None = None) -> list[bytes]:
    own = sock is None
    sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = []
    t0 = time.monotonic()
    for i in range(start, start + count):
        plain = rtp_packet(seq0 + i, ts0 + 160 * i, ssrc, pcmu_encode(tone(freq, 160 * i, 160)))
        packet = session.protect(plain)
        sock.sendto(packet, ("127.0.0.1", port))
        sent.append(packet)
        time.sleep(max(0.0, t0 + 0.02 * (i - start + 1) - time.monotonic()))
    if own:
        sock.close()
    return sent


def longest_zero_run(samples: np.ndarray) -> int:
    zero = np.concatenate(([0], (samples == 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(zero))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * 8000 / len(samples))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
def test_ffmpeg_srtp_over_tls_is_recorded_sample_exact(server: RunningServer, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(523.0, 0, 8000 * 2, amplitude=9000), 8000, subtype="PCM_16")
    key = base64.b64encode(KEY_30).decode()
    client = tls_client(server)
    call, answer = client.invite(sdp=savp_offer([f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}"]),
                                 with_metadata=False)
    assert answer.status == 200
    body = answer.body.decode()
    assert "m=audio" in body and "RTP/SAVP" in body and "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in body
    assert key not in body  # our own key, not the offerer's
    assert "transport=tls" in answer.headers.get("Contact")
    port = call.ports[0]
    common = ["-nostdin", "-loglevel", "error", "-i", str(wav), "-af", "asetnsamples=n=160",
              "-acodec", "pcm_mulaw", "-ar", "8000", "-ac", "1"]
    subprocess.run(["ffmpeg", *common, "-f", "mulaw", str(tmp_path / "sent.ul")], check=True,
                   timeout=60)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-af",
         "asetnsamples=n=160,arealtime", "-acodec", "pcm_mulaw", "-ar", "8000", "-ac", "1",
         "-f", "rtp", "-payload_type", "0", "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80",
         "-srtp_out_params", key, f"srtp://127.0.0.1:{port}?pkt_size=186"],
        check=True, timeout=60)
    assert client.bye(call).status == 200
    client.close()
    stream = stream_doc(server)
    assert stream["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    assert stream["packets"]["received"] == 100 and stream["packets"]["dropped"] == {}
    track = read(server.sessions()[0] / "caller.wav")
    expected = pcmu_decode((tmp_path / "sent.ul").read_bytes())
    start = int(np.flatnonzero(track)[0]) - int(np.flatnonzero(expected)[0])
    recorded = track[start : start + len(expected)]
    # The track ends at the BYE on the session clock, but the packet playing then is kept
    # whole (recording/output.py, TAIL_GRACE_S): every sample sent is there, exactly.
    np.testing.assert_array_equal(recorded, expected)
    settings_text = (server.sessions()[0] / "session.json").read_text()
    assert key not in settings_text and key not in server.log()


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_records_across_the_sequence_wrap(server: RunningServer, suite: str) -> None:
    key_salt = os.urandom(SUITES[suite].key_salt_bytes)
    client = tls_client(server)
    call, answer = client.invite(sdp=savp_offer([crypto_line(suite, key_salt)]), with_metadata=False)
    assert answer.status == 200
    send_srtp(call.ports[0], sender_session(suite, key_salt), 60, seq0=65536 - 30)
    assert client.bye(call).status == 200
    client.close()
    stream = stream_doc(server)
    assert stream["srtp"] == suite
    assert stream["packets"]["received"] == 60 and stream["packets"]["lost"] == 0
    track = read(server.sessions()[0] / "caller.wav")
    voiced = track[np.flatnonzero(track)[0]:][: 60 * 160]
    assert dominant_hz(voiced) == pytest.approx(440, abs=3)
    assert longest_zero_run(voiced) < 160  # no 20 ms hole at the wrap


def test_tampered_replayed_and_wrong_key_packets_are_dropped(server: RunningServer) -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    client = tls_client(server)
    call, _ = client.invite(sdp=savp_offer([crypto_line(suite, KEY_30)]), with_metadata=False)
    port = call.ports[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # one source: the latched one
    good = send_srtp(port, sender_session(suite, KEY_30), 20, sock=sock)
    tampered = bytearray(sender_session(suite, KEY_30).protect(
        rtp_packet(500, 500 * 160, 0x7777, pcmu_encode(tone(3000, 0, 160)))))
    tampered[20] ^= 0x01
    sock.sendto(bytes(tampered), ("127.0.0.1", port))
    sock.sendto(good[5], ("127.0.0.1", port))  # replay
    wrong = sender_session(suite, bytes(30)).protect(rtp_packet(21, 21 * 160, 0x7777, b"\x00" * 160))
    sock.sendto(wrong, ("127.0.0.1", port))
    # SRTCP (RFC 3711 §3.4) on the same port (RFC 5761): decrypted, counted, never audio.
    receiver_report = bytes([0x80, 201, 0, 1]) + (0x7777).to_bytes(4, "big")
    sock.sendto(sender_session(suite, KEY_30).protect_rtcp(receiver_report), ("127.0.0.1", port))
    sock.close()
    time.sleep(0.2)
    assert client.bye(call).status == 200
    client.close()
    stream = stream_doc(server)
    assert stream["packets"]["received"] == 20
    assert stream["packets"]["dropped"] == {"srtp_auth": 2, "srtp_replay": 1}
    assert stream["packets"]["rtcp"] == 1
    track = read(server.sessions()[0] / "caller.wav")
    assert dominant_hz(track[np.flatnonzero(track)[0]:][:3200]) == pytest.approx(440, abs=3)


def test_rekey_by_reinvite_has_no_gap(server: RunningServer) -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    new_key = bytes(reversed(KEY_30))
    client = tls_client(server)
    call, _ = client.invite(sdp=savp_offer([crypto_line(suite, KEY_30)]), with_metadata=False)
    port = call.ports[0]
    send_srtp(port, sender_session(suite, KEY_30), 25)
    answer = client.reinvite(call, savp_offer([crypto_line(suite, new_key, tag=2)], version=2))
    assert answer.status == 200 and "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" in answer.body.decode()
    send_srtp(port, sender_session(suite, new_key), 25, start=25)
    assert client.bye(call).status == 200
    client.close()
    stream = stream_doc(server)
    assert stream["packets"]["received"] == 50 and stream["packets"]["dropped"] == {}
    assert stream["packets"]["lost"] == 0


@pytest.mark.parametrize(
    ("policy", "offer", "fragment"),
    [
        ("allow", [crypto_line("AES_CM_128_HMAC_SHA1_80", KEY_30, extra="|2^20|1:4")], "MKI"),
        ("allow", [crypto_line("F8_128_HMAC_SHA1_80", KEY_30)], ""),
        ("require", None, "plain RTP refused (media.srtp is require)"),
        ("off", [crypto_line("AES_CM_128_HMAC_SHA1_80", KEY_30)], "media.srtp"),
    ],
)
def test_unacceptable_offers_get_488(tmp_path: Path, policy: str, offer: list[str] | None,
                                     fragment: str) -> None:
    running = start_server(tmp_path, media={"srtp": policy})
    try:
        client = tls_client(running)
        sdp = sdp_offer([40000], ["caller"], codecs="0") if offer is None else savp_offer(offer)
        _, response = client.invite(sdp=sdp, with_metadata=False)
        client.close()
        assert response.status == 488
        assert fragment in response.reason
        assert running.sessions() == []
    finally:
        running.stop()


def test_mixed_avp_and_savp_m_lines(server: RunningServer) -> None:
    offer = sdp_offer([40000], ["plain"], codecs="0").rstrip("\r\n").split("\r\n")
    savp = savp_offer([crypto_line("AEAD_AES_128_GCM", os.urandom(28))], labels=("secure",))
    offer += [line for line in savp.split("\r\n") if line and line[0] in "ma"]
    client = tls_client(server)
    call, answer = client.invite(sdp="\r\n".join(offer) + "\r\n", with_metadata=False)
    assert answer.status == 200
    assert answer.body.decode().count("RTP/SAVP") == 1 and call.ports[0] and call.ports[1]
    assert client.bye(call).status == 200
    client.close()
    [doc] = server.wait_sidecar()
    assert {s["label"]: s["srtp"] for s in doc["streams"]} == {"plain": None, "secure": "AEAD_AES_128_GCM"}


def _issue(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
           *, ca: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_client_certificate_required(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("srs test CA", ca_key, None, ca=True)
    ca_path, _ = _pem(tmp_path / "ca", ca_cert, ca_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert, client_key_path = _pem(
        tmp_path / "client", _issue("recording client", client_key, (ca_cert.subject, ca_key)), client_key)
    running = start_server(tmp_path, tls={"ca": str(ca_path), "verify_client": True})
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def options(message: bytes) -> bytes:
            with (socket.create_connection(("127.0.0.1", running.tls_port), timeout=5) as raw,
                  context.wrap_socket(raw) as tls):
                tls.sendall(message)
                answer = tls.recv(100)
            if not answer:
                raise ConnectionError("closed without an answer")
            return answer

        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            options(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        context.load_cert_chain(client_cert, client_key_path)
        assert options(b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bKc1\r\n"
                       b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
                       b"Content-Length: 0\r\n\r\n").startswith(b"SIP/2.0 200 OK")
    finally:
        running.stop()


def serve_with_tls(tmp_path: Path, cert_path: Path, key_path: Path, tls_extra: str = "") -> subprocess.Popen[str]:
    """``srs serve`` as a process (SIGHUP goes to it) with the given certificate."""
    low, high = rtp_range()
    (tmp_path / "srs.toml").write_text(
        f'[sip]\nhost = "127.0.0.1"\nephemeral_ports = true\n'
        f'[tls]\ncert = "{cert_path}"\nkey = "{key_path}"\n{tls_extra}[auth]\ntokens = ["{TOKEN}"]\n'
        f'[media]\nhost = "127.0.0.1"\nport_min = {low}\nport_max = {high}\n'
        f'[recordings]\ndir = "{tmp_path / "rec"}"\nmin_free_mb = 0\n[management]\nport = 0\n[server]\nstate_dir = "{tmp_path / "state"}"\n')
    return subprocess.Popen([sys.executable, "-m", "srs", "serve", "--config", str(tmp_path / "srs.toml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_sighup_reloads_the_certificate_without_dropping_sessions(tmp_path: Path) -> None:
    first_key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = _pem(tmp_path / "server", _issue("first", first_key, None), first_key)
    process = serve_with_tls(tmp_path, cert_path, key_path)

    def served_fingerprint(tls_port: int) -> str:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
              context.wrap_socket(raw) as tls):
            der = tls.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    try:
        listening, early = wait_for_event(process, "listening")
        tls_port = listening["tls"]
        assert served_fingerprint(tls_port) == "first"
        client = SipClient("127.0.0.1", tls_port, "tls", token=TOKEN)
        call, answer = client.invite()
        assert answer.status == 200
        second_key = ec.generate_private_key(ec.SECP256R1())
        _pem(tmp_path / "server", _issue("second", second_key, None), second_key)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while served_fingerprint(tls_port) != "second":
            assert time.monotonic() < deadline, "certificate not reloaded"
            time.sleep(0.2)
        assert client.bye(call).status == 200  # the session's TLS connection survived
        client.close()
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=20)
        out = early + out
        assert '"event": "tls_reloaded"' in out
        assert certificate_fingerprint(cert_path) in out
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_sighup_stops_trusting_a_ca_removed_from_the_bundle(tmp_path: Path) -> None:
    server_key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = _pem(tmp_path / "server", _issue("srs", server_key, None), server_key)
    clients = {}
    authorities = {}
    for name in ("kept", "removed"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _issue(f"{name} CA", ca_key, None, ca=True)
        authorities[name] = ca_cert.public_bytes(serialization.Encoding.PEM)
        client_key = ec.generate_private_key(ec.SECP256R1())
        clients[name] = _pem(tmp_path / f"client-{name}",
                             _issue(f"{name} client", client_key, (ca_cert.subject, ca_key)), client_key)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(authorities["kept"] + authorities["removed"])
    process = serve_with_tls(tmp_path, cert_path, key_path,
                             f'ca = "{bundle}"\nverify_client = true\n')

    def answered(tls_port: int, name: str) -> bool:
        """Whether an OPTIONS over TLS with the client certificate ``name`` gets a 200."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(*clients[name])
        try:
            with (socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
                  context.wrap_socket(raw) as tls):
                tls.sendall(b"OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bKh1\r\n"
                            b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: h1\r\nCSeq: 1 OPTIONS\r\n"
                            b"Content-Length: 0\r\n\r\n")
                return tls.recv(100).startswith(b"SIP/2.0 200 OK")
        except (ssl.SSLError, OSError):
            return False

    try:
        listening, _ = wait_for_event(process, "listening")
        tls_port = listening["tls"]
        assert answered(tls_port, "kept") and answered(tls_port, "removed")
        bundle.write_bytes(authorities["kept"])
        process.send_signal(signal.SIGHUP)
        wait_for_event(process, "tls_reloaded")
        assert answered(tls_port, "kept")
        assert not answered(tls_port, "removed")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
