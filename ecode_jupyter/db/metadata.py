"""Every table of the suite in one MetaData, for Alembic and for tests."""

from __future__ import annotations

from ..billing import models as _billing_models  # noqa: F401  (registers the billing tables)
from ..deploy import models as _deploy_models  # noqa: F401  (registers the deploy tables)
from .models import Base

metadata = Base.metadata

__all__ = ["metadata"]
