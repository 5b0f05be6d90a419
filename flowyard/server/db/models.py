"""SQLAlchemy models of Flowyard's own tables. MLflow's tables belong to MLflow."""

from __future__ import annotations

from sqlalchemy import MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Every table is prefixed so it never meets one of MLflow's, and constraint names are fixed so
# Alembic migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Setting(Base):
    """Workspace-wide settings, such as its name, shared by every server replica."""

    __tablename__ = "flowyard_settings"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
