"""Sluice's own common library: what two or more services really share."""
