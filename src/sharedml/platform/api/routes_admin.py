"""``/api/v1``: users, runtime settings, the audit log, nodes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import PlainTextResponse

from sharedml.platform.api.deps import get_platform, require
from sharedml.platform.api.schemas import (
    NAME,
    AuditOut,
    CheckpointOut,
    NodeOut,
    TotpOut,
    UserCreated,
    UserIn,
    UserOut,
    UserPatch,
    UserRef,
    VerifyOut,
)
from sharedml.platform.auth import Principal
from sharedml.platform.runtime import RuntimeSettings
from sharedml.platform.service import Platform
from sharedml.platform.store.models import User

router = APIRouter(prefix="/api/v1")


def ID() -> Any:  # a fresh Path() per parameter: FastAPI must not share one FieldInfo
    return Path(ge=1, le=2**31 - 1)


def user_out(user: User) -> UserOut:
    out = UserOut.model_validate(user)
    return out.model_copy(update={"totp_enrolled": user.totp_secret_enc is not None})


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(
    _: Principal = Depends(require("users.read")), platform: Platform = Depends(get_platform)
) -> list[UserOut]:
    return [user_out(u) for u in platform.users.list()]


@router.post("/users", response_model=UserCreated, status_code=201, tags=["users"])
def create_user(
    body: UserIn,
    who: Principal = Depends(require("users.manage")),
    platform: Platform = Depends(get_platform),
) -> UserCreated:
    """A new user; the TOTP provisioning URI is returned once, here."""
    user, uri = platform.users.create(
        who.username, body.username, body.password, body.role, totp=body.totp,
        party=body.party,
    )
    return UserCreated(**user_out(user).model_dump(), totp_uri=uri)


@router.get("/users/named/{username}", response_model=UserRef, tags=["users"])
def user_named(
    username: str = Path(pattern=NAME),
    _: Principal = Depends(require("grants.manage")),
    platform: Platform = Depends(get_platform),
) -> UserRef:
    """The id of the user with this name, for who may grant (a data owner cannot list users)."""
    return UserRef.model_validate(platform.users.by_name(username))


@router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
def get_user(
    user_id: int = ID(),
    _: Principal = Depends(require("users.read")),
    platform: Platform = Depends(get_platform),
) -> UserOut:
    return user_out(platform.users.get(user_id))


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
def update_user(
    body: UserPatch,
    user_id: int = ID(),
    who: Principal = Depends(require("users.manage")),
    platform: Platform = Depends(get_platform),
) -> UserOut:
    """Change role or party, disable, set a password or lift a lock-out."""
    user = platform.users.update(
        who.username,
        user_id,
        role=body.role,
        disabled=body.disabled,
        password=body.password,
        unlock=body.unlock,
        party=body.party,
    )
    return user_out(user)


@router.post("/users/{user_id}/totp", response_model=TotpOut, tags=["users"])
def reset_totp(
    user_id: int = ID(),
    who: Principal = Depends(require("users.manage")),
    platform: Platform = Depends(get_platform),
) -> TotpOut:
    return TotpOut(totp_uri=platform.users.reset_totp(who.username, user_id))


@router.get("/settings", response_model=RuntimeSettings, tags=["settings"])
def get_settings(
    _: Principal = Depends(require("settings.read")), platform: Platform = Depends(get_platform)
) -> RuntimeSettings:
    return platform.settings.current()


@router.patch("/settings", response_model=RuntimeSettings, tags=["settings"])
def update_settings(
    changes: dict[str, Any] = Body(..., examples=[{"session_idle_minutes": 15}]),
    who: Principal = Depends(require("settings.write")),
    platform: Platform = Depends(get_platform),
) -> RuntimeSettings:
    """Change runtime settings; in force for the next request, audited (8.6-5)."""
    return platform.settings.update(changes, who.username)


@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def query_audit(
    actor: str | None = Query(None, max_length=128),
    action: str | None = Query(None, max_length=64),
    after_seq: int = Query(0, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(require("audit.read")),
    platform: Platform = Depends(get_platform),
) -> list[AuditOut]:
    rows = platform.audit.query(actor=actor, action=action, after_seq=after_seq, limit=limit)
    return [AuditOut.model_validate(r) for r in rows]


@router.get("/audit/export", response_class=PlainTextResponse, tags=["audit"])
def export_audit(
    who: Principal = Depends(require("audit.read")), platform: Platform = Depends(get_platform)
) -> str:
    """The whole chain as JSON lines."""
    text = "".join(line + "\n" for line in platform.audit.export())
    platform.audit.append(who.username, "audit.export", "audit_log")
    return text


@router.get("/audit/verify", response_model=VerifyOut, tags=["audit"])
def verify_audit(
    _: Principal = Depends(require("audit.read")), platform: Platform = Depends(get_platform)
) -> VerifyOut:
    v = platform.audit.verify()
    return VerifyOut(
        ok=v.ok, entries=v.entries, head=v.head, first_bad_seq=v.first_bad_seq, reason=v.reason
    )


@router.get("/audit/checkpoint", response_model=CheckpointOut, tags=["audit"])
def audit_checkpoint(
    _: Principal = Depends(require("audit.checkpoint")), platform: Platform = Depends(get_platform)
) -> CheckpointOut:
    """The platform's signature over the audit log's head now, and its public key: keep
    it (``sharedml audit checkpoint --save``) and verify the log against it later (9.3)."""
    c = platform.checkpoints.current(platform.audit, platform.clock.now().isoformat())
    return CheckpointOut(seq=c.seq, head=c.head, ts=c.ts, signature=c.signature,
                         mac_from=c.mac_from, public_key=platform.checkpoints.public_pem())


@router.get("/nodes", response_model=list[NodeOut], tags=["nodes"])
def list_nodes(
    _: Principal = Depends(require("nodes.read")), platform: Platform = Depends(get_platform)
) -> list[NodeOut]:
    return [NodeOut.model_validate(n) for n in platform.nodes.list()]


@router.get("/nodes/{node_id}", response_model=NodeOut, tags=["nodes"])
def get_node(
    node_id: str = Path(max_length=64),
    _: Principal = Depends(require("nodes.read")),
    platform: Platform = Depends(get_platform),
) -> NodeOut:
    return NodeOut.model_validate(platform.nodes.get(node_id))


@router.delete("/nodes/{node_id}", status_code=204, tags=["nodes"])
def delete_node(
    node_id: str = Path(max_length=64),
    who: Principal = Depends(require("nodes.manage")),
    platform: Platform = Depends(get_platform),
) -> None:
    platform.nodes.delete(who.username, node_id)
