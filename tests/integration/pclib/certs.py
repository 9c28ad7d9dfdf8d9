"""Test certificates: a CA, the edge's and the origin's, and another CA (scripts/gen-certs)."""

import os
import subprocess

from .env import GEN_CERTS


def gen_certs(directory):
    subprocess.run([GEN_CERTS, directory], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {name: os.path.join(directory, f"{name}.pem") for name in ("ca", "edge", "origin", "other-ca")} | {
        f"{name}_key": os.path.join(directory, f"{name}.key") for name in ("ca", "edge", "origin")
    }
