"""The ``STEPS.md`` of each bundle and the bundles' ``README.md``: an operator's steps, in order."""

from __future__ import annotations

from sharedml.deployment.plan import AUDIT_KEY, DEALER, PLATFORM, DeploymentPlan
from sharedml.deployment.units import Process, config_key


def overview(plan: DeploymentPlan) -> str:
    orgs = ", ".join(plan.organisations)
    return f"""# Deployment {plan.name}: who does what, in order

Bundles: `platform/` (the operator), {orgs} (one per organisation){
", `dealer/` (a host no data party controls)" if plan.dealer else ""}. Each
operator needs only their bundle and the sharedml package (or the image built
from the repository's `Dockerfile`, `{plan.image}`). No private key is in any
bundle, and none ever travels: each is made on the host that uses it.

1. **CA operator** (keep the CA off the platform's host): `sharedml pki init CA_DIR`.
2. **Every operator**: steps 1-2 of their `STEPS.md` — install, then make a key
   and a certificate request (`pki/<name>.csr`) and send the request to the CA.
3. **CA operator**: for each request, `sharedml pki sign CA_DIR NAME.csr --name NAME`;
   send back `NAME.pem` and `CA_DIR/ca.pem` (and `crl.pem`).
4. **Every operator**: install the certificate (step 3 of `STEPS.md`).
5. **Platform operator**: create the users, send every node's operator the
   platform's audit-checkpoint key (`platform-audit.pem`), start the platform
   (its steps 4-5).
6. **Organisations and dealer**: put `platform-audit.pem` in `pki/` (node.yaml
   pins it: a node refuses checkpoints signed by any other key, and does not
   start without it), then start the nodes (their remaining steps). Each
   node reports its datasets (names, columns, rows) when it connects.
7. **Each organisation's data owner** registers its datasets on the platform and
   grants the analysts use; **an analyst** submits a job; **each data owner**
   approves it by signing the job's spec with the approval key on their own
   machine. Only then does a node read its data.

Revocation: `sharedml pki revoke CA_DIR NAME` at the CA, then copy the new
`crl.pem` into every bundle's `pki/` (processes re-read it while running).
"""


def render(plan: DeploymentPlan, proc: Process, *, has_ca: bool) -> str:
    """The steps of ``proc``'s operator."""
    bundle = plan.bundle_dir(proc.who)
    host = plan.platform.host if proc.who == PLATFORM else (
        plan.dealer.host if proc.who == DEALER and plan.dealer else
        plan.organisations[proc.who].host)
    ca = ("`pki/ca.pem` is already here" if has_ca
          else "copy the CA's `ca.pem` into `pki/` when you receive your certificate")
    parts = [
        f"# {proc.description}: steps for its operator\n",
        f"""1. **Install.** `pip install sharedml-*.whl`, a wheel built from the repository with
   `pip wheel --no-deps -w dist .` (or load the image `{plan.image}` built from
   the repository's `Dockerfile`), and copy this folder to `{bundle}` on the host
   `{host}`. Create the user `{plan.user}` and give it the folder:
   `useradd --system {plan.user} && chown -R {plan.user} {bundle}`.
2. **Key and request, on this host.** `cd {bundle} && sharedml pki request pki {proc.who} --host {host}`
   makes `pki/{proc.who}.key` (stays here, mode 0600) and `pki/{proc.who}.csr`.
   Send the `.csr` to the deployment CA's operator ({ca}).
3. **Install the certificate** you get back:
   `sharedml pki install pki {proc.who}.pem --ca ca.pem`.
""",
    ]
    parts.append(_platform_steps(plan) if proc.who == PLATFORM else _node_steps(plan, proc))
    parts.append(_start_steps(proc))
    parts.append(_operate_steps(proc))
    return "\n".join(parts)


def _platform_steps(plan: DeploymentPlan) -> str:
    users = "\n".join(
        f"   sharedml user add {k} --role data_owner --party {org} --data-dir data"
        for org in plan.organisations for k in plan.owners_of(org))
    return f"""4. **Users.** On this host, before the first start:
   ```
   sharedml user add admin --role admin --data-dir data
{users}
   sharedml user add analyst --role analyst --data-dir data
   sharedml user token analyst --data-dir data      # an API token, printed once
   sharedml platform audit-key --data-dir data --out platform-audit.pem
   ```
   Give each organisation's data owners their password; they log in over HTTPS
   (`https://{plan.platform.host}:{plan.platform.api_port}`, verified against `pki/ca.pem`).
   Send `platform-audit.pem` (public; the fingerprint printed with it, by another
   channel) to every node's operator: their `node.yaml` pins it, so a node keeps
   only the audit checkpoints this platform signed.
"""


def _node_steps(plan: DeploymentPlan, proc: Process) -> str:
    pin = (f"   **The platform's audit key.** Put the `platform-audit.pem` the platform's "
           f"operator sends you at `{AUDIT_KEY}`\n   (check its fingerprint with them: "
           "`sharedml platform audit-key` prints it); `node.yaml` pins it\n   "
           "(`audit_checkpoint_key`) and the node does not start without it.\n")
    if proc.who == DEALER:
        return ("4. **No data here.** The dealer deals the randomness of secret-shared "
                "steps; it must not be run by any data party.\n" + pin)
    keys = ", ".join(f"`owners/{k}.pub`" for k in plan.owners_of(proc.who))
    first = plan.owners_of(proc.who)[0]
    return f"""4. **Datasets and owners.** Check the dataset paths in `node.yaml` (`datasets:`).
   Each data owner makes an approval key *on their own machine*:
   `sharedml approval keygen {first}`; only the public half comes here: {keys}.
   The node reads a dataset only for a job one of these keys signed.
""" + pin


def _start_steps(proc: Process) -> str:
    cm = " ".join(f"--from-file={config_key(f)}={f}" for f in proc.config_files)
    config = (f"     kubectl create configmap {proc.unit_name}-config {cm}\n"
              if proc.config_files else "")
    check = (f"   `curl --cacert pki/ca.pem https://127.0.0.1:{proc.health_port}/readyz`"
             if proc.health_scheme == "HTTPS" and proc.health_port else
             f"   `curl http://127.0.0.1:{proc.health_port}/readyz`" if proc.health_port else
             "   the log says it connected to the platform")
    return f"""5. **Start**, one of:
   - systemd: `cp systemd/{proc.unit_name}.service /etc/systemd/system/ &&
     systemctl daemon-reload && systemctl enable --now {proc.unit_name}`
     (restarted when it dies: `Restart=on-failure`);
   - docker compose: `docker compose up -d` in this folder (`restart: unless-stopped`);
   - Kubernetes:
     ```
     kubectl create secret generic {proc.unit_name}-pki --from-file=pki/
{config}     kubectl apply -f k8s/{proc.who}.yaml
     ```
6. **Check**:
{check}
"""


def _operate_steps(proc: Process) -> str:
    if proc.who == PLATFORM:
        return """7. **Operate.** Prometheus scrapes `https://HOST:8600/metrics` (job `sharedml-platform`)
   and each node's `http://NODE:9464/metrics` (job `sharedml-node`); load `alerts.yml`.
   Back up with `sharedml platform backup FILE --data-dir data --passphrase-file P`
   (the platform key goes in sealed under your passphrase); on a new host,
   `sharedml platform restore FILE --data-dir data --passphrase-file P`.
"""
    if proc.who == DEALER:
        return ""
    return """7. **Operate.** `work/tasks.jsonl` has one line per task (sizes and times, no values).
   Back up the model parts: `sharedml node-backup node.yaml FILE --passphrase-file P`
   (restore with `sharedml node-restore`).
"""
