"""Regenerate aes256gcm_nist.json from the NIST GCM vectors in `cryptography-vectors`.

Keeps the AES-256 cases with a 96-bit IV and a 128-bit tag, the parameters of
the `d` blob, taking the first few cases of each (plaintext, AAD) length group
from the encryption file and from the decryption file, which also holds cases
whose tag must fail. Run from the repository root:
`python tests/vectors/build_nist_gcm.py`.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

OUTPUT = Path(__file__).parent / "aes256gcm_nist.json"
SOURCE_DIR = "ciphers/AES/GCM"
SOURCES = ("gcmEncryptExtIV256.rsp", "gcmDecrypt256.rsp")
CASES_PER_GROUP = 2
# Length groups, in bits, kept from each file: empty, one block and ragged sizes.
PLAINTEXT_BITS = {0, 128, 408}
AAD_BITS = {0, 128, 720}


def parse_rsp(text: str) -> list[dict]:
    """Return every case of a CAVS .rsp file with the [section] values it falls under."""
    cases: list[dict] = []
    section: dict[str, str] = {}
    current: dict[str, str] | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if current is not None:
                cases.append(current)
                current = None
            name, _, value = line.strip("[]").partition("=")
            section[name.strip()] = value.strip()
            continue
        if line == "FAIL":
            if current is not None:
                current["FAIL"] = "1"
            continue
        name, _, value = line.partition("=")
        name = name.strip()
        if name == "Count":
            if current is not None:
                cases.append(current)
            current = dict(section)
        if current is not None:
            current[name] = value.strip()
    if current is not None:
        cases.append(current)
    return cases


def main() -> None:
    package = files("cryptography_vectors")
    selected = []
    for source in SOURCES:
        text = package.joinpath(SOURCE_DIR, source).read_text()
        taken: dict[tuple[str, str], int] = {}
        for case in parse_rsp(text):
            if (case["Keylen"], case["IVlen"], case["Taglen"]) != ("256", "96", "128"):
                continue
            if int(case["PTlen"]) not in PLAINTEXT_BITS or int(case["AADlen"]) not in AAD_BITS:
                continue
            group = (case["PTlen"], case["AADlen"])
            if taken.get(group, 0) >= CASES_PER_GROUP and "FAIL" not in case:
                continue
            if taken.get(group, 0) >= CASES_PER_GROUP + 2:
                continue
            taken[group] = taken.get(group, 0) + 1
            valid = "FAIL" not in case
            selected.append(
                {
                    "source": f"{source} Count {case['Count']} PTlen {case['PTlen']} AADlen {case['AADlen']}",
                    "key": case["Key"],
                    "iv": case["IV"],
                    "aad": case["AAD"],
                    "plaintext": case["PT"] if valid else None,
                    "ciphertext": case["CT"],
                    "tag": case["Tag"],
                    "valid": valid,
                }
            )
    document = {
        "source": "NIST CAVS GCM vectors from the cryptography-vectors package",
        "cases": selected,
    }
    OUTPUT.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
