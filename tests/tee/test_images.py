"""Enclave images: the Gramine manifest renders and is checked, each measurement command reads its build output.

gramine-sgx-sign, nitro-cli and docker cannot run here; what they produce
(SIGSTRUCT, build-enclave JSON) is made in its documented format and read by
the same code providers run.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from tests.tee.conftest import SimWorld
from typer.testing import CliRunner

from sharedml.errors import AttestationError, ConfigError
from sharedml.tee.attestation.sim import SimBackend, measure
from sharedml.tee.attestation.simqe import LocalSimAttester
from sharedml.tee.cli import register
from sharedml.tee.images import (
    attestation_self_test,
    check_gramine_manifest,
    nitro_reference,
    sigstruct_reference,
    sim_reference,
    snp_reference,
)
from sharedml.tee.manager import build_manifest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "tee"
MRENCLAVE = bytes(range(32))


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


def render(tmp_path: Path, template: Path, *extra: str) -> tuple[int, str, Path]:
    out = tmp_path / "sharedml-enclave.manifest"
    args = ["tee", "render-manifest", str(template), str(out), "-D", "entrypoint=/opt/sharedml/venv/bin/python3",
            "-D", "venv=/opt/sharedml/venv", "-D", "isvprodid=1", "-D", "isvsvn=4",
            "-D", "arch_libdir=/lib/x86_64-linux-gnu", *extra]
    result = CliRunner().invoke(app(), args)
    return result.exit_code, result.output, out


def test_gramine_manifest_template_renders_for_release(tmp_path: Path) -> None:
    code, output, out = render(tmp_path, DEPLOY / "gramine" / "sharedml-enclave.manifest.template")
    assert code == 0, output
    manifest = tomllib.loads(out.read_text())
    assert manifest["sgx"]["debug"] is False and manifest["sgx"]["remote_attestation"] == "dcap"
    assert (manifest["sgx"]["isvprodid"], manifest["sgx"]["isvsvn"]) == (1, 4)
    argv = manifest["loader"]["argv"]
    assert argv[argv.index("--attester") + 1] == "gramine" and argv[argv.index("--svn") + 1] == "4"
    assert "file:/opt/sharedml/venv/" in manifest["sgx"]["trusted_files"]
    work = next(m for m in manifest["fs"]["mounts"] if m["path"] == "/work")
    assert work["type"] == "encrypted"  # spooled ciphertext and sealed state never reach the host in clear


@pytest.mark.parametrize(
    ("change", "problem"),
    [(("sgx.debug = false", "sgx.debug = true"), "sgx.debug"),
     (('sgx.remote_attestation = "dcap"', 'sgx.remote_attestation = "none"'), "dcap"),
     (('"--attester", "gramine"', '"--attester", "sim"'), "--attester")],
    ids=["debug", "no-dcap", "attester-not-fixed"],
)
def test_manifest_unfit_for_release_is_refused(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    template = tmp_path / "t.template"
    text = (DEPLOY / "gramine" / "sharedml-enclave.manifest.template").read_text()
    assert change[0] in text
    template.write_text(text.replace(*change))
    code, _, out = render(tmp_path, template)
    assert code != 0 and not out.exists()
    _, _, out = render(tmp_path, DEPLOY / "gramine" / "sharedml-enclave.manifest.template")
    with pytest.raises(ConfigError, match=problem):
        check_gramine_manifest(out.read_text().replace(*change))


def sigstruct(key: rsa.RSAPrivateKey, *, prodid: int, svn: int, debug: bool = False) -> bytes:
    """A SIGSTRUCT laid out as in Intel SDM vol. 3D §38.13, signed as gramine-sgx-sign does."""
    s = bytearray(1808)
    s[0:16] = bytes.fromhex("06000000e10000000000010000000000")
    s[24:40] = bytes.fromhex("01010000600000006000000001000000")
    numbers = key.public_key().public_numbers()
    s[128:512] = numbers.n.to_bytes(384, "little")
    s[512:516] = numbers.e.to_bytes(4, "little")
    s[928:936] = (0x4 | (0x2 if debug else 0)).to_bytes(8, "little")  # MODE64BIT (+ DEBUG)
    s[960:992] = MRENCLAVE
    s[1024:1026] = prodid.to_bytes(2, "little")
    s[1026:1028] = svn.to_bytes(2, "little")
    signature = key.sign(bytes(s[:128] + s[900:1028]), padding.PKCS1v15(), hashes.SHA256())
    s[516:900] = int.from_bytes(signature, "big").to_bytes(384, "little")
    return bytes(s)


def test_measure_gramine_reads_a_verified_sigstruct(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=3072)
    sig = tmp_path / "sharedml-enclave.sig"
    sig.write_bytes(sigstruct(key, prodid=1, svn=4))
    result = CliRunner().invoke(app(), ["tee", "measure", "gramine", str(sig)])
    assert result.exit_code == 0, result.output
    reference = json.loads(result.stdout)
    modulus_le = key.public_key().public_numbers().n.to_bytes(384, "little")
    assert reference == {"backend": "dcap", "measurements": [MRENCLAVE.hex()],
                         "signer": hashlib.sha256(modulus_le).hexdigest(), "product_id": 1, "min_svn": 4,
                         "debug": False}
    assert sigstruct_reference(sigstruct(key, prodid=1, svn=4, debug=True))["debug"] is True
    tampered = bytearray(sig.read_bytes())
    tampered[1026] = 9  # claim another ISVSVN
    with pytest.raises(ConfigError, match="signature"):
        sigstruct_reference(bytes(tampered))
    with pytest.raises(ConfigError, match="SIGSTRUCT"):
        sigstruct_reference(b"\x00" * 100)


def test_measure_nitro_reads_build_enclave_output() -> None:
    pcr = {f"PCR{i}": hashlib.sha384(bytes([i])).hexdigest() for i in (0, 1, 2, 8)}
    output = json.dumps({"Measurements": {"HashAlgorithm": "Sha384 { ... }", **pcr}})
    assert nitro_reference(output) == {"backend": "nitro", "measurements": [pcr["PCR0"]], "signer": pcr["PCR8"]}
    with pytest.raises(ConfigError):
        nitro_reference(json.dumps({"Measurements": {"PCR0": "00" * 48}}))  # a debug-mode all-zero PCR0
    with pytest.raises(ConfigError):
        nitro_reference("Start building the Enclave Image...")


def test_measure_sim_is_what_the_quoting_side_measures() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    manifest = build_manifest(ec.generate_private_key(ec.SECP384R1()), svn=2)
    reference = sim_reference(svn=2)
    assert reference["measurements"] == [measure(manifest.root, manifest.files, manifest.config).hex()]
    result = CliRunner().invoke(app(), ["tee", "measure", "sim", "--svn", "2"])
    assert json.loads(result.stdout) == reference


def test_measure_snp_without_its_tool_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="pip install sev-snp-measure"):
        snp_reference(["--vcpus", "2"])


def test_self_test_attests_a_fresh_key_and_nonce(sim: SimWorld) -> None:
    backend = SimBackend.from_vendor(sim.vendor, sim.tcb_info, sim.crl)
    out = attestation_self_test(LocalSimAttester(sim.quoter()), backends=[backend])
    assert out["binding"] == "ok" and out["svn"] == 2 and out["simulated"] is True
    with pytest.raises(AttestationError):  # a debug enclave fails unless allowed
        attestation_self_test(LocalSimAttester(sim.quoter(sim.manifest(debug=True))), backends=[backend])
