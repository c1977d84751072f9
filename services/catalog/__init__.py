"""Catalog service: graded, rights-declared data products, plans and policies."""
