import sys
from pathlib import Path

from services.orders.settings import OrdersSettings
from shared.cli import run_cli

sys.exit(run_cli("orders", OrdersSettings, Path(__file__).parent / "migrations"))
