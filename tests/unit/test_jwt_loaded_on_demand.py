"""PyJWT and cryptography (~20 MB of a process) load with the first jwt Consumer compiled, not before."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import openconnector.standalone
from openconnector.consumers.verifiers import InboundAuthConfig, compile_verifier
compile_verifier(InboundAuthConfig(type="bearer", credentials=("a-token",)))
print(sorted(m for m in ("jwt", "cryptography") if m in sys.modules))
compile_verifier(InboundAuthConfig(type="jwt", credentials=("x" * 32,), algorithms=("HS256",), issuer="c"))
print(sorted(m for m in ("jwt", "cryptography") if m in sys.modules))
"""


def test_jwt_and_cryptography_load_only_for_a_jwt_consumer() -> None:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    before, after = run.stdout.splitlines()
    assert before == "[]"
    assert after == "['cryptography', 'jwt']"
