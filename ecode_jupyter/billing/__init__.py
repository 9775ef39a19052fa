"""Credit billing of model usage: prices, an append-only ledger, reservations and budgets."""

from .ledger import Reservation
from .manager import BillingManager, make_billing_manager
from .prices import (
    DEFAULT_PRICES,
    MICROS_PER_CREDIT,
    GpuPrices,
    ModelPrice,
    PriceTable,
    credits_to_micros,
    format_credits,
)

__all__ = [
    "DEFAULT_PRICES",
    "MICROS_PER_CREDIT",
    "BillingManager",
    "GpuPrices",
    "ModelPrice",
    "PriceTable",
    "Reservation",
    "credits_to_micros",
    "format_credits",
    "make_billing_manager",
]
