"""Access service: identity (organisations, API clients), OAuth 2.0 tokens, JWKS."""
