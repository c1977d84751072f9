import argparse
import asyncio
import sys
from pathlib import Path

from services.dataservice.aliases import BindingRefused, bind
from services.dataservice.config import load_products
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


#: Where `make run` keeps the aliases when the setting is empty (see var/dev.env).
LOCAL_ALIASES_FILE = "var/dataservice-aliases.yaml"


def bind_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog_product_id", help="the product's id in the catalog (prd_...)")
    parser.add_argument("mapped_id", help="a product of this data service's mapping (e.g. prd_demo_transit)")
    parser.add_argument("--aliases-file", help="default: SLUICE_DATASERVICE_PRODUCT_ALIASES_FILE, "
                        f"else {LOCAL_ALIASES_FILE} (make run's)")


def bind_command(args: argparse.Namespace, settings: ServiceSettings) -> int:
    """Bind a catalog product id to a mapped product in the aliases file, keeping the others;
    the running data service picks it up within seconds, without a restart."""
    assert isinstance(settings, DataServiceSettings)
    path = Path(args.aliases_file or settings.product_aliases_file or LOCAL_ALIASES_FILE)
    known = set(load_products(settings.products_file, settings.product_renames()))
    try:
        aliases = bind(path, args.catalog_product_id, args.mapped_id, known)
    except BindingRefused as exc:
        print(f"dataservice bind: {exc}", file=sys.stderr)
        return 2
    print(f"bound {args.catalog_product_id} → {args.mapped_id} in {path} ({len(aliases)} binding(s))")
    return 0


sys.exit(run_cli("dataservice", DataServiceSettings, Path(__file__).parent / "migrations",
                 extra=[("seed-demo", "generate the demo data set in data_url", seed_demo_command),
                        ("bind", "bind a catalog product id to a mapped product (aliases file)",
                         bind_command, bind_arguments)]))
