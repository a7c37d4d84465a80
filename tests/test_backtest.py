"""The backtest cross-checked: the same signals through a second, independent engine (backtesting.py, a test-only
dependency) give the same trades and returns, long and short, with costs and with stops.

The peer is set up to the fill rules of `mlfin.backtest.portfolio.FILL_RULES`: orders placed at a bar's close fill at
the next open; stops are levels from the entry open, set once the entry bar has closed; after a stop the strategy
stays flat until its signal goes flat or changes side; a signal's exit cancels the trade's stops first.

Two conventions differ and are bridged here, not hidden: backtesting.py charges its `spread` on entries only, so the
per-fill slippage is charged as commission on value (the same cost to first order: their fills are at raw prices,
ours at prices moved by the slippage, and the test expects exactly that); and it trades whole units, so a large cash
keeps the rounding below the tolerance. Position sizes are ours, rounded to whole units: the peer sizes a
fraction of "available liquidity" its own way, which is a convention, not a check (the notebook checks ours: a weight
of 0.5 buys half the portfolio's value at the fill).

Tolerance: trade times identical; fill prices equal to 1e-12 after the slippage; value curves within 1e-5 of the
starting value (measured: 3e-7 to 6e-7 over 65-131 trades; what remains is fees on slipped prices, second order, and
whole units).
"""
import warnings
import numpy as np, pandas as pd, pytest
from backtesting import Backtest, Strategy
from mlfin.backtest.portfolio import Costs, simulate
from mlfin.data import load_sample

CASH, TOLERANCE = 1e9, 1e-5


def peer(bars: pd.DataFrame, weight: pd.Series, units: pd.Series, costs: Costs, stop_loss=None, take_profit=None):
    "backtesting.py trading `weight`'s side under the fill rules, each entry of the whole units `units` holds at its fill bar"

    class Follow(Strategy):
        def init(self):
            self.blocked, self.last, self.closing = 0, 0, False

        def next(self):
            i = len(self.data) - 1
            for t in self.trades:  # the entry bar has closed: stops from its open, watched from the next bar
                if t.sl is None and t.tp is None and (stop_loss or take_profit):
                    entry, side = bars['open'].iloc[t.entry_bar], np.sign(t.size)
                    if stop_loss: t.sl = entry * (1 - side * stop_loss)
                    if take_profit: t.tp = entry * (1 + side * take_profit)
            want, held = np.sign(weight.iloc[i]), np.sign(self.position.size)
            if self.last != 0 and held == 0 and not self.closing: self.blocked = self.last  # its stop or target closed it
            self.closing = False
            if self.blocked and want != self.blocked: self.blocked = 0
            if self.blocked: want = 0
            if want != held:
                for t in self.trades: t.sl = t.tp = None
                if held != 0: self.position.close(); self.closing = True
                if want > 0: self.buy(size=int(units.iloc[i + 1]))
                elif want < 0: self.sell(size=int(units.iloc[i + 1]))
            self.last = want if want != held else held

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = Backtest(bars.rename(columns=str.capitalize), Follow, cash=CASH, commission=(costs.fees + costs.slippage) / 1e4,
                       spread=0.0, finalize_trades=True).run()
    return run._trades, run._equity_curve['Equity'] / CASH


@pytest.mark.parametrize('case', ['long_only', 'long_short', 'long_short_stops'])
def test_same_trades_and_returns_as_backtesting_py(case):
    bars = load_sample('AAPL').loc['2008':'2012']  # real daily bars through 2008's crash: gaps, both directions
    trend = np.sign(bars['close'] - bars['close'].rolling(20).mean()).fillna(0)
    weight = (trend.clip(lower=0) if case == 'long_only' else trend) * 0.5
    weight.iloc[-2:] = 0  # both end flat (the peer closes an open trade at the end by a rule of its own)
    costs = Costs(fees=10.0, slippage=5.0)
    stops = {'stop_loss': 0.03, 'take_profit': 0.06} if case == 'long_short_stops' else {}
    pf = simulate({'AAPL': bars}, {'AAPL': weight}, costs, cash=CASH, **stops)
    ours = pf.trades.records_readable
    units = pf.assets()['AAPL'].abs().round()  # the position each entry leaves (a flip's one order closes and opens)
    theirs, equity = peer(bars, weight, units, costs, **stops)

    assert len(ours) > 40, f"too few trades to compare: {len(ours)}"
    assert len(ours) == len(theirs), f"{len(ours)} trades here, {len(theirs)} in backtesting.py"
    side = np.where(ours['Direction'] == 'Long', 1, -1)
    assert (ours['Entry Timestamp'].to_numpy() == theirs['EntryTime'].to_numpy()).all()
    assert (ours['Exit Timestamp'].to_numpy() == theirs['ExitTime'].to_numpy()).all()
    np.testing.assert_allclose(ours['Avg Entry Price'], theirs['EntryPrice'] * (1 + side * costs.slippage / 1e4), rtol=1e-12)
    np.testing.assert_allclose(ours['Avg Exit Price'], theirs['ExitPrice'] * (1 - side * costs.slippage / 1e4), rtol=1e-12)
    value = pf.value()['AAPL'] / CASH  # one column per symbol (several symbols sharing cash: one value curve)
    gap = float((value - equity.reindex(value.index)).abs().max())
    assert gap < TOLERANCE, f"value curves differ by {gap:.2e} of the starting value (tolerance {TOLERANCE})"
    if stops:
        reasons = pf.orders_by_bar['AAPL']['reason'].value_counts()
        assert reasons['stop_loss'] > 0 and reasons['take_profit'] > 0, reasons.to_dict()  # both rules were exercised
    if 'short' in case: assert (ours['Direction'] == 'Short').sum() > 10


