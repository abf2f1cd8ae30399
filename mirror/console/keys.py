"""The console application's typed keys."""

from __future__ import annotations

import jinja2
from aiohttp import web

from mirror.clock import Clock
from mirror.console.samples import SampleRing
from mirror.console.session import SessionStore

# The mirror's application, whose services the console's pages call.
MIRROR = web.AppKey("mirror", web.Application)
SESSIONS = web.AppKey("sessions", SessionStore)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
SAMPLES = web.AppKey("samples", SampleRing)
# The clock pages read "now" from (the one the app was built with).
CLOCK = web.AppKey("clock", Clock)
