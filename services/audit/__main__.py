import sys
from pathlib import Path

from services.audit.settings import AuditSettings
from shared.cli import run_cli

sys.exit(run_cli("audit", AuditSettings, Path(__file__).parent / "migrations"))
