import sys
from pathlib import Path

from services.catalog.settings import CatalogSettings
from shared.cli import run_cli

sys.exit(run_cli("catalog", CatalogSettings, Path(__file__).parent / "migrations"))
