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

    .venv/bin/python bench/tee.py [--mib 32] [--repeat 9]
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
from _common import report
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


if __name__ == "__main__":
    main()
