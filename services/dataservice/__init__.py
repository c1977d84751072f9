"""Dataservice: the provider-side, query-only data service."""
