"""A unit of work per use case: one connection, the repositories over it, and one transaction.

In the manner of cosmicpython's ``AbstractUnitOfWork``: a use case opens one, works through its
repositories, and calls ``commit()``; leaving the block without committing (an error, an early return)
rolls everything back. The read phase of a use case that decides before it writes uses a ``Reader``
instead: the same repositories on a connection that never writes.

    async with p.unit_of_work() as uow:
        await uow.fx.add_rates([...])
        await uow.commit()

Services orchestrate; the SQL is in the repositories (``store/fx.py``, ``store/stores.py``, the ledger in
``store/ledger.py`` and the outbox in ``store/outbox.py``). On SQLite the transaction starts with
``BEGIN IMMEDIATE`` (store/engine.py), so a unit of work holds the one write lock from its start; a
``Reader``'s transaction begins deferred and takes no lock (WAL mode lets it read while another process
writes).
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from tillpay.store.attempts import AttemptsRepository
from tillpay.store.audit import AuditReads
from tillpay.store.codes import CodesRepository
from tillpay.store.console import ConsoleReads
from tillpay.store.console_users import ConsoleUsersRepository
from tillpay.store.driver import Driver
from tillpay.store.engine import READ_ONLY
from tillpay.store.fx import FxRepository
from tillpay.store.ledger import LedgerRepository
from tillpay.store.merchants import MerchantsRepository
from tillpay.store.metrics import MetricsReads
from tillpay.store.outbox import OutboxRepository
from tillpay.store.payments import PaymentsRepository
from tillpay.store.risk import RiskRepository
from tillpay.store.sandbox_actions import SandboxActionsRepository
from tillpay.store.secmerchants import SecondaryRepository
from tillpay.store.settlement import SettlementRepository
from tillpay.store.simulation import SimulationRepository
from tillpay.store.stores import StoresRepository
from tillpay.store.wallets import WalletsRepository


class _Repositories:
    """The repositories over one connection (made when first used)."""

    _conn: AsyncConnection | None = None

    @property
    def conn(self) -> AsyncConnection:
        """The connection, for the code that still passes one down (the pay path's statements)."""
        if self._conn is None:
            raise RuntimeError("use the unit of work inside its `async with` block")
        return self._conn

    async def driver(self) -> Driver:
        """The connection's own driver, for the pay path's prepared statements (store/paypath.py)."""
        return await Driver.of(self.conn)

    @property
    def attempts(self) -> AttemptsRepository:
        """Sign-in attempts of the wallet app and the console."""
        return AttemptsRepository(self.conn)

    @property
    def audit(self) -> AuditReads:
        """The invariants ``tillpay audit`` checks."""
        return AuditReads(self.conn)

    @property
    def codes(self) -> CodesRepository:
        """Payment codes' single uses and the wrong codes counted against merchants."""
        return CodesRepository(self.conn)

    @property
    def console(self) -> ConsoleReads:
        """The merchant console's reads across payments, refunds, notifications and settlement."""
        return ConsoleReads(self.conn)

    @property
    def console_users(self) -> ConsoleUsersRepository:
        """Merchant console users and their sessions."""
        return ConsoleUsersRepository(self.conn)

    @property
    def fx(self) -> FxRepository:
        """Rates and margins."""
        return FxRepository(self.conn)

    @property
    def ledger(self) -> LedgerRepository:
        """The ledger writer: balanced journal entries and the wallets' stored balances."""
        return LedgerRepository(self.conn)

    @property
    def merchants(self) -> MerchantsRepository:
        """Merchants, their key versions, test merchants and per-minute allowances."""
        return MerchantsRepository(self.conn)

    @property
    def metrics(self) -> MetricsReads:
        """The bounded counts a metrics scrape reads."""
        return MetricsReads(self.conn)

    @property
    def outbox(self) -> OutboxRepository:
        """Notifications to merchants, written in the change's transaction."""
        return OutboxRepository(self.conn)

    @property
    def payments(self) -> PaymentsRepository:
        """Payments and refunds: their reads, state changes and the rows a use case inserts."""
        return PaymentsRepository(self.conn)

    @property
    def risk(self) -> RiskRepository:
        """Rule layers and stored decisions."""
        return RiskRepository(self.conn)

    @property
    def sandbox_actions(self) -> SandboxActionsRepository:
        """What the sandbox does later about magic payments (answers, failed deliveries)."""
        return SandboxActionsRepository(self.conn)

    @property
    def secondary(self) -> SecondaryRepository:
        """An acquirer's secondary merchants and their stores."""
        return SecondaryRepository(self.conn)

    @property
    def settlement(self) -> SettlementRepository:
        """Settlement runs, batches, items and files, and what closing a day reads."""
        return SettlementRepository(self.conn)

    @property
    def simulation(self) -> SimulationRepository:
        """Simulated days written in batches (``tillpay simulate --bulk``)."""
        return SimulationRepository(self.conn)

    @property
    def stores(self) -> StoresRepository:
        """A merchant's stores, terminals and their heartbeats."""
        return StoresRepository(self.conn)

    @property
    def wallets(self) -> WalletsRepository:
        """Wallet users, their devices, browsers and sessions."""
        return WalletsRepository(self.conn)


class UnitOfWork(_Repositories):
    """One use case's write transaction: rolled back unless ``commit()`` was called."""

    def __init__(self, engine: AsyncEngine | None, *, conn: AsyncConnection | None = None) -> None:
        self._engine = engine
        self._borrowed = conn
        self._tx: AsyncTransaction | None = None
        self.committed = False

    @classmethod
    def on(cls, conn: AsyncConnection) -> UnitOfWork:
        """A unit of work on a connection its caller holds and closes (the pay path's; on SQLite the
        process's one connection, so a second one would wait for it forever): what the caller read is
        rolled back first, and the block's end leaves the connection open."""
        return cls(None, conn=conn)

    async def __aenter__(self) -> Self:
        if self._borrowed is not None:
            if self._borrowed.in_transaction():
                await self._borrowed.rollback()  # end the caller's read transaction
            sync = self._borrowed.sync_connection
            if sync is not None and sync.get_execution_options().get(READ_ONLY):
                sync.execution_options(**{READ_ONLY: False})  # a write begins with the write lock
            self._conn = self._borrowed
            self._tx = await self._conn.begin()
            return self
        assert self._engine is not None
        self._conn = await self._engine.connect()
        try:
            self._tx = await self._conn.begin()
        except BaseException:
            await self._conn.close()
            raise
        return self

    async def commit(self) -> None:
        """Make the work durable; the block's end then only closes the connection."""
        if self._tx is None:
            raise RuntimeError("commit() outside the unit of work's block")
        await self._tx.commit()
        self.committed = True

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        try:
            if tx is not None and tx.is_active:
                await tx.rollback()
        finally:
            if conn is not None and self._borrowed is None:
                await conn.close()


class Reader(_Repositories):
    """The read phase of a use case: the repositories on a connection that is never committed."""

    def __init__(self, engine: AsyncEngine, *, snapshot: bool = False) -> None:
        self._engine = engine
        self._snapshot = snapshot

    async def __aenter__(self) -> Self:
        conn = await self._engine.connect()
        if conn.dialect.name == "sqlite" and conn.sync_connection is not None:
            # Its transaction begins deferred (store/engine.py): no write lock, no writer's turn. In WAL
            # mode it reads one snapshot while other processes write; ``then_write`` takes the lock.
            # In place, without I/O (SQLAlchemy only records the option on the connection).
            conn.sync_connection.execution_options(**{READ_ONLY: True})
        if self._snapshot and conn.dialect.name == "postgresql":
            # Every statement of the read sees the same moment. PostgreSQL's default (READ COMMITTED)
            # takes a snapshot per statement, so counts read one after another could straddle a commit;
            # SQLite's transaction is one snapshot already. The pool puts the level back on return.
            await conn.execution_options(isolation_level="REPEATABLE READ")
        self._conn = conn
        return self

    def then_write(self) -> UnitOfWork:
        """The write phase on the read's own connection (``UnitOfWork.on``): the read's transaction is
        rolled back first; on SQLite, where a process has one connection, this is the only way to write
        after reading."""
        return UnitOfWork.on(self.conn)

    async def end_read(self) -> None:
        """End the read's transaction, if a statement began one, before a write on the same connection
        (the connection stays open)."""
        if self.conn.in_transaction():
            await self.conn.rollback()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


#: What a step shared by several use cases takes: the repositories of its caller's unit of work or reader
#: (it runs inside the caller's transaction, never one of its own).
Repositories = _Repositories
