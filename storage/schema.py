"""Every table of the project, for migrations and for tests: import this, not the model modules one by one."""

from __future__ import annotations

from storage import (
    admins,  # noqa: F401
    courses,  # noqa: F401
    dashboard,  # noqa: F401
    knowledge,  # noqa: F401
    learners,  # noqa: F401
    models,  # noqa: F401
    payments,  # noqa: F401
    scheduling,  # noqa: F401
    slack,  # noqa: F401
    teams,  # noqa: F401
)
from storage.models import Base

metadata = Base.metadata
