import argparse
import asyncio
import sys
from pathlib import Path

from services.dataservice.datasource import data_engine
from services.dataservice.demo_data import seed_demo
from services.dataservice.settings import DataServiceSettings
from shared.cli import run_cli
from shared.settings import ServiceSettings


def seed_demo_command(_args: argparse.Namespace, settings: ServiceSettings) -> int:
    """(Re)generate the demo tables in data_url, deterministically."""
    assert isinstance(settings, DataServiceSettings)

    async def go() -> int:
        engine = data_engine(settings.data_url)
        try:
            return await seed_demo(engine, people=settings.demo_people)
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    print(f"dataservice: demo data written to {settings.data_url} ({rows} health-service visits)",
          file=sys.stderr)
    return 0


sys.exit(run_cli("dataservice", DataServiceSettings, Path(__file__).parent / "migrations",
                 extra=[("seed-demo", "generate the demo data set in data_url", seed_demo_command)]))
