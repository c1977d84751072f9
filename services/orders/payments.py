"""Stripe, through one ``stripe.StripeClient`` built in the app lifespan.

Only the async methods of the SDK are used (with its httpx-based HTTP client), so
the event loop never blocks on Stripe. Every call that creates something at
Stripe carries an idempotency key derived from our own ids, so a retried request
cannot charge or refund twice on real Stripe (localstripe does not replay keys;
the orders service never relies on that: the order row is committed first and a
lease decides who creates the PaymentIntent).

Design constraints from localstripe (dev and tests): PaymentIntents are created
without confirming, then the payment method is set with an update and the intent
is confirmed (``confirm`` with a ``payment_method`` argument is not implemented
there); a retry after a failed charge creates a new PaymentIntent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

from shared.errors import Conflict, RuleViolation, ServiceUnavailable


@dataclass(frozen=True)
class Intent:
    """What the orders service needs to know about a PaymentIntent."""

    id: str
    status: str
    amount: int
    currency: str
    client_secret: str | None
    metadata: dict[str, str]
    last_payment_error: dict[str, Any] | None = None
    next_action: dict[str, Any] | None = None


class RefundRefused(Exception):
    """Stripe refused a refund for good (not a network fault): it must not be retried."""


class PaymentDeclined(Exception):
    """The card was declined: the order becomes ``payment_failed``."""

    def __init__(self, payment_intent_id: str, card_error: dict[str, Any]) -> None:
        super().__init__(card_error.get("message") or "card declined")
        self.payment_intent_id = payment_intent_id
        self.card_error = card_error


def plain(value: Any) -> Any:
    """Turn StripeObjects (and nested ones) into plain JSON values."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def intent_from(obj: Any) -> Intent:
    data = plain(obj)
    error = data.get("last_payment_error")
    return Intent(
        id=str(data["id"]),
        status=str(data.get("status")),
        amount=int(data.get("amount") or 0),
        currency=str(data.get("currency") or "").upper(),
        client_secret=data.get("client_secret"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        last_payment_error=card_error_of(error) if error else None,
        next_action=data.get("next_action"),
    )


def card_error_of(error: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": error.get("code"),
        "decline_code": error.get("decline_code"),
        "message": error.get("message") or "The card was declined.",
    }


def provider_unavailable(exc: stripe.StripeError, doing: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The payment provider failed while {doing} ({type(exc).__name__}: "
        f"{exc.user_message or 'no details'}); retry in a moment.",
        problem="payment-provider-unavailable",
        title="Payment provider unavailable",
    )


class PaymentGateway:
    """The Stripe calls the orders service makes."""

    def __init__(self, api_key: str, api_base: str, *, timeout: float = 20.0) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=2,
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_intent(
        self, *, order_id: str, attempt: int, amount: int, currency: str, metadata: dict[str, str]
    ) -> Intent:
        try:
            # Card only: server-side confirmation then needs no return_url (and localstripe
            # knows nothing of automatic payment methods).
            params: Any = {
                "amount": amount,
                "currency": currency.lower(),
                "payment_method_types": ["card"],
                "metadata": {"order_id": order_id, "attempt": str(attempt), **metadata},
            }
            pi = await self.client.v1.payment_intents.create_async(
                params, {"idempotency_key": f"{order_id}-pi-{attempt}"}
            )
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "creating the payment") from exc
        return intent_from(pi)

    async def confirm(self, payment_intent_id: str, payment_method: str) -> Intent:
        """Attach ``payment_method`` and confirm server-side; raises PaymentDeclined."""
        intents = self.client.v1.payment_intents
        try:
            await intents.update_async(payment_intent_id, {"payment_method": payment_method})
            pi = await intents.confirm_async(payment_intent_id)
        except stripe.CardError as exc:
            error = plain(exc.json_body.get("error", {})) if isinstance(exc.json_body, dict) else {}
            raise PaymentDeclined(payment_intent_id, card_error_of(error or {
                "code": exc.code, "message": exc.user_message})) from exc
        except stripe.InvalidRequestError as exc:
            status = exc.http_status or 400
            if status == 404 or (exc.param == "payment_method"):
                raise RuleViolation(
                    f"Stripe refused the payment method {payment_method!r}: {exc.user_message}. "
                    "Pass a valid PaymentMethod id such as pm_card_visa (test mode).",
                    rule="payment-method-valid",
                ) from exc
            raise Conflict(
                f"The payment cannot be confirmed now ({exc.user_message}); it may be confirmed "
                "already. GET the order to see its state.",
                problem="payment-not-confirmable",
            ) from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "confirming the payment") from exc
        return intent_from(pi)

    async def retrieve(self, payment_intent_id: str) -> Intent:
        try:
            pi = await self.client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "reading the payment") from exc
        return intent_from(pi)

    async def cancel(self, payment_intent_id: str) -> Intent:
        """Cancel an unpaid intent; if it was paid meanwhile, return it as it is."""
        try:
            pi = await self.client.v1.payment_intents.cancel_async(payment_intent_id)
        except stripe.InvalidRequestError:
            return await self.retrieve(payment_intent_id)
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "cancelling the payment") from exc
        return intent_from(pi)

    async def refund(self, payment_intent_id: str, order_id: str, *, key: str,
                     amount: int | None = None, refund_id: str | None = None) -> str:
        """Refund ``amount`` (all of it when None) with the caller's stored idempotency key;
        raises :class:`RefundRefused` when Stripe says no for good."""
        params: Any = {"payment_intent": payment_intent_id,
                       "metadata": {"order_id": order_id, **({"refund_id": refund_id} if refund_id else {})}}
        if amount is not None:
            params["amount"] = amount
        try:
            refund = await self.client.v1.refunds.create_async(params, {"idempotency_key": key})
        except stripe.InvalidRequestError as exc:
            raise RefundRefused(exc.user_message or str(exc)) from exc
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "refunding the payment") from exc
        return str(refund.id)

    async def find_refund(self, payment_intent_id: str, refund_id: str) -> str | None:
        """The Stripe refund made for our ``refund_id``, if any (found by its metadata).

        Asked before repeating a refund whose answer was lost: real Stripe replays an
        idempotency key for 24 hours, localstripe does not, and this works on both."""
        try:
            listed = await self.client.v1.refunds.list_async(
                {"payment_intent": payment_intent_id, "limit": 100})
        except stripe.StripeError as exc:
            raise provider_unavailable(exc, "reading the refunds") from exc
        for refund in listed.data:
            if (plain(refund).get("metadata") or {}).get("refund_id") == refund_id:
                return str(refund.id)
        return None
