"""The admins' dashboard figures: the queries behind each page, and the snapshot that keeps the pages cheap.

Counting over every learner and message takes longer than a page may (the budget is 200 ms at 100,000 learners and
10 million messages on PostgreSQL), so the heavy figures of each page are computed by a scheduler job every 5
minutes into `dashboard_figures` (one row a page, its figures as JSON) and a page reads one row. Every query here
aggregates in the database (COUNT, SUM, GROUP BY, LIMIT); none reads all rows into Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class DashboardFigures(Base):
    """The figures of one dashboard page as last computed."""

    __tablename__ = "dashboard_figures"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    figures: Mapped[dict[str, Any]] = mapped_column()
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # how long computing them took


QUOTING = ("knowledge",)  # pages whose figures quote what learners typed


async def forget_quoted_figures(session: AsyncSession) -> None:
    """Drop the figures that quote learners (a person is being erased): the page counts them again when next read."""
    await session.execute(delete(DashboardFigures).where(DashboardFigures.name.in_(QUOTING)))
