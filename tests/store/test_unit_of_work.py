"""The unit of work: work is kept only when committed, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tillpay.services.platform import Platform

pytestmark = pytest.mark.anyio


async def rates(p: Platform) -> list[tuple[str, str, Decimal]]:
    async with p.reader() as r:
        return [(x.base, x.quote, Decimal(x.rate)) for x in await r.fx.rates_until(p.now())]


async def test_work_is_kept_only_when_committed(platform: Platform) -> None:
    async with platform.unit_of_work() as uow:
        await uow.fx.add_rates([("USD", "CNY", Decimal("7.1"), platform.now())], platform.now())
    assert await rates(platform) == []  # left without commit(): rolled back

    async with platform.unit_of_work() as uow:
        await uow.fx.add_rates([("USD", "CNY", Decimal("7.2"), platform.now())], platform.now())
        await uow.commit()
    assert await rates(platform) == [("USD", "CNY", Decimal("7.2"))]


async def test_an_error_inside_rolls_everything_back(platform: Platform) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        async with platform.unit_of_work() as uow:
            await uow.fx.add_rates([("EUR", "CNY", Decimal("7.8"), platform.now())], platform.now())
            await uow.fx.add_margin("EUR", "CNY", 50, platform.now(), platform.now())
            raise RuntimeError("half way")
    assert await rates(platform) == []
    async with platform.reader() as r:
        assert await r.fx.margin_in_force("CNY", "EUR", platform.now()) is None
    # The connection went back to the pool: the next unit of work on SQLite's single connection runs.
    async with platform.unit_of_work() as uow:
        await uow.fx.add_margin("EUR", "CNY", 50, platform.now(), platform.now())
        await uow.commit()
    async with platform.reader() as r:
        assert await r.fx.margin_in_force("CNY", "EUR", platform.now()) == 50


async def test_repositories_exist_only_inside_the_block(platform: Platform) -> None:
    uow = platform.unit_of_work()
    with pytest.raises(RuntimeError, match="inside its `async with` block"):
        _ = uow.fx
    with pytest.raises(RuntimeError, match="outside"):
        await uow.commit()
