"""Party-to-party transport: one Channel API, in-process or over mutual TLS."""

from sharedml.transport.base import Channel, Mailbox, ScopedChannel
from sharedml.transport.local import LocalChannel, LocalHub
from sharedml.transport.recording import RecordingChannel, WireRecord

__all__ = [
    "Channel",
    "LocalChannel",
    "LocalHub",
    "Mailbox",
    "RecordingChannel",
    "ScopedChannel",
    "WireRecord",
]
