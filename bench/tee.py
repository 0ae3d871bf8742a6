"""Upload throughput to an enclave: HPKE + AES-GCM chunks vs plain gRPC streaming.

Both sides run in this process over loopback gRPC with the same chunk size and
the same end-of-upload work (parse the Parquet table). The baseline streams
the table in the clear to a server that only collects it; sharedml attests a
fresh enclave, verifies the evidence, signs a grant, seals a data key with
HPKE, encrypts every chunk, and the enclave decrypts in order into one buffer.
A third path is the batched upload for data sets larger than the enclave's
memory budget: id-sorted Arrow record batches, one AEAD chunk each, which the
enclave opens once to check and spools as ciphertext. Runs are interleaved
(baseline, whole, batched, baseline, ...) so all see the same load. Goal: ≥ 70%
of the baseline's throughput for each.

Second, train time inside the enclave against the same training outside, on
default_credit (guest + host joined on id, 70/30 stratified split, seed 42):
``logistic_regression`` and ``xgboost`` as the enclave runs them (join, split,
fit, AUC, sealed checkpoint; called over gRPC) against the same library calls
on the joined frame in this process; ``logistic_regression_sgd`` from batched
uploads (decrypt + join every epoch) against the same SGD on the joined matrix
in memory. Goal: ≤ 1.2x.

Third, a job spec's steps inside (``Run``: psi, split, train, evaluate with
every metric — the component registry on the joined plaintext, over gRPC)
against the same join, split, learner and metrics called directly in this
process, per learner: ``logistic_regression`` (SGD, 5 epochs),
``secureboost`` (XGBoost, 30 trees) and ``mlp`` (torch, when installed).
Goal: ≤ 1.2x. Wall time and this process's CPU time (the in-process
enclave's threads included) are both reported: on a loaded shared machine
the CPU ratio is the steadier one.

    .venv/bin/python bench/tee.py [--mib 32] [--repeat 9] [--data tests/data/datasets] [--no-train]
                                  [--steps-only]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, report
from sharedml.tee.attestation import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor, sign_manifest
from sharedml.tee.attestation.simqe import LocalSimAttester, SimQuoter
from sharedml.tee.authz import SignedPolicy
from sharedml.tee.enclave import wire
from sharedml.tee.enclave.client import EnclaveClient
from sharedml.tee.enclave.runtime import Enclave
from sharedml.tee.enclave.service import EnclaveService
from sharedml.tee.provider import Provider, table_bytes

CHUNK = 1 << 20


def plain_server() -> tuple[grpc.Server, str]:
    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        header, _ = wire.decode(next(requests))
        buf, filled = bytearray(int(header["size"])), 0  # same buffer handling as the enclave
        for message in requests:
            _, body = wire.decode_view(message)
            buf[filled : filled + len(body)] = body
            filled += len(body)
        table = pq.read_table(pa.BufferReader(pa.py_buffer(buf))).to_pandas()  # same parse as the enclave
        return wire.encode({"rows": len(table)})

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
    handler = grpc.method_handlers_generic_handler(
        "bench.Plain", {"Upload": grpc.stream_unary_rpc_method_handler(upload)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def plain_upload(channel: grpc.Channel, payload: bytes) -> None:
    view = memoryview(payload)

    def messages() -> Iterator[bytes]:
        yield wire.encode({"upload_id": "plain", "size": len(payload)})
        for i in range(0, len(payload), CHUNK):
            yield wire.encode({"seq": i // CHUNK, "last": i + CHUNK >= len(payload)}, view[i : i + CHUNK])

    call = channel.stream_unary("/bench.Plain/Upload")
    wire.decode(call(messages()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--no-train", action="store_true", help="skip train time inside vs outside")
    ap.add_argument("--steps-only", action="store_true", help="only the job steps inside vs outside")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    rows = args.mib * (1 << 20) // (8 * 16)
    frame = pd.DataFrame(rng.normal(size=(rows, 16)), columns=[f"x{i}" for i in range(16)])
    frame.insert(0, "id", np.arange(rows))
    payload = table_bytes(frame)
    mib = len(payload) / (1 << 20)

    tmp = Path(tempfile.mkdtemp(prefix="bench-tee-"))
    vendor = SimVendor.create(tmp / "vendor")
    platform = vendor.provision("bench")
    code = tmp / "code"
    code.mkdir()
    (code / "enclave.py").write_text("pass\n")
    signer = ec.generate_private_key(ec.SECP384R1())
    quoter = SimQuoter(platform, sign_manifest(code, ("enclave.py",), {}, signer, product_id=1, svn=1))
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    policy = Policy(measurements=frozenset({quoter.measurement.hex()}), allow_simulation=True)
    if args.steps_only:
        steps_inside_vs_outside(args.data, max(3, args.repeat // 2), Fixture(quoter, backend, policy, tmp))
        return

    server, address = plain_server()
    channel = grpc.insecure_channel(address, options=wire.OPTIONS)

    service = EnclaveService(Enclave(LocalSimAttester(quoter), tmp / "work" / "0", job="bench"), lambda: None)
    esrv = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
    esrv.add_generic_rpc_handlers((service.handler(),))
    eport = esrv.add_insecure_port("127.0.0.1:0")
    esrv.start()
    client = EnclaveClient(f"127.0.0.1:{eport}")

    def timed_upload(send: Callable[[Provider, SignedPolicy], object]) -> float:
        """A fresh enclave (keys born inside; not timed), then attest + grant + ``send`` (timed)."""
        service.enclave = Enclave(LocalSimAttester(quoter), tmp / "work" / secrets.token_hex(4), job="bench")
        start = time.perf_counter()
        provider = Provider("p", client, Verifier([backend]), chunk_bytes=CHUNK)
        claims = provider.attest(policy)
        send(provider, provider.grant("bench", list(frame.columns), measurements=[claims.measurement]))
        elapsed = time.perf_counter() - start
        service.enclave.destroy()
        return elapsed

    def encrypted_upload() -> float:
        return timed_upload(lambda p, grant: p.upload(payload, grant))

    def batched_upload() -> float:
        """Record batches of ~1 MiB the enclave checks and spools (6.3 steps 3-6)."""
        return timed_upload(lambda p, grant: p.upload_batches(frame, grant, batch_rows=CHUNK // (8 * frame.shape[1])))

    def plain() -> float:
        start = time.perf_counter()
        plain_upload(channel, payload)
        return time.perf_counter() - start

    plain(), encrypted_upload(), batched_upload()  # warm-up
    # Interleaved, so all see the same load on this shared machine.
    runs = [(plain(), encrypted_upload(), batched_upload()) for _ in range(args.repeat)]
    t_plain = statistics.median(r[0] for r in runs)
    t_enc = statistics.median(r[1] for r in runs)
    t_batched = statistics.median(r[2] for r in runs)
    server.stop(None)
    esrv.stop(None)

    rows_out = [
        {"path": "plain gRPC stream (baseline)", "MiB": mib, "median_s": t_plain, "MiB_per_s": mib / t_plain},
        {"path": "attest + HPKE + AES-GCM chunks", "MiB": mib, "median_s": t_enc, "MiB_per_s": mib / t_enc},
        {"path": "batched: Arrow batches, checked, spooled", "MiB": mib, "median_s": t_batched,
         "MiB_per_s": mib / t_batched},
    ]
    ratio, ratio_batched = t_plain / t_enc, t_plain / t_batched
    print(f"encrypted / plain throughput: {ratio:.1%}; batched / plain: {ratio_batched:.1%} (goal ≥ 70%)")
    report("tee_upload", rows_out, {"ratio": ratio, "ratio_batched": ratio_batched, "goal": 0.7,
                                    "chunk_bytes": CHUNK})
    if not args.no_train:
        fixture = Fixture(quoter, backend, policy, tmp)
        train_inside_vs_outside(args.data, max(3, args.repeat // 2), fixture)
        steps_inside_vs_outside(args.data, max(3, args.repeat // 2), fixture)


class Fixture:
    """A simulated platform and build to start in-process enclaves from."""

    def __init__(self, quoter: SimQuoter, backend: SimBackend, policy: Policy, tmp: Path) -> None:
        self.quoter, self.backend, self.policy, self.tmp = quoter, backend, policy, tmp

    def enclave_with(self, tables: dict[str, pd.DataFrame], batched: bool) -> tuple[EnclaveClient, grpc.Server]:
        """A fresh enclave over gRPC with both tables uploaded (not timed); the label holder's client."""
        enclave = Enclave(LocalSimAttester(self.quoter), self.tmp / "train" / secrets.token_hex(4), job="bench")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=wire.OPTIONS)
        server.add_generic_rpc_handlers((EnclaveService(enclave, lambda: None).handler(),))
        client = EnclaveClient(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        server.start()
        guest = Provider("guest", client, Verifier([self.backend]))
        for name, frame in tables.items():
            provider = guest if name == "guest" else Provider(name, client, Verifier([self.backend]))
            claims = provider.attest(self.policy)
            grant = provider.grant("bench", list(frame.columns), measurements=[claims.measurement],
                                   model_to={"guest": guest.release_key})
            (provider.upload_batches(frame, grant, batch_rows=4096) if batched else provider.upload(frame, grant))
        return client, server


def join(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
    """What a data scientist with both tables does first: join on id (the enclave does the same)."""
    renamed = [t.rename(columns={c: f"{side}.{c}" for c in t.columns if c != "id"}) for side, t in tables.items()]
    joined = renamed[0].merge(renamed[1], on="id").sort_values("id").reset_index(drop=True)
    y = joined.pop("guest.y").to_numpy()
    return joined.drop(columns=["id"]), y


def train_inside_vs_outside(data: Path, repeat: int, fx: Fixture) -> None:
    from sklearn.model_selection import train_test_split

    from sharedml.learn.metrics import roc_auc
    from sharedml.tee.enclave import learners, sgd

    tables = {side: pd.read_csv(data / f"default_credit_hetero_{side}.csv") for side in ("guest", "host")}

    def outside(algorithm: str) -> None:
        """The same steps as the enclave: join, split, fit, train and test AUC."""
        x, y = join(tables)
        train, test = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
        train, test = np.sort(train), np.sort(test)
        model = learners.fit(algorithm, x.iloc[train], y[train], 42, {})
        learners.auc(y[train], model.predict_proba(x.iloc[train]))
        learners.auc(y[test], model.predict_proba(x.iloc[test]))

    def outside_sgd() -> None:
        x, y = join(tables)
        matrix = x.to_numpy()

        def blocks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for start in range(0, len(y), 4096):
                yield matrix[start : start + 4096], y[start : start + 4096].astype(np.float64)

        model = sgd.fit_logistic(blocks, epochs=5, eta0=0.1, schedule="constant", l2=0.0)
        roc_auc(y, model.decision(matrix))  # the enclave reports the training AUC too

    rows = []
    for algorithm, batched in (("logistic_regression", False), ("xgboost", False),
                               ("logistic_regression_sgd", True)):
        client, server = fx.enclave_with(tables, batched)
        request = {"algorithm": algorithm, "label": "guest.y", "seed": 42, "batch_rows": 4096}
        request.update({"params": {"epochs": 5}} if batched else {"test_size": 0.3})
        baseline = outside_sgd if batched else (lambda a=algorithm: outside(a))
        client.train(request), baseline()  # warm-up
        runs = []
        for _ in range(repeat):  # interleaved: both see the same load
            t0 = time.perf_counter()
            client.train(request)
            t1 = time.perf_counter()
            baseline()
            runs.append((t1 - t0, time.perf_counter() - t1))
        inside, plain = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        rows.append({"learner": algorithm, "inside_s": inside, "outside_s": plain, "ratio": inside / plain})
        client.close()
        server.stop(None)
    for row in rows:
        print(f"{row['learner']}: inside / outside {row['ratio']:.2f}x (goal ≤ 1.2x)")
    report("tee_train", rows, {"goal": 1.2, "data": "default_credit_hetero"})


def steps_inside_vs_outside(data: Path, repeat: int, fx: Fixture) -> None:
    """A spec's psi, split, train, evaluate inside (``Run``) vs the same calls outside, per learner."""
    from sklearn.model_selection import train_test_split

    from sharedml.components import jobspec
    from sharedml.learn import metrics
    from sharedml.tee import scheme
    from sharedml.tee.enclave import trainers

    tables = {side: pd.read_csv(data / f"default_credit_hetero_{side}.csv") for side in ("guest", "host")}
    models: list[dict[str, object]] = [{"model": "logistic_regression"}, {"model": "secureboost"}]
    try:
        import torch  # noqa: F401

        models.append({"model": "mlp", "epochs": 3})
    except ImportError:
        print("mlp: torch is not installed; skipped")

    def outside(train: dict[str, object]) -> None:
        x, y = join(tables)
        tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=42, stratify=y)
        tr, te = np.sort(tr), np.sort(te)
        given = {k: v for k, v in train.items() if k != "model"}
        model = trainers.fit(str(train["model"]), "classification", x.iloc[tr].to_numpy(), y[tr],
                             list(x.columns), given, trainers.public_seed("bench", "train"))
        metrics.evaluate(y[te], model.predict(x.iloc[te]), "classification")

    rows = []
    for train in models:
        client, server = fx.enclave_with(tables, batched=False)
        spec = jobspec.load({"name": "bench", "scheme": "tee", "parties": {
            "guest": {"dataset": "g.csv", "label": "y"}, "host": {"dataset": "h.csv"}},
            "steps": [{"psi": {}}, {"split": {"test_size": 0.3, "seed": 42}}, {"train": train}, {"evaluate": {}}]})
        request = {"steps": scheme.wire_steps(spec.parsed_steps()), "label": "guest.y", "id": "id"}
        client.run(request), outside(train)  # warm-up
        runs = []
        for _ in range(repeat):  # interleaved: both see the same load
            t0, c0 = time.perf_counter(), time.process_time()
            client.run(request)
            t1, c1 = time.perf_counter(), time.process_time()
            outside(train)
            runs.append((t1 - t0, time.perf_counter() - t1, c1 - c0, time.process_time() - c1))
        inside, plain = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        cpu_in, cpu_out = statistics.median(r[2] for r in runs), statistics.median(r[3] for r in runs)
        rows.append({"learner": train["model"], "inside_s": inside, "outside_s": plain, "ratio": inside / plain,
                     "cpu_inside_s": cpu_in, "cpu_outside_s": cpu_out, "cpu_ratio": cpu_in / cpu_out})
        client.close()
        server.stop(None)
    for row in rows:  # CPU time of this process (enclave threads included): steadier than wall time under load
        print(f"steps with {row['learner']}: inside / outside {row['ratio']:.2f}x wall, "
              f"{row['cpu_ratio']:.2f}x CPU (goal ≤ 1.2x)")
    report("tee_steps", rows, {"goal": 1.2, "data": "default_credit_hetero"})


if __name__ == "__main__":
    main()
