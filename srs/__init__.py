"""srs -- a SIPREC (RFC 7866) session recording server."""

__version__ = "0.1.0"
