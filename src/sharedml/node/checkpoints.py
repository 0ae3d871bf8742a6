"""The platform's signed audit checkpoints, as a node keeps them (9.3).

The platform sends its newest checkpoint in every heartbeat reply
(``control.AuditCheckpoint``). The node keeps each one that moves the head
forward in ``work_dir/audit-checkpoints.txt`` — the platform's public key
(pinned by the first checkpoint it was sent), then one checkpoint a line, the
format ``sharedml audit verify --checkpoints`` reads — so anyone can later
check the platform's log against what this node saw.

Steps, for each checkpoint received:

1. Its public key must be the pinned one — the key ``node.yaml`` names
   (``audit_checkpoint_key``: a PEM file or its fingerprint) or, when it names
   none, the first key the node was sent — and its signature must verify.
2. Against the newest one kept: a lower ``seq`` is a head that went backwards
   (the log was cut or rolled back); the same ``seq`` with another hash, or
   another ``mac_from`` than before, is a fork (two logs signed). Either is
   refused: not kept, written to ``work_dir/audit-alarms.jsonl`` and logged as
   an error; ``sharedml node-audit`` shows both files.
3. A higher ``seq`` is kept; the same one again is ignored.
4. A refusal **halts** the node (:meth:`NodeCheckpoints.halted`): it starts no
   new task — each order is reported failed with the reason — and says why on
   every heartbeat (``Beat.halted``) and in its log, until its operator
   resolves the alarm. A task already running finishes.

The operator's steps on an alarm (docs/architecture.md §6, "Audit alarms"):

a. ``sharedml node-audit node.yaml`` shows the refusal and what the node kept;
b. ask the platform's operator, and verify the platform's log against this
   node's file: ``sharedml audit verify --checkpoints work/audit-checkpoints.txt``;
c. if the platform was lawfully restored from a backup (its log then ends
   earlier), move ``audit-checkpoints.txt`` aside (keep it as evidence) so the
   node pins the restored head; if nobody can explain it, leave the node
   halted and escalate: the platform's log was cut, rolled back or forked;
d. ``sharedml node-audit node.yaml --resolve "WHAT WAS FOUND"`` records the
   resolution in ``audit-alarms.jsonl``; the running node takes tasks again at
   its next heartbeat. The same refusal again (the same checkpoint, the same
   reason) does not halt it again; any other does.

Reveals: nothing new; a checkpoint is the count of audit entries and a hash.
Security model: the node trusts the key its operator pinned in ``node.yaml``
(``sharedml up`` and ``sharedml deploy`` write one); without a pin, the key it
was first sent (trust on first use, as ``sharedml audit checkpoint --save``), so
whoever answers its first heartbeat could pin another. It cannot see the log, so a rewrite
*below* a checkpoint it keeps is found when the log is verified against this
node's file, not here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from sharedml.checkpoints import Checkpoint, check_signature, fingerprint, keep, load_kept
from sharedml.control import AuditCheckpoint
from sharedml.errors import ConfigError

log = logging.getLogger("sharedml.node.checkpoints")

KEPT = "audit-checkpoints.txt"
ALARMS = "audit-alarms.jsonl"


class NodeCheckpoints:
    """A node's kept checkpoints and alarms, in its work dir."""

    def __init__(self, work_dir: Path, party: str = "", pin: str | None = None) -> None:
        self.path = Path(work_dir) / KEPT
        self.alarms_path = Path(work_dir) / ALARMS
        self.party = party
        #: The fingerprint of the key ``node.yaml`` pins (``None``: the first key sent).
        self.pin = pin
        self._newest: Checkpoint | None = None
        self._last_alarm: tuple[int, str, str] | None = None

    def held(self) -> tuple[str, list[Checkpoint]]:
        """The pinned key and every checkpoint kept, oldest first (``("", [])``: none)."""
        if not self.path.exists():
            return "", []
        return load_kept(self.path)

    def check_pin(self) -> None:
        """At start: refuse a kept file under another key than the one ``node.yaml`` pins
        (the node trusted someone else's key before, or the platform's key changed)."""
        pinned, _ = self.held()
        if self.pin is None or not pinned or fingerprint(pinned) == self.pin:
            return
        raise ConfigError(
            f"node {self.party}: {self.path} holds checkpoints under the key "
            f"{fingerprint(pinned)}, not the platform key node.yaml pins ({self.pin})",
            remedy="confirm the platform's key with its operator ('sharedml platform "
            "audit-key'); if node.yaml is right, move the file aside (keep it as evidence)")

    def alarms(self) -> list[dict[str, object]]:
        if not self.alarms_path.exists():
            return []
        lines = self.alarms_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def halted(self) -> str:
        """Why the node takes no new task: its newest refusal not yet resolved ("": none)."""
        reason = ""
        for record in self.alarms():
            reason = "" if "resolved" in record else str(record.get("reason", "refused"))
        if not reason:
            return ""
        return (f"node {self.party} refused the platform's audit checkpoint: {reason}; it takes "
                "no new task until its operator resolves it ('sharedml node-audit CONFIG')")

    def resolve(self, note: str, now: dt.datetime | None = None) -> None:
        """The operator's resolution of every alarm so far (step d of the module doc)."""
        record = {"time": (now or dt.datetime.now(dt.UTC)).isoformat(), "resolved": note}
        self.alarms_path.parent.mkdir(parents=True, exist_ok=True)
        with self.alarms_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        log.warning("node %s: audit alarms resolved by its operator: %s", self.party, note)

    def describe(self) -> list[str]:
        """What ``sharedml node-audit`` prints."""
        pinned, kept = self.held()
        if not pinned:
            lines = [f"node {self.party}: no audit checkpoint received yet ({self.path})"]
        else:
            lines = [f"node {self.party}: {len(kept)} checkpoint(s) of the platform's audit "
                     f"log in {self.path} (platform key {fingerprint(pinned)})"]
            lines += [f"  entry {c.seq:>8}  {c.head}  {c.ts}"
                      + (f"  MACs from entry {c.mac_from}" if c.mac_from else "")
                      for c in kept[-5:]]
        lines.append(f"platform key pinned by node.yaml: {self.pin}" if self.pin else
                     "platform key pinned by node.yaml: none (the first key sent is trusted)")
        records = self.alarms()
        alarms = [a for a in records if "resolved" not in a]
        lines.append(f"refused: {len(alarms)}" + (f" ({self.alarms_path})" if alarms else ""))
        lines += [f"  {a['time']}  " + (f"resolved: {a['resolved']}" if "resolved" in a
                                         else str(a["reason"])) for a in records[-5:]]
        halted = self.halted()
        lines.append(f"HALTED: {halted}" if halted else "taking tasks: yes")
        return lines

    def receive(self, msg: AuditCheckpoint, now: dt.datetime | None = None) -> str:
        """Keep ``msg`` if it moves the head forward; ``""``, or why it was refused."""
        c = Checkpoint(msg.seq, msg.head, msg.ts, msg.signature, msg.mac_from)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        why = self._refusal(c, msg.public_key)
        if why:
            self._alarm(why, c, now or dt.datetime.now(dt.UTC))
            return why
        newest = self._newest_kept()
        if newest is None or c.seq > newest.seq:
            keep(self.path, msg.public_key, c)
            self._newest = c
        return ""

    def _refusal(self, c: Checkpoint, public_pem: str) -> str:
        if self.pin is not None and _fingerprint_or_none(public_pem) != self.pin:
            return ("the checkpoint is signed with another key than the platform key "
                    f"node.yaml pins ({self.pin})")
        pinned, _ = self.held()
        if pinned and pinned != public_pem:
            return "the platform's audit key differs from the one this node pinned"
        try:
            signed = check_signature(c, public_pem)
        except (ConfigError, ValueError):
            signed = False
        if not signed:
            return f"the checkpoint of entry {c.seq} is not signed by the platform's key"
        newest = self._newest_kept()
        if newest is None:
            return ""
        if c.seq < newest.seq:
            return (f"the platform's audit log went backwards: it now ends at entry {c.seq}, "
                    f"but this node holds a checkpoint of entry {newest.seq} ({newest.ts}); "
                    "the log was cut or rolled back")
        if c.seq == newest.seq and c.head != newest.head:
            return (f"the platform's audit log forked: entry {c.seq} has hash {c.head}, but "
                    f"this node holds {newest.head} for it ({newest.ts})")
        if newest.mac_from and c.mac_from != newest.mac_from:
            return (f"the platform's audit log forked: its MACs now start at entry "
                    f"{c.mac_from}, not {newest.mac_from}")
        return ""

    def _newest_kept(self) -> Checkpoint | None:
        if self._newest is None:
            _, kept = self.held()
            self._newest = max(kept, key=lambda k: k.seq, default=None)
        return self._newest

    def _recorded(self, why: str, c: Checkpoint) -> bool:
        return any(_same_alarm(a, why, c) for a in self.alarms())

    def _alarm(self, why: str, c: Checkpoint, now: dt.datetime) -> None:
        """Record a refusal once per checkpoint (the platform repeats it every beat)."""
        if self._last_alarm == (c.seq, c.head, why):
            return
        self._last_alarm = (c.seq, c.head, why)
        if self._recorded(why, c):
            return  # recorded before (and perhaps resolved): a restart does not halt anew
        log.error("node %s refused an audit checkpoint: %s", self.party, why)
        record = {"time": now.isoformat(), "reason": why, "checkpoint": json.loads(c.to_json())}
        with self.alarms_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")


def _same_alarm(record: dict[str, object], why: str, c: Checkpoint) -> bool:
    kept = record.get("checkpoint")
    return (record.get("reason") == why and isinstance(kept, dict)
            and (kept.get("seq"), kept.get("head")) == (c.seq, c.head))


def _fingerprint_or_none(public_pem: str) -> str | None:
    try:
        return fingerprint(public_pem)
    except ConfigError:
        return None
