"""HTTP routers of the dataservice."""
