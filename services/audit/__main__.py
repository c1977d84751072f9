"""``python -m services.audit serve|migrate|downgrade|keygen``."""

import argparse
import sys
from pathlib import Path

from services.audit.settings import AuditSettings
from services.audit.verifylib import NoteSigner
from shared.cli import run_cli
from shared.settings import ServiceSettings


def keygen(_args: argparse.Namespace, settings: ServiceSettings) -> int:
    """Print a new checkpoint signing key (stdout) and its verifier key (stderr)."""
    assert isinstance(settings, AuditSettings)
    signer = NoteSigner.generate(settings.log_origin)
    print(signer.skey)
    print(
        f"# set SLUICE_AUDIT_CHECKPOINT_KEY to the line above; publish the verifier key:\n"
        f"# {signer.verifier().vkey}",
        file=sys.stderr,
    )
    return 0


sys.exit(
    run_cli(
        "audit",
        AuditSettings,
        Path(__file__).parent / "migrations",
        extra=[("keygen", "print a new Ed25519 checkpoint signing key (note format)", keygen)],
    )
)
