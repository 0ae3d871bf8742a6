"""The receiving half of the gRPC transport: one mutual-TLS server per party process.

Every job this process takes part in registers its peer list and gets a
:class:`~sharedml.transport.base.Mailbox`; peers open one long-lived stream
per job (``/sharedml.transport.v1.Peer/Stream``, raw bytes, no protobuf
codegen) and the server files each value they send under (job, sender, tag).

Who the sender is comes only from its verified TLS certificate (subject
common name = party id, chained to the deployment CA, checked by TLS before
any byte of a frame is read, and not on the revocation list when the server
has one) — never from the message. A stream is refused
when its job is unknown here or its sender is not among the job's peers; a
malformed frame aborts only the stream that carried it. Either way the
server goes on serving everyone else.

A certified peer cannot starve the others (8.3-2): it holds at most
``max_streams_per_peer`` of the server's threads at once, and at most
``max_waiting_per_peer`` of its streams (``max_waiting`` in all) wait for a
job that is not registered yet; a stream over either limit is refused at
once with ``RESOURCE_EXHAUSTED`` and the sender retries it (with back-off)
until its admission time runs out. Nor can it fill this party's memory: the
values one sender sent in one job and nobody has read yet are bounded by
``max_unread`` bytes; a stream over it is held (back-pressure: gRPC flow
control stops the sender) and told why with a ``STALLED`` reply, until the
receiver reads or the job ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NoReturn

import grpc

from sharedml.crypto.crl import RevocationFile
from sharedml.crypto.pki import party_of
from sharedml.errors import AuthError, ChannelError, ConfigError, FrameError
from sharedml.transport import grpc_wire, tls
from sharedml.transport.base import Mailbox, has_control

log = logging.getLogger("sharedml.transport.grpc")

SERVICE = "sharedml.transport.v1.Peer"
METHOD = f"/{SERVICE}/Stream"
JOB_KEY = "sharedml-job"
WIRE_KEY = "sharedml-wire"
#: Reply that tells the sender its stream was admitted.
ADMITTED = b"admitted"
#: Reply prefix (then a UTF-8 reason) telling the sender its stream is held for want of room.
STALLED = b"stalled:"
#: Reply telling the sender a held stream moves again.
RESUMED = b"resumed"
#: Longest job id a stream may name (gRPC metadata is printable ASCII anyway).
MAX_JOB = 256
#: Default bound on one sender's unread values in one job (bytes).
DEFAULT_MAX_UNREAD = grpc_wire.DEFAULT_MAX_FRAME
#: gRPC message limit; chunks stay far below it.
MAX_MESSAGE = 64 << 20
#: Closed jobs remembered so late frames for them are drained quietly.
_CLOSED_MEMORY = 4096


def message_options() -> list[tuple[str, int]]:
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]


@dataclass
class _Job:
    peers: frozenset[str]
    mailbox: Mailbox


class PeerServer:
    """This party's mTLS server, shared by all its concurrent jobs.

    Args:
        identity: this party's certificate, key and the CA it trusts (or
            :class:`~sharedml.crypto.identity.IdentityFiles`: each new
            connection is served with the pair on disk then).
        host, port: where to listen (port 0 picks a free port; see :attr:`port`).
        admit_wait: how long a stream for a job not yet registered here waits
            for it (peers may start a little before this party does).
        max_frame: the largest value accepted from a peer (bounds allocation).
        max_unread: bytes one sender's unread values may hold in one job
            (at least ``max_frame``); beyond it the sender's stream is held.
        max_workers: server threads (one per open stream).
        max_streams_per_peer: open streams one peer may hold at once.
        max_waiting_per_peer, max_waiting: streams that may wait for a job
            not registered yet, from one peer and in all.
        revocation: the deployment's revocation list; a stream whose sender's
            certificate is on it is refused (``UNAUTHENTICATED``) unread.
    """

    def __init__(
        self,
        identity: tls.IdentitySource,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        admit_wait: float = 30.0,
        max_frame: int = grpc_wire.DEFAULT_MAX_FRAME,
        max_unread: int = DEFAULT_MAX_UNREAD,
        max_workers: int = 128,
        max_streams_per_peer: int | None = None,
        max_waiting_per_peer: int = 4,
        max_waiting: int = 16,
        revocation: RevocationFile | None = None,
    ) -> None:
        self.party = tls.current(identity).party
        self.revocation = revocation
        self.admit_wait = admit_wait
        self.max_frame = max_frame
        self.max_unread = max_unread
        self.max_streams_per_peer = max_streams_per_peer or max(max_workers // 4, 1)
        self.max_waiting_per_peer = max_waiting_per_peer
        self.max_waiting = max_waiting
        if max_unread < max_frame:
            raise ConfigError(
                f"max_unread ({max_unread}) is below max_frame ({max_frame}): the largest "
                "value a peer may send would never fit",
                party=self.party,
                remedy="raise max_unread or lower max_frame",
            )
        if self.max_streams_per_peer >= max_workers:
            raise ConfigError(
                f"max_streams_per_peer ({self.max_streams_per_peer}) must be below "
                f"max_workers ({max_workers}) so one peer cannot hold every thread",
                party=self.party,
            )
        self._cond = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._streams: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"peer-{self.party}"),
            options=[
                *message_options(),
                # Peers' keepalive pings (every 20 s) on streams that carry no
                # replies must not count as abuse, or gRPC would drop them.
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                # Never share the port with another process (gRPC's default would).
                ("grpc.so_reuseport", 0),
                # Streams beyond this wait at the peer's end of its connection, not
                # in this server's queue (a peer's own limit is checked per stream).
                (
                    "grpc.max_concurrent_streams",
                    self.max_streams_per_peer + self.max_waiting_per_peer,
                ),
            ],
        )
        handler = grpc.stream_stream_rpc_method_handler(self._serve)
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Stream": handler}),)
        )
        credentials = tls.server_credentials(identity)
        self.host = host
        try:
            self.port = self._server.add_secure_port(f"{host}:{port}", credentials)
        except RuntimeError:  # grpcio raises when the port cannot be bound
            self.port = 0
        if self.port == 0:
            raise ConfigError(
                f"party {self.party!r} could not listen on {host}:{port}",
                remedy="choose a free port, or port 0 for any free port",
            )
        self._server.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- jobs -------------------------------------------------------------------
    def register(self, job: str, peers: Iterable[str]) -> Mailbox:
        """Accept streams for ``job`` from ``peers``; returns the job's mailbox."""
        with self._cond:
            if job in self._jobs:
                raise ConfigError(
                    f"job {job!r} already has an open channel at party {self.party!r}",
                    remedy="use a distinct job id per concurrent job",
                )
            self._closed.pop(job, None)
            mailbox = Mailbox(self.party, budget=self.max_unread)
            self._jobs[job] = _Job(frozenset(peers) - {self.party}, mailbox)
            self._cond.notify_all()
            return mailbox

    def unregister(self, job: str) -> None:
        """Stop filing ``job``'s messages; late ones are drained and dropped."""
        with self._cond:
            entry = self._jobs.pop(job, None)
            if entry is not None:
                entry.mailbox.close()  # wakes streams held for room; drops unread values
                self._closed[job] = None
                while len(self._closed) > _CLOSED_MEMORY:
                    self._closed.popitem(last=False)

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    # -- the stream handler -----------------------------------------------------
    def _serve(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        sender = self._sender(context)
        tls.refuse_revoked(context, self.revocation, self._refuse)
        meta = {k: v for k, v in context.invocation_metadata()}
        job = meta.get(JOB_KEY)
        if not isinstance(job, str) or meta.get(WIRE_KEY) != str(grpc_wire.VERSION):
            self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"stream from {sender!r} lacks a job id or speaks another wire version",
            )
        if not job or len(job) > MAX_JOB or has_control(job):
            self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"stream from {sender!r} names a job id of {len(job)} characters that is "
                f"empty, longer than {MAX_JOB} or holds control characters",
            )
        self._count_stream(sender, context)
        entry = self._admit(sender, job, context)
        yield ADMITTED
        if entry is None:  # job already closed here: drain quietly
            for _ in requests:
                pass
            return
        yield from self._receive(sender, job, entry.mailbox, requests, context)

    def _count_stream(self, sender: str, context: grpc.ServicerContext) -> None:
        """Hold one of ``sender``'s stream slots until the stream ends, or refuse it."""
        with self._cond:
            if self._streams[sender] >= self.max_streams_per_peer:
                busy = True
            else:
                busy = False
                self._streams[sender] += 1
        if busy:
            self._refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"party {sender!r} already has {self.max_streams_per_peer} open streams "
                f"at {self.party!r}",
            )

        def done() -> None:
            with self._cond:
                self._streams[sender] -= 1
                if self._streams[sender] <= 0:
                    del self._streams[sender]

        if not context.add_callback(done):  # the stream already ended
            done()

    def _sender(self, context: grpc.ServicerContext) -> str:
        auth = context.auth_context()
        names = auth.get("x509_common_name") or []
        if len(names) == 1:
            return names[0].decode()
        pems = auth.get("x509_pem_cert") or []
        try:
            return party_of(pems[0])
        except (IndexError, AuthError, ValueError):
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "peer presented no certificate with a single common name",
            )

    def _admit(self, sender: str, job: str, context: grpc.ServicerContext) -> _Job | None:
        with self._cond:
            refusal = None
            if job not in self._jobs and job not in self._closed:
                refusal = self._wait_for_job(sender, job, context)
            entry = self._jobs.get(job)
        if refusal is not None:
            self._refuse(context, *refusal)
        if entry is None:
            return None  # the job was closed here: its late frames are drained
        if sender not in entry.peers:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"party {sender!r} is not a peer of job {job!r} at {self.party!r} "
                f"(peers: {sorted(entry.peers)})",
            )
        return entry

    def _wait_for_job(
        self, sender: str, job: str, context: grpc.ServicerContext
    ) -> tuple[grpc.StatusCode, str] | None:
        """Wait (holding ``self._cond``) until ``job`` is registered or closed; else why not."""
        if (
            self._waiting[sender] >= self.max_waiting_per_peer
            or self._waiting.total() >= self.max_waiting
        ):
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"party {self.party!r} has no job {job!r} yet and too many streams "
                "already wait for theirs",
            )
        deadline = time.monotonic() + self.admit_wait
        self._waiting[sender] += 1
        try:
            while job not in self._jobs and job not in self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not context.is_active():
                    return (
                        grpc.StatusCode.NOT_FOUND,
                        f"party {self.party!r} has no job {job!r} (waited {self.admit_wait:g} s)",
                    )
                self._cond.wait(min(remaining, 0.5))
            return None
        finally:
            self._waiting[sender] -= 1
            if self._waiting[sender] <= 0:
                del self._waiting[sender]

    def _receive(
        self,
        sender: str,
        job: str,
        mailbox: Mailbox,
        requests: Iterator[bytes],
        context: grpc.ServicerContext,
    ) -> Iterator[bytes]:
        assembler = grpc_wire.Assembler(self.max_frame)
        held = 0  # budget taken for the value now arriving
        stalls = [0]  # how often this stream was held (only the first is a warning)
        try:
            for message in requests:
                if assembler.partial is None:  # this message may begin a value
                    held = yield from self._make_room(
                        sender, job, mailbox, message, context, stalls
                    )
                    if held < 0 and mailbox.closed:  # the job ended here: drain quietly
                        for _ in requests:
                            pass
                        return
                    if held < 0:  # the stream broke while held
                        break
                done = assembler.feed(message)
                if done is not None:
                    mailbox.put(job, sender, done[0], done[1], held)
                    held = 0
        except FrameError as exc:
            log.warning("party %s: bad frame from %s in job %s: %s", self.party, sender, job, exc)
            mailbox.fail(
                job,
                sender,
                FrameError(
                    f"{sender!r} sent a malformed frame: {exc.message}", party=self.party, step=job
                ),
            )
            self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed frame: {exc.message}"
            )
        except grpc.RpcError:
            pass  # the stream broke: handled below like a stream without its end marker
        finally:
            if held > 0:  # the value never arrived whole
                mailbox.release(job, sender, held)
        if not assembler.ended:  # the peer's process or connection went away
            log.warning(
                "party %s: %s vanished mid-stream in job %s (%s)",
                self.party,
                sender,
                job,
                assembler.progress(),
            )
            mailbox.fail(
                job,
                sender,
                ChannelError(
                    f"party {sender!r} disconnected mid-stream ({assembler.progress()})",
                    party=self.party,
                    step=job,
                    remedy=f"check whether party {sender!r} crashed or lost its network",
                ),
            )
            return
        mailbox.fail(
            job,
            sender,
            ChannelError(
                f"party {sender!r} closed its channel for job {job!r}; it will send nothing more",
                party=self.party,
                step=job,
                remedy=f"check that party {sender!r} runs the same protocol steps",
            ),
        )
        yield from ()

    def _make_room(
        self,
        sender: str,
        job: str,
        mailbox: Mailbox,
        message: bytes,
        context: grpc.ServicerContext,
        stalls: list[int],
    ) -> Generator[bytes, None, int]:
        """Reserve room for the value ``message`` begins; returns the bytes taken
        (-1: none, as the job ended here or the stream broke while held).

        While ``sender``'s unread values in ``job`` fill the budget, the stream
        is held (its sender told why, in a :data:`STALLED` reply) until the
        receiver reads, the job ends here or the stream breaks.
        """
        announced = grpc_wire.announcement(message)
        if announced is None or announced[1] > self.max_frame:
            return 0  # not a value's start, or one that feed() refuses
        tag, total = announced
        charge = Mailbox.charge(tag, total)
        if mailbox.try_reserve(job, sender, charge):
            return charge
        if mailbox.closed:
            return -1
        reason = (
            f"party {self.party!r} holds {mailbox.unread_bytes(job, sender)} unread bytes "
            f"from {sender!r} in job {job!r} (its limit is {mailbox.budget}); the value "
            f"under tag {tag!r} waits until {self.party!r} reads them"
        )
        log.log(logging.DEBUG if stalls[0] else logging.WARNING, "%s", reason)
        stalls[0] += 1
        yield STALLED + reason.encode()
        if not mailbox.reserve(job, sender, charge, context.is_active):
            return -1
        yield RESUMED
        return charge

    def _refuse(
        self, context: grpc.ServicerContext, code: grpc.StatusCode, details: str
    ) -> NoReturn:
        log.warning("party %s refused a stream: %s", self.party, details)
        context.abort(code, details)  # raises; gRPC sends the status to the peer
        raise ChannelError(details, party=self.party)  # not reached
