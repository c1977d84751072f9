import sys
from pathlib import Path

from services.dataservice.settings import DataServiceSettings
from shared.cli import run_cli

sys.exit(run_cli("dataservice", DataServiceSettings, Path(__file__).parent / "migrations"))