def test_trade_statistics_come_from_sized_pnl():
    "Win rate and profit factor weigh each trade by what it made, recomputed by hand from the value curve (issue 16, defect 4)"
    from mlfin.backtest import stats
    bars = load_sample('SPX').loc['2008-09-01':'2009-12-31']   # large moves both ways
    weight = pd.Series(0.0, index=bars.index)
    plan = [(5, 25, 0.1), (35, 60, 1.0), (70, 95, -0.5), (105, 140, 0.25), (150, 190, -1.0), (200, 215, 0.6)]  # (from, to, weight)
    for a, b, w in plan: weight.iloc[a:b] = w
    pf = simulate({'SPX': bars}, {'SPX': weight}, Costs(5.0, 2.0))
    value = pf.value()['SPX']
    # by hand: flat between trades, so a trade's P&L is the value at the close of its exit bar less the value before its entry
    position = weight.shift(1).fillna(0)   # held from the next open
    changes = np.flatnonzero(np.diff(np.r_[0.0, position.to_numpy()]) != 0)
    entries, exits = changes[::2], changes[1::2]
    by_hand = np.array([value.iloc[x] - value.iloc[e - 1] for e, x in zip(entries, exits)])
    records = pf.trades.records_readable
    np.testing.assert_allclose(records['PnL'].to_numpy(), by_hand, rtol=1e-9)
    figures = stats.performance(value, 252, trade_pnl=records['PnL'].to_numpy())
    gains, losses = by_hand[by_hand > 0].sum(), -by_hand[by_hand < 0].sum()
    assert figures['trades'] == len(plan) and figures['win_rate'] == pytest.approx((by_hand > 0).mean())
    assert figures['profit_factor'] == pytest.approx(gains / losses, rel=1e-9)
    unsized = records['Return'].to_numpy()   # what the defect computed: each trade's own return, whatever its size
    assert not np.isclose(unsized[unsized > 0].sum() / -unsized[unsized < 0].sum(), figures['profit_factor'], rtol=0.1)


# --- the portfolio: one daily clock, capital among the symbols tradable at each time (issue 18) ---

def _two_clocks():
    "Real bars on two clocks: SPX daily (XNYS), EURUSD hourly (24/5) of 2017 only; each long above its 20-bar mean (known at the close)"
    spx, eurusd = load_sample('SPX').loc['2016-07':'2017-12'], load_sample('EURUSD')
    for bars in (spx, eurusd):   # the canonical contract, so nothing below leans on a loose frame
        assert bars.index.name == 'ts' and str(bars.index.tz) == 'UTC' and bars.index.is_monotonic_increasing
        assert all(bars[c].dtype == 'float64' for c in ('open', 'high', 'low', 'close', 'volume'))
    rule = lambda b: (b['close'] > b['close'].rolling(20).mean()).astype('float64')
    weights = {'SPX': rule(spx), 'EURUSD': rule(eurusd).loc['2017-03':]}   # EURUSD's decisions start in March
    return {'SPX': spx, 'EURUSD': eurusd}, weights


