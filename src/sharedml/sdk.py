"""The Python SDK: the platform's REST API (``/api/v1``) as methods.

::

    from sharedml.sdk import Client

    with Client("https://platform:8600", verify="ca.pem") as c:
        c.login("alice", "password", totp="123456")      # or Client(..., token="smt_...")
        job = c.submit(open("job.yaml").read())
        c.wait(job["id"], timeout=600)
        print(c.result(job["id"]))

Every error response becomes the matching :mod:`sharedml.errors` exception
(401 AuthError, 403 PolicyDenied, 404 NotFound, 409 Conflict, 422 ConfigError,
429 LoginThrottled; the last four are ConfigError/AuthError kinds) carrying the
server's message and remedy; a platform that cannot be reached raises
:class:`~sharedml.errors.PeerUnreachable`.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from sharedml.errors import (
    AuthError,
    ConfigError,
    PeerTimeout,
    PeerUnreachable,
    PolicyDenied,
    SharedMLError,
)
from sharedml.platform.errors import Conflict, LoginThrottled, NotFound

FINAL = ("succeeded", "failed", "canceled")
#: How often a call the platform answered "busy" (503 + Retry-After) is sent again;
#: a busy answer stored nothing (issue 14 item 3), so sending again is safe.
BUSY_RETRIES = 8
_ERRORS: dict[int, type[SharedMLError]] = {
    401: AuthError,
    403: PolicyDenied,
    404: NotFound,
    409: Conflict,
    422: ConfigError,
    429: LoginThrottled,
}


class Client:
    """A session with one platform.

    ``token``: a session or API token, if already held; ``verify``: True (system
    CAs), False, or the path of the CA certificate that signed the platform's.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token
        tls: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1",
            verify=tls,
            timeout=timeout,
            transport=transport,
        )

    # --- plumbing --------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for _ in range(BUSY_RETRIES):
            r = self._send(method, path, **kwargs)
            if r.status_code != 503 or "retry-after" not in r.headers:
                break
            time.sleep(_retry_after(r.headers["retry-after"]))
        if r.status_code >= 400:
            raise _error(r)
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        if r.headers.get("content-type", "").startswith("application/octet-stream"):
            return r.content
        return r.text

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise PeerTimeout(f"the platform did not answer {method} {path}: {exc}") from None
        except httpx.TransportError as exc:
            raise PeerUnreachable(
                f"cannot reach the platform at {self._http.base_url}: {exc}",
                remedy="check the URL, that 'sharedml platform serve' runs, and TLS settings",
            ) from None

    # --- auth --------------------------------------------------------------------------

    def login(self, username: str, password: str, totp: str | None = None) -> dict[str, Any]:
        """Log in; the session token is kept for later calls."""
        out = self._call(
            "POST", "/auth/login", json={"username": username, "password": password, "totp": totp}
        )
        self.token = out["token"]
        return dict(out)

    def logout(self) -> None:
        self._call("POST", "/auth/logout")
        self.token = None

    def me(self) -> dict[str, Any]:
        return dict(self._call("GET", "/auth/me"))

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/auth/tokens"))

    def create_token(self, name: str, expires_days: int | None = None) -> dict[str, Any]:
        """A new API token; its value (``["token"]``) is shown only here."""
        return dict(
            self._call("POST", "/auth/tokens", json={"name": name, "expires_days": expires_days})
        )

    def revoke_token(self, token_id: int) -> None:
        self._call("DELETE", f"/auth/tokens/{token_id}")

    # --- users -------------------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/users"))

    def user(self, user_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/users/{user_id}"))

    def user_named(self, username: str) -> dict[str, Any]:
        """``{id, username}`` of a user by name (for who may grant: admins, data owners)."""
        return dict(self._call("GET", f"/users/named/{quote(username, safe='')}"))

    def create_user(
        self, username: str, password: str, role: str, *, totp: bool = True,
        party: str | None = None,
    ) -> dict[str, Any]:
        """A new user; ``party``: the organisation whose datasets it may act on."""
        body = {"username": username, "password": password, "role": role, "totp": totp,
                "party": party}
        return dict(self._call("POST", "/users", json=body))

    def update_user(self, user_id: int, **changes: Any) -> dict[str, Any]:
        """``role``, ``party``, ``disabled``, ``password`` or ``unlock=True``."""
        return dict(self._call("PATCH", f"/users/{user_id}", json=changes))

    def reset_totp(self, user_id: int) -> str:
        return str(self._call("POST", f"/users/{user_id}/totp")["totp_uri"])

    # --- projects and grants ---------------------------------------------------------

    def create_project(self, name: str, description: str = "") -> dict[str, Any]:
        return dict(
            self._call("POST", "/projects", json={"name": name, "description": description})
        )

    def projects(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/projects"))

    def project(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/projects/{project_id}"))

    def grants(self, resource: str, resource_id: int) -> list[dict[str, Any]]:
        """Grants on a ``project`` or ``dataset``."""
        return list(self._call("GET", f"/{resource}s/{resource_id}/grants"))

    def grant(
        self, resource: str, resource_id: int, user_id: int, permission: str
    ) -> dict[str, Any]:
        body = {"user_id": user_id, "permission": permission}
        return dict(self._call("PUT", f"/{resource}s/{resource_id}/grants", json=body))

    def revoke(self, resource: str, resource_id: int, user_id: int) -> None:
        self._call("DELETE", f"/{resource}s/{resource_id}/grants/{user_id}")

    # --- datasets, approvals, models, nodes ---------------------------------------------

    def register_dataset(
        self,
        owner_party: str,
        name: str,
        columns: list[dict[str, str]],
        row_count: int | None = None,
        project_id: int | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        body = {
            "owner_party": owner_party, "name": name, "columns": columns,
            "row_count": row_count, "project_id": project_id, "description": description,
        }  # fmt: skip
        return dict(self._call("POST", "/datasets", json=body))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/datasets"))

    def dataset(self, dataset_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/datasets/{dataset_id}"))

    def delete_dataset(self, dataset_id: int) -> None:
        self._call("DELETE", f"/datasets/{dataset_id}")

    def approvals(
        self, job_id: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("job_id", job_id), ("state", state)) if v}
        return list(self._call("GET", "/approvals", params=params))

    def approval_status(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/approvals/jobs/{job_id}"))

    def decide(
        self, approval_id: int, approve: bool, comment: str = "",
        signed: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"approve": approve, "comment": comment}
        if signed is not None:
            body["signed"] = signed
        return dict(self._call("POST", f"/approvals/{approval_id}/decision", json=body))

    def audit_checkpoint(self) -> dict[str, Any]:
        """The platform's signed checkpoint of its audit log's head, with its public key."""
        return dict(self._call("GET", "/audit/checkpoint"))

    def approval_spec(self, approval_id: int) -> dict[str, Any]:
        """The job's spec an approval is about (for its dataset's owner)."""
        return dict(self._call("GET", f"/approvals/{approval_id}/spec"))

    def approve(
        self, approval_id: int, comment: str = "", *, key: str | Path | None = None,
        signer: str | None = None,
    ) -> dict[str, Any]:
        """Approve one job's use of a dataset, signed with the owner's approval ``key``.

        The spec is fetched, hashed *here* and signed here (:mod:`sharedml.approvals`);
        only the signature leaves this process. ``signer`` is the key's name in the
        node's ``approvers:`` (default: the key file's stem). Without ``key`` the
        platform records the approval but the nodes refuse to read the data."""
        if key is None:
            return self.decide(approval_id, True, comment)
        from sharedml import approvals

        about = self.approval_spec(approval_id)
        statement = approvals.Statement(
            job_id=about["job_id"], party=about["party"], dataset=about["dataset"],
            spec_sha256=approvals.spec_sha256(about["spec"]),
        )
        signed = approvals.sign(approvals.load_private(key), statement, signer or Path(key).stem)
        return self.decide(approval_id, True, comment, signed.model_dump())

    def reject(self, approval_id: int, comment: str = "") -> dict[str, Any]:
        return self.decide(approval_id, False, comment)

    def register_model(self, job_id: str, party: str, **fields: Any) -> dict[str, Any]:
        return dict(
            self._call("POST", "/models", json={"job_id": job_id, "party": party, **fields})
        )

    def models(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/models", params={"job_id": job_id} if job_id else {}))

    def model(self, model_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/models/{model_id}"))

    # --- the model registry: versions registered by jobs -------------------------------
    def model_versions(self, name: str | None = None) -> list[dict[str, Any]]:
        """Registered model versions (metadata and part fingerprints), of one ``name``."""
        return list(self._call("GET", "/registry/models", params={"name": name} if name else {}))

    def model_version(self, ref: str) -> dict[str, Any]:
        """One version by ``NAME@ALIAS``, ``NAME@VERSION`` or uid."""
        return dict(self._call("GET", f"/registry/models/{quote(ref, safe='@')}"))

    def tag_model(self, ref: str, alias: str) -> dict[str, Any]:
        """Point ``alias`` (e.g. ``production``) at the version ``ref`` (audited)."""
        path = f"/registry/models/{quote(ref, safe='@')}/aliases/{quote(alias, safe='')}"
        return dict(self._call("PUT", path))

    def consent_to_delete_model(self, ref: str) -> dict[str, Any]:
        """Consent, as owner of training datasets, to deleting a version; it is deleted
        once every party's owner has. ``{uid, deleted, consent, missing}``."""
        return dict(self._call("POST", f"/registry/models/{quote(ref, safe='@')}/delete-consent"))

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/nodes"))

    def node(self, node_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/nodes/{node_id}"))

    def delete_node(self, node_id: str) -> None:
        self._call("DELETE", f"/nodes/{node_id}")

    # --- audit and settings -------------------------------------------------------------

    def audit(self, **query: Any) -> list[dict[str, Any]]:
        """Entries; filters ``actor``, ``action`` (prefix), ``after_seq``, ``limit``."""
        return list(self._call("GET", "/audit", params=query))

    def audit_export(self) -> str:
        return str(self._call("GET", "/audit/export"))

    def audit_verify(self) -> dict[str, Any]:
        return dict(self._call("GET", "/audit/verify"))

    def settings(self) -> dict[str, Any]:
        return dict(self._call("GET", "/settings"))

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", "/settings", json=changes))

    # --- jobs ---------------------------------------------------------------------------

    def submit(
        self,
        spec: dict[str, Any] | str | Path,
        *,
        project_id: int | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Submit a job spec (a mapping, YAML/JSON text, or a path to a spec file)."""
        if isinstance(spec, Path):
            spec = spec.read_text(encoding="utf-8")
        body: dict[str, Any] = {"spec": spec}
        for key, value in (
            ("project_id", project_id),
            ("max_attempts", max_attempts),
            ("timeout_s", timeout_s),
        ):
            if value is not None:
                body[key] = value
        return dict(self._call("POST", "/jobs", json=body))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{job_id}"))

    def jobs(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        return list(self._call("GET", "/jobs", params=params))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/jobs/{job_id}/cancel"))

    def tasks(self, job_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/jobs/{job_id}/tasks"))

    def result(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{job_id}/result"))

    # --- TEE jobs (/tee) ---------------------------------------------------------------

    def tee_enclave(self, job_id: str) -> dict[str, Any]:
        """Where a TEE job's providers upload: the enclave's address and certificate (pin, then attest)."""
        return dict(self._call("GET", f"/tee/jobs/{job_id}"))

    def tee_receipt(self, job_id: str) -> dict[str, Any]:
        """The TEE job's signed destruction receipt (verify it against the attested key bundle)."""
        return dict(self._call("GET", f"/tee/jobs/{job_id}/receipt"))

    def tee_released(self, job_id: str, what: str, step: str) -> bytes:
        """A model or scores (``what``) of ``step`` sealed to the caller's party."""
        return bytes(self._call("GET", f"/tee/jobs/{job_id}/released/{what}/{step}"))

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 1.0) -> dict[str, Any]:
        """Poll until the job finishes; returns it. PeerTimeout if it does not in time."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in FINAL:
                return job
            if time.monotonic() >= deadline:
                raise PeerTimeout(
                    f"job {job_id} is still {job['state']} after {timeout:g} s",
                    remedy=f"reason given: {job.get('reason') or 'none'}",
                )
            time.sleep(poll)

    # Short names for the job calls.
    get = job
    list = jobs


def _error(r: httpx.Response) -> SharedMLError:
    try:
        body = r.json()
        message, remedy = str(body.get("detail")), body.get("remedy")
    except ValueError:
        message, remedy = r.text[:500], None
    cls = _ERRORS.get(r.status_code, SharedMLError)
    return cls(f"platform answered {r.status_code}: {message}", remedy=remedy)


__all__ = ["Client"]


def _retry_after(value: str) -> float:
    """Seconds to wait from a Retry-After header (seconds; anything else: 1 s), at most 30."""
    try:
        return min(max(float(value), 0.0), 30.0)
    except ValueError:
        return 1.0
