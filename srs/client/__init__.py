"""``srs call``'s engine: a SIPREC recording client (SRC, RFC 7866) shaped like Twilio's.

Layers, pure first:

* :mod:`srs.client.offer` -- the INVITE body (SDP offer, RFC 7865 metadata, multipart) and
  reading the answer;
* :mod:`srs.client.uac` -- one call's requests, its 2xx ACKs and its dialog, sans-IO, on
  the client transactions of :mod:`srs.sip.client_transaction`;
* :mod:`srs.client.media` -- tracks at 8 kHz, G.711 RTP/SRTP packets, real-time pacing;
* :mod:`srs.client.connection` -- the sockets of one call (asyncio);
* :mod:`srs.client.call` -- one call from INVITE to BYE (asyncio);
* :mod:`srs.client.load` -- many calls at a rate with bounded concurrency.
"""

from srs.client.call import CallPlan, CallResult, Target, place_call
from srs.client.load import Progress, run_calls

__all__ = ["CallPlan", "CallResult", "Progress", "Target", "place_call", "run_calls"]