def test_portfolio_sharpe_on_one_daily_clock_by_hand():
    "Sharpe ratio and DSR of a daily + hourly portfolio: its value at each UTC day's last bar, annualised by the days observed a year"
    from mlfin.backtest import backtest_portfolio, stats
    bars, weights = _two_clocks()
    costs = {'SPX': Costs(1.0, 2.0), 'EURUSD': Costs(0.3, 0.5)}
    metrics, curve, _ = backtest_portfolio(bars, weights, costs, trials=2, reps=200, calendars={'SPX': 'XNYS', 'EURUSD': '24/5'})
    # by hand: the shares of capital (1/N_t among the tradable), the simulation, the day's last value, its returns
    index = bars['SPX'].loc['2016-07':].index.union(bars['EURUSD'].loc['2017-03':].index)
    live = pd.DataFrame({s: (index > w.index[0]) & (index < w.index[-1]) for s, w in weights.items()}, index=index).astype('float64')
    shares = live.div(live.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    value = simulate(bars, weights, costs, shares=shares).value()
    daily = value.groupby(value.index.floor('D')).last()          # the last value of each UTC day with a bar
    returns = daily.pct_change().dropna()
    days = len(returns) / ((daily.index[-1] - daily.index[0]).days / 365.25)
    sharpe = returns.mean() / returns.std(ddof=1) * np.sqrt(days)
    assert 250 < days < 300, days           # XNYS days, and 2017's FX days (Sunday evenings in UTC included)
    assert metrics['periods_per_year'] == pytest.approx(days, rel=1e-12)
    assert metrics['strategy']['sharpe'] == pytest.approx(sharpe, rel=1e-9)
    assert metrics['strategy']['total_return'] == pytest.approx(daily.iloc[-1] / daily.iloc[0] - 1, rel=1e-12)
    assert metrics['skill']['n'] == len(returns)   # PSR and DSR count days, not the union's bars
    m = stats.sharpe_moments(returns)
    assert metrics['skill']['psr'] == pytest.approx(stats.psr(m['sr'], m['n'], m['skew'], m['kurtosis']), rel=1e-9)
    assert metrics['sharpe_interval']['sharpe'] == pytest.approx(sharpe, rel=1e-9)
    assert metrics['clock'].startswith('1d (') and 'SPX XNYS, EURUSD 24/5' in metrics['clock'], metrics['clock']
    assert curve.index.equals(daily.index) and len(curve) == len(daily)   # the tearsheet's curve is on the same clock


def test_capital_goes_to_the_symbols_tradable_at_each_time():
    "A symbol starting later gets no capital before its first decision, the others being fully invested; one ending early is closed"
    from mlfin.backtest import backtest_portfolio, capital_shares
    bars, weights = _two_clocks()
    weights['SPX'] = weights['SPX'].loc[:'2017-10-31']   # SPX's decisions end before EURUSD's
    shares = capital_shares(bars, weights)
    start, end = weights['EURUSD'].index[0], weights['SPX'].index[-1]
    total = shares.sum(axis=1)
    inside = (shares.index > weights['SPX'].index[0]) & (shares.index < weights['EURUSD'].index[-1])
    assert (total[inside] == 1.0).all() and total.iloc[-1] == 0   # fully allocated among the tradable; at the last bar, none is
    assert (shares.loc[:start, 'EURUSD'] == 0).all()
    assert (shares.loc[shares.index[(shares.index > weights['SPX'].index[0]) & (shares.index <= start)], 'SPX'] == 1.0).all()
    assert (shares.loc[(shares.index > start) & (shares.index < end)] == 0.5).all().all()
    assert (shares.loc[end:, 'SPX'] == 0).all() and (shares.loc[shares.index[(shares.index >= end) & (shares.index < weights['EURUSD'].index[-1])], 'EURUSD'] == 1.0).all()
    pf = simulate(bars, weights, {'SPX': Costs(1.0, 2.0), 'EURUSD': Costs(0.3, 0.5)}, shares=shares)
    fills = pf.orders.records_readable
    first = fills.iloc[0]
    assert first['Column'] == 'SPX' and first['Timestamp'] < start
    # SPX's first buy, alone: the whole of the cash (fees on top), not half of it as an equal split among all symbols gave
    assert first['Size'] * first['Price'] * (1 + 1e-4) == pytest.approx(10_000.0, rel=1e-9)
    held = pf.orders_by_bar
    assert held['SPX']['held'].iloc[-1] == 0.0                               # closed at the open of its last bar
    assert set(held['SPX']['held'].loc[:start].unique()) <= {0.0, 1.0}       # all in or out before EURUSD can trade
    assert set(held['EURUSD']['held'].loc[end + pd.Timedelta(days=2):].unique()) <= {0.0, 1.0}   # all of it after SPX left
    assert pf.cash().min() >= -1e-6   # never borrows
    metrics, curve, _ = backtest_portfolio(bars, weights, {'SPX': Costs(1.0, 2.0), 'EURUSD': Costs(0.3, 0.5)}, trials=2, reps=200)
    assert metrics['allocation'] == 'equal'
    # buy-and-hold allocated alike: all in SPX (SPX's own buy-and-hold) until EURUSD's first decision
    from mlfin.backtest import buy_and_hold
    alone = buy_and_hold(bars['SPX'], weights['SPX'].index[0], end, Costs(1.0, 2.0)).value()
    before = curve.index[curve.index < start.floor('D')]
    np.testing.assert_allclose(curve.loc[before, 'buy_and_hold'], alone.reindex(before), rtol=1e-12)
    by_vol, _, _ = backtest_portfolio(bars, weights, {'SPX': Costs(1.0, 2.0), 'EURUSD': Costs(0.3, 0.5)}, trials=2, reps=200, allocation='inverse_vol')
    assert by_vol['allocation'] == 'inverse_vol' and by_vol['strategy']['total_return'] != metrics['strategy']['total_return']


# --- every book ends flat: closed at the open of its last bar, the exit paid (issue 33) ---

def by_hand(bars: pd.DataFrame, long: pd.Series, fee: float, slip: float, cash: float = 10_000.0) -> tuple[np.ndarray, bool]:
    """A long-or-flat book's value at each close, by the fill rules with nothing but arithmetic: decided at a close, filled at the next
    open (all the cash in, or everything out), fees on the traded value and slippage against the trade, closed at the open of the last bar"""
    want = long.astype('float64').reindex(bars.index).fillna(0).shift(1).fillna(0).to_numpy().copy()
    held_into_last = bool(want[-1] == 1)
    want[-1] = 0.0
    units, value = 0.0, []
    for w, o, c in zip(want, bars['open'].to_numpy(), bars['close'].to_numpy()):
        if w == 1 and units == 0: units, cash = cash / (o * (1 + slip) * (1 + fee)), 0.0
        elif w == 0 and units > 0: units, cash = 0.0, units * o * (1 - slip) * (1 - fee)
        value.append(cash + units * c)
    return np.array(value), held_into_last


def test_every_book_recomputed_by_hand_from_the_saved_predictions_and_bars(pipeline_run):
    "Each symbol's traded book, and every model at every threshold of its grid, recomputed from the run's predictions and bars, last bar included"
    from mlfin.data import split_symbols
    home, summary = pipeline_run['home'], pipeline_run['summary']
    bars = split_symbols(pd.read_parquet(home/'run'/'bars.parquet'))
    oos, curves = pd.read_parquet(home/'run'/'oos.parquet'), pd.read_parquet(home/'run'/'curves.parquet')
    grid, trades = pd.read_parquet(home/'run'/'grid.parquet'), pd.read_parquet(home/'run'/'trades.parquet')
    threshold, held_into_last = summary['params']['threshold'], 0
    for symbol, entry in summary['symbols'].items():
        fee, slip = entry['costs']['fees_bps'] / 1e4, entry['costs']['slippage_bps'] / 1e4
        mine = grid[grid['symbol'] == symbol].drop(columns='symbol')
        for model, rows in oos[oos['symbol'] == symbol].groupby('model'):
            p = rows['prob_up'].sort_index()
            b = bars[symbol].loc[p.index[0]:p.index[-1]]
            for point in [c.split('@')[1] for c in mine if c.startswith(f"{model}@")]:
                value, held = by_hand(b, p > float(point), fee, slip)
                held_into_last += held
                np.testing.assert_allclose(mine[f"{model}@{point}"].to_numpy(), value[1:] / value[:-1] - 1, rtol=0, atol=1e-12,
                                           err_msg=f"{symbol} {model}@{point}")
                if model == entry['model'] and float(point) == threshold:   # the traded book: its curve, its figures, its last trade
                    curve = curves.loc[curves['symbol'] == symbol, 'strategy'].to_numpy()
                    np.testing.assert_allclose(curve, value, rtol=1e-9, err_msg=symbol)
                    assert entry['strategy']['total_return'] == pytest.approx(value[-1] / value[0] - 1, rel=1e-9)
                    last = trades[trades['book'] == symbol].iloc[-1]
                    assert (last['Status'], last['exit_reason'] if held else 'end') == ('Closed', 'end'), last   # nothing left open
                    if held: assert last['Avg Exit Price'] == pytest.approx(b['open'].iloc[-1] * (1 - slip), rel=1e-12)
    assert held_into_last > 0, "no book held a position into its last bar: the exit there was never exercised"
