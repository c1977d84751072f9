"""The SDK's calls, one module per service; :class:`sluice.client.SluiceClient` combines them."""
