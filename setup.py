"""The optional compiled parts of srs: batched RTP receive (srs/server/_rtprecv.c) and the
common case of the timeline's placement (srs/rtp/_rtpwalk.c).

Everything else is in pyproject.toml.  ``optional=True`` makes a failed build a warning,
not a failed install: without the modules srs receives with select.epoll and recvfrom
(srs/server/media.py) and places every packet in Python (srs/rtp/track.py), which is
slower but the same.
"""

import sys

from setuptools import Extension, setup

ext_modules = [
    Extension("srs.rtp._rtpwalk", ["srs/rtp/_rtpwalk.c"], depends=["srs/rtp/_rtpwalk.h"],
              optional=True, extra_compile_args=["-O2"])
]
if sys.platform.startswith("linux"):  # epoll and recvmmsg are Linux interfaces
    ext_modules.append(
        Extension("srs.server._rtprecv", ["srs/server/_rtprecv.c"],
                  depends=["srs/rtp/_rtpwalk.h"], optional=True, extra_compile_args=["-O2"])
    )

setup(ext_modules=ext_modules)
