"""The ``sluice`` command groups, one module per service (see :mod:`sluice.cli.core`)."""
