"""The optional compiled part of srs: batched RTP receive (srs/server/_rtprecv.c).

Everything else is in pyproject.toml.  ``optional=True`` makes a failed build a warning,
not a failed install: without the module srs receives with select.epoll and recvfrom
(srs/server/media.py), which is slower but the same.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):  # epoll and recvmmsg are Linux interfaces
    ext_modules.append(
        Extension("srs.server._rtprecv", ["srs/server/_rtprecv.c"], optional=True,
                  extra_compile_args=["-O2"])
    )

setup(ext_modules=ext_modules)
