"""The demo data set and mapping shipped with the reference data service."""
