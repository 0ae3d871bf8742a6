"""Deployment bundles for organisations on separate hosts (``sharedml deploy``, 8.6-3).

Runs on the machine of whoever plans the deployment (the platform's operator,
usually) and writes files only: one folder per organisation — its node
config, the deployment CA's certificate, systemd units, a docker-compose file
and Kubernetes manifests — and one for the platform and one for the dealer.
It makes no key: each organisation makes its own on its own host
(``sharedml pki request``) from the steps in its bundle's ``STEPS.md``, so no
private key ever leaves the host that uses it (9.4-1, issue 13 items 1 and 6).

* :mod:`.plan` — the plan file (hosts, ports, datasets, owners) and its checks;
* :mod:`.units` — the systemd, compose and Kubernetes texts of one process;
* :mod:`.bundle` — writes the bundles and their steps;
* :mod:`.cli` — the ``sharedml deploy`` command.
"""
