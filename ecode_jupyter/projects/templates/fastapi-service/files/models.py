"""What clients send (ItemCreate, ItemUpdate) and what they get back (Item)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ItemCreate(BaseModel):
    # Unknown fields are an error rather than silently dropped, so typos surface at once.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, examples=["Notebook"])
    description: str | None = Field(default=None, max_length=1000)
    price: float = Field(ge=0, examples=[3.5])
    quantity: int = Field(default=0, ge=0)


class ItemUpdate(BaseModel):
    """A partial update: only the fields that are sent change."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    price: float | None = Field(default=None, ge=0)
    quantity: int | None = Field(default=None, ge=0)

    @field_validator("name", "price", "quantity", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        # None is only the "not sent" default; an explicit null would blank a required field.
        if value is None:
            msg = "may be left out but not set to null"
            raise ValueError(msg)
        return value


class Item(ItemCreate):
    id: int
