import sys
from pathlib import Path

from services.access.settings import AccessSettings
from shared.cli import run_cli

sys.exit(run_cli("access", AccessSettings, Path(__file__).parent / "migrations"))
