"""Orders service: quotes, orders, Stripe payments, ledger."""
