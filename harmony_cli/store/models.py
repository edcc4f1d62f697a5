"""Tables of the study store (SQLAlchemy 2 declarative models).

Table names carry a ``harmony_`` prefix so they are recognisable beside other
applications' tables. The store is still only created in an empty database: a
database holding other tables is refused (see db.py), never written into.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..cells import CELL_FIELDS
from ..designs import UNDECIDED

# The store's schema version, recorded in harmony_meta; a database of another version is refused
# (versions 1 to 4, without account sessions/login guards, assignments, page sessions or sequential cells, are
# upgraded in place: see db.py).
SCHEMA_VERSION = 5
APP_NAME = "harmony"
# An assignment's cell field that holds this matches every value (a whole-study assignment has all four).
ANY = ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the database itself: ``app`` and ``schema_version``."""

    __tablename__ = "harmony_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Study(Base):
    __tablename__ = "harmony_study"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    config: Mapped[dict] = mapped_column(JSON, default=dict)  # what it was built with
    image_dir: Mapped[Optional[str]] = mapped_column(Text)      # every image path is relative to it
    source: Mapped[str] = mapped_column(String(32), default="harmony")  # harmony | legacy
    examples: Mapped[list["Example"]] = relationship(back_populates="study")


class Example(Base):
    """One image with its pair of maps, in one cell (dataset, metric, backbone, attribution)."""

    __tablename__ = "harmony_example"
    __table_args__ = (
        UniqueConstraint("study_id", *CELL_FIELDS, "source_key",
                         name="uq_example_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("harmony_study.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    backbone: Mapped[str] = mapped_column(String(100))
    attribution: Mapped[str] = mapped_column(String(100))
    source_key: Mapped[str] = mapped_column(String(200))   # identifies the image within its cell
    position: Mapped[int] = mapped_column(Integer, default=0)  # order within the cell
    class_name: Mapped[str] = mapped_column(String(200))
    image_path: Mapped[Optional[str]] = mapped_column(Text)
    original_map_path: Mapped[Optional[str]] = mapped_column(Text)
    finetuned_map_path: Mapped[Optional[str]] = mapped_column(Text)
    original_heatmap_path: Mapped[Optional[str]] = mapped_column(Text)
    finetuned_heatmap_path: Mapped[Optional[str]] = mapped_column(Text)
    original_score: Mapped[Optional[float]] = mapped_column(Float)
    finetuned_score: Mapped[Optional[float]] = mapped_column(Float)
    run: Mapped[Optional[str]] = mapped_column(Text)  # the finetune run it came from
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    study: Mapped[Study] = relationship(back_populates="examples")


class Annotator(Base):
    __tablename__ = "harmony_annotator"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(256))  # None: cannot log in
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)  # made by simulate-annotators
    # Bumped by deactivation and password changes: a page session of an older version has ended.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """A study, or one of its cells, open to an annotator on the page.

    A cell field holding ``ANY`` ("") matches every value: all four ``ANY`` is the whole study,
    and a cell given without its dataset matches that cell in every dataset. (Empty strings,
    not NULLs, so that the unique constraint holds on every database.)
    """

    __tablename__ = "harmony_assignment"
    __table_args__ = (
        UniqueConstraint("annotator_id", "study_id", *CELL_FIELDS, name="uq_assignment"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("harmony_annotator.id", ondelete="CASCADE"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("harmony_study.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100), default=ANY)
    metric: Mapped[str] = mapped_column(String(100), default=ANY)
    backbone: Mapped[str] = mapped_column(String(100), default=ANY)
    attribution: Mapped[str] = mapped_column(String(100), default=ANY)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoginGuard(Base):
    """Login attempts per entered name (whether or not an account has it) and client address, shared by
    every page server. ``client`` is "" where the page cannot tell the address (see accounts.py)."""

    __tablename__ = "harmony_login_guard"
    name: Mapped[str] = mapped_column(String(150), primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed (or in flight) since the last success
    last_attempt_at: Mapped[Optional[float]] = mapped_column(Float, index=True)  # seconds since the epoch
    locked: Mapped[bool] = mapped_column(Boolean, default=False)  # until an admin unlocks it, or it is forgotten


class PageSession(Base):
    """A login on the annotation page: the URL's random token, of which only the SHA-256 is kept, so
    that reading the store does not give a usable token. Logging out deletes the row (see sessions.py)."""

    __tablename__ = "harmony_page_session"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("harmony_annotator.id", ondelete="CASCADE"), index=True)
    session_version: Mapped[int] = mapped_column(Integer)  # the account's version at login
    issued_at: Mapped[float] = mapped_column(Float, index=True)  # the server's clock: the lifetime counts from it


class Label(Base):
    """An annotator's current answer for an example: at most one per pair."""

    __tablename__ = "harmony_label"
    __table_args__ = (
        UniqueConstraint("annotator_id", "example_id", name="uq_label_annotator_example"),
        CheckConstraint("choice IN ('original', 'finetuned', 'neither')", name="ck_label_choice"),
        CheckConstraint("left_map IS NULL OR left_map IN ('original', 'finetuned')", name="ck_label_left"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("harmony_annotator.id", ondelete="CASCADE"), index=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("harmony_example.id", ondelete="CASCADE"), index=True)
    choice: Mapped[str] = mapped_column(String(16))
    left_map: Mapped[Optional[str]] = mapped_column(String(16))  # which map was shown on the left
    response_ms: Mapped[Optional[int]] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelAudit(Base):
    """Every change of every label, appended in the same transaction as the change."""

    __tablename__ = "harmony_label_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(Integer, index=True)
    example_id: Mapped[int] = mapped_column(Integer, index=True)
    choice: Mapped[str] = mapped_column(String(16))
    previous_choice: Mapped[Optional[str]] = mapped_column(String(16))
    left_map: Mapped[Optional[str]] = mapped_column(String(16))
    response_ms: Mapped[Optional[int]] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(32), default="page")  # page | import | simulation | cli
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SequentialCell(Base):
    """A cell of a sequential study (``study.design: sequential``): its last look and, once a look decides
    it, the verdict and the real labels it was made on. A decided cell takes no more labels (see
    sequential_store.py). One row per cell, made at its first look; the guarded update of ``look`` is
    what lets exactly one writer record each look."""

    __tablename__ = "harmony_sequential_cell"
    __table_args__ = (UniqueConstraint("study_id", *CELL_FIELDS, name="uq_sequential_cell"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("harmony_study.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    backbone: Mapped[str] = mapped_column(String(100))
    attribution: Mapped[str] = mapped_column(String(100))
    look: Mapped[int] = mapped_column(Integer, default=0)  # the last look done (1-based; 0: none yet)
    verdict: Mapped[str] = mapped_column(String(32), default=UNDECIDED)
    labels: Mapped[Optional[int]] = mapped_column(Integer)  # real labels the deciding look used
    decided_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
