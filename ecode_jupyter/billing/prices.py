"""Model prices in micro-credits per million tokens, and what a model call costs.

One credit is 1,000,000 micro-credits. The shipped defaults are the providers' public list
prices with one credit standing for one US dollar, so a deployment that grants credits in
dollars bills at cost. They are defaults only: admins override or add models with
``c.EcodeApp.model_prices`` and mark local models free with ``c.EcodeApp.free_models``.

Every amount is an integer. A call's cost is the exact sum over the four token kinds, rounded
up once to a whole micro-credit, so many cheap calls are never rounded down to nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from ..exceptions import InvalidInput

log = logging.getLogger(__name__)

MICROS_PER_CREDIT = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000

#: models that never cost anything, whatever the configuration says
ALWAYS_FREE = frozenset({"offline"})


class UsageLike(Protocol):
    """Token counts of one model call (``ecode_jupyter.agent.providers.base.Usage``)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...


@dataclass(frozen=True)
class ModelPrice:
    """Micro-credits per million tokens of each kind."""

    input: int
    output: int
    cache_write: int
    cache_read: int

    def cost(self, usage: UsageLike) -> int:
        """What ``usage`` costs, rounded up to a whole micro-credit."""
        total = (
            max(0, usage.input_tokens) * self.input
            + max(0, usage.output_tokens) * self.output
            + max(0, usage.cache_write_tokens) * self.cache_write
            + max(0, usage.cache_read_tokens) * self.cache_read
        )
        return -(-total // TOKENS_PER_PRICE_UNIT)

    def estimate(self, input_tokens: int, max_output_tokens: int) -> int:
        """The most a call can cost if its input is ``input_tokens`` long.

        Each input token is priced at the dearest way it may be billed (a cache write costs
        more than plain input on Anthropic), and the output at its full ``max_tokens``.
        """
        per_input = max(self.input, self.cache_write, self.cache_read)
        total = max(0, input_tokens) * per_input + max(0, max_output_tokens) * self.output
        return -(-total // TOKENS_PER_PRICE_UNIT)

    def to_json(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_write": self.cache_write,
            "cache_read": self.cache_read,
        }


FREE = ModelPrice(0, 0, 0, 0)


def _usd(input: str, output: str, cache_write: str, cache_read: str) -> ModelPrice:
    """A price from US dollars per million tokens (one credit = one dollar)."""
    return ModelPrice(
        *(int(Decimal(v) * MICROS_PER_CREDIT) for v in (input, output, cache_write, cache_read))
    )


# List prices per million tokens. Anthropic: cache writes are the 5-minute cache (1.25x
# input), reads 0.1x. OpenAI: no surcharge for writing the cache, so a write is plain input.
# The two provider defaults without a published price here (claude-sonnet-4-6, gpt-5.4) are
# priced like their family; check them against your contract and override.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-1": _usd("15", "75", "18.75", "1.50"),
    "claude-opus-4-0": _usd("15", "75", "18.75", "1.50"),
    "claude-opus-4-5": _usd("5", "25", "6.25", "0.50"),
    "claude-sonnet-4-0": _usd("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-5": _usd("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-6": _usd("3", "15", "3.75", "0.30"),
    "claude-3-7-sonnet": _usd("3", "15", "3.75", "0.30"),
    "claude-haiku-4-5": _usd("1", "5", "1.25", "0.10"),
    "claude-3-5-haiku": _usd("0.80", "4", "1", "0.08"),
    "gpt-5": _usd("1.25", "10", "1.25", "0.125"),
    "gpt-5.4": _usd("2.50", "15", "2.50", "0.25"),
    "gpt-5-mini": _usd("0.25", "2", "0.25", "0.025"),
    "gpt-5-nano": _usd("0.05", "0.40", "0.05", "0.005"),
    "gpt-4.1": _usd("2", "8", "2", "0.50"),
    "gpt-4.1-mini": _usd("0.40", "1.60", "0.40", "0.10"),
    "gpt-4.1-nano": _usd("0.10", "0.40", "0.10", "0.025"),
    "gpt-4o": _usd("2.50", "10", "2.50", "1.25"),
    "gpt-4o-mini": _usd("0.15", "0.60", "0.15", "0.075"),
    "o3": _usd("2", "8", "2", "0.50"),
    "o4-mini": _usd("1.10", "4.40", "1.10", "0.275"),
}

# Dated snapshots ("claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06") and "-latest" aliases
# cost what their family name costs.
_SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
_PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


MAX_MICROS = 2**63 - 1


def credits_to_micros(value: Any, *, field: str = "amount") -> int:
    """Credits (a number or decimal string) as whole micro-credits."""
    if isinstance(value, bool):
        msg = f"{field} must be a number of credits"
        raise InvalidInput(msg, field=field)
    try:
        micros = (Decimal(str(value)) * MICROS_PER_CREDIT).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    except (InvalidOperation, ValueError):
        msg = f"{field} must be a number of credits"
        raise InvalidInput(msg, field=field) from None
    if not micros.is_finite():
        msg = f"{field} must be a finite number of credits"
        raise InvalidInput(msg, field=field)
    # Ledger columns are 64-bit: a bigger amount overflowed the database (a 500).
    if abs(micros) > MAX_MICROS:
        msg = f"{field} is out of range (at most {MAX_MICROS // MICROS_PER_CREDIT} credits)"
        raise InvalidInput(msg, field=field)
    return int(micros)


def format_credits(micros: int) -> str:
    """Micro-credits as a credit amount with six decimals, the way REST and the CLI show it."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_CREDIT)
    return f"{sign}{whole}.{frac:06d}"


def money(**amounts: int | None) -> dict[str, Any]:
    """``{"x_micros": 1500000, "x": "1.500000"}`` for each amount (None stays None)."""
    out: dict[str, Any] = {}
    for name, micros in amounts.items():
        out[f"{name}_micros"] = micros
        out[name] = format_credits(micros) if micros is not None else None
    return out


def _parse_price(model: str, raw: Any, base: ModelPrice | None) -> ModelPrice:
    if not isinstance(raw, Mapping):
        msg = f"model_prices[{model!r}] must be a dict of {', '.join(_PRICE_FIELDS)}"
        raise InvalidInput(msg)
    unknown = set(raw) - set(_PRICE_FIELDS)
    if unknown:
        msg = f"model_prices[{model!r}] has unknown fields: {', '.join(sorted(unknown))}"
        raise InvalidInput(msg)
    values: dict[str, int] = {}
    for name in _PRICE_FIELDS:
        if name not in raw:
            continue
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = (
                f"model_prices[{model!r}][{name!r}] must be a whole number of micro-credits "
                "per million tokens, 0 or more"
            )
            raise InvalidInput(msg)
        values[name] = value
    if base is None:
        if "input" not in values or "output" not in values:
            msg = f"model_prices[{model!r}] needs at least input and output prices"
            raise InvalidInput(msg)
        # Without cache prices, cached tokens cost what plain input costs.
        values.setdefault("cache_write", values["input"])
        values.setdefault("cache_read", values["input"])
        return ModelPrice(**values)
    merged = base.to_json()
    merged.update(values)
    return ModelPrice(**merged)


class PriceTable:
    """The effective prices: shipped defaults, then configured overrides, then free models."""

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        free_models: Iterable[str] = (),
        *,
        defaults: Mapping[str, ModelPrice] = DEFAULT_PRICES,
    ) -> None:
        prices = dict(defaults)
        for model, raw in (overrides or {}).items():
            prices[str(model)] = _parse_price(str(model), raw, prices.get(str(model)))
        self.prices = prices
        self.free_models = frozenset(free_models) | ALWAYS_FREE

    def _lookup(self, model: str) -> ModelPrice | None:
        if model in self.free_models:
            return FREE
        price = self.prices.get(model)
        if price is None:
            family = _SNAPSHOT_SUFFIX.sub("", model)
            if family in self.free_models:
                return FREE
            price = self.prices.get(family)
        return price

    def is_known(self, model: str) -> bool:
        return self._lookup(model) is not None

    def price(self, model: str) -> ModelPrice:
        """The price of ``model``; a model with no price that is not free is refused."""
        price = self._lookup(model)
        if price is None:
            msg = (
                f"model {model!r} has no price: an admin must add it to "
                "c.EcodeApp.model_prices, or list it in c.EcodeApp.free_models if it is local"
            )
            raise InvalidInput(msg, model=model)
        return price

    def to_json(self) -> dict[str, Any]:
        models = [{"model": name, "free": False, **p.to_json()} for name, p in self.prices.items()]
        models += [
            {"model": name, "free": True, **FREE.to_json()}
            for name in self.free_models
            if name not in self.prices
        ]
        for row in models:
            if row["model"] in self.free_models:
                row.update(free=True, **FREE.to_json())
        return {
            "unit": "micro-credits per million tokens",
            "micros_per_credit": MICROS_PER_CREDIT,
            "models": sorted(models, key=lambda row: str(row["model"])),
            "free_models": sorted(self.free_models),
        }


SECONDS_PER_HOUR = 3600
# What a GPU-hour costs when c.EcodeApp.gpu_prices names neither the device nor "default".
DEFAULT_GPU_CREDITS_PER_HOUR = 2


class GpuPrices:
    """Micro-credits per GPU-hour, by device model (``c.EcodeApp.gpu_prices``).

    Keys are model names as ``nvidia-smi -L`` prints them ("NVIDIA H200", a MIG instance as
    "NVIDIA A100-SXM4-40GB MIG 3g.20gb") or ``"default"``; values are credits per hour. A
    device is priced by its own name, else its GPU's model, else the default.
    """

    def __init__(self, credits_per_hour: Mapping[str, Any] | None = None) -> None:
        per_hour = {"default": credits_to_micros(DEFAULT_GPU_CREDITS_PER_HOUR)}
        for name, value in (credits_per_hour or {}).items():
            micros = credits_to_micros(value, field=f"gpu_prices[{name!r}]")
            if micros < 0:
                msg = f"gpu_prices[{name!r}] cannot be negative"
                raise InvalidInput(msg)
            per_hour[str(name)] = micros
        self.per_hour = per_hour

    def per_hour_micros(self, keys: Iterable[str]) -> int:
        """The price of the first of ``keys`` that has one (the last is "default")."""
        for key in keys:
            if key in self.per_hour:
                return self.per_hour[key]
        return self.per_hour["default"]

    @staticmethod
    def cost(per_hour_micros: int, milliseconds: int) -> int:
        """What ``milliseconds`` of a device cost, rounded up to a whole micro-credit (integer
        arithmetic: many short slices are never rounded down to nothing)."""
        total = max(0, milliseconds) * per_hour_micros
        return -(-total // (SECONDS_PER_HOUR * 1000))

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": "micro-credits per GPU-hour",
            "gpus": [
                {"model": name, **money(per_hour=micros)}
                for name, micros in sorted(self.per_hour.items())
            ],
        }
