"""The purge, proven: for every splitter, under generated label spans, bar times with gaps, embargoes and
sequence windows, no training row's label span reaches a test block or its embargo, no training window
overlaps them, and nothing else is dropped (the purge is not a blunt gap)."""
import numpy as np, pandas as pd
from hypothesis import given, settings, strategies as st, HealthCheck
from mlfin.models.validation import CombinatorialPurgedCV, PurgedKFold, WalkForward


@st.composite
def labelled_rows(draw):
    "Bar times with random gaps, and each row's label end 1..max_span rows ahead (NaT where it runs past the data)"
    n = draw(st.integers(40, 300))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 3, 60 * 24 * 3]), min_size=n, max_size=n))
    times = pd.DatetimeIndex(pd.Timestamp('2020-01-01', tz='UTC') + pd.to_timedelta(np.cumsum(steps), unit='min'))
    max_span = draw(st.integers(1, 12))
    spans = np.array(draw(st.lists(st.integers(1, max_span), min_size=n, max_size=n)))
    ahead = np.arange(n) + spans
    ends = pd.Series(pd.DatetimeIndex([times[j] if j < n else pd.NaT for j in ahead]), index=times)
    return ends


splitters = st.one_of(
    st.builds(WalkForward, folds=st.integers(2, 6), embargo=st.integers(0, 5)),
    st.builds(lambda f, e, t: WalkForward(f, e, window='rolling', train_size=t), st.integers(2, 6), st.integers(0, 5), st.integers(5, 60)),
    st.builds(PurgedKFold, folds=st.integers(2, 6), embargo=st.integers(0, 5)),
    st.builds(lambda g, k, e: CombinatorialPurgedCV(g, min(k, g - 1), e), st.integers(3, 7), st.integers(1, 3), st.integers(0, 5)),
)


def forbidden(splitter, ends: pd.Series, test: np.ndarray) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    "Each contiguous test block's zone, computed independently of the library: embargo rows before the block, to embargo rows after its labels' reach"
    times, n, e = ends.index, len(ends), splitter.embargo
    runs = np.split(test, np.flatnonzero(np.diff(test) > 1) + 1)
    zones = []
    for run in runs:
        a, b = run[0], run[-1]
        reach = ends.iloc[a:b + 1].dropna()
        last = b if reach.empty else max(b, int(times.searchsorted(reach.max())))
        zones.append((times[max(a - e, 0)], times[min(last + e, n - 1)]))
    return zones


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ends=labelled_rows(), splitter=splitters, window=st.integers(0, 15))
def test_no_training_label_or_window_reaches_a_test_block_or_its_embargo(ends, splitter, window):
    times = ends.index
    for train, test in splitter.split(np.zeros(len(ends)), ends=ends, window=window):
        assert len(np.intersect1d(train, test)) == 0
        zones = forbidden(splitter, ends, test)
        start, end = times[train], pd.DatetimeIndex(ends.iloc[train])
        assert not end.isna().any(), "a row with an unknown label trained"
        window_start = times[np.maximum(train - max(window, 1) + 1, 0)]
        for lo, hi in zones:
            assert ((end < lo) | (start > hi)).all(), "a training label span reaches a test block or its embargo"
            assert ((window_start > hi) | (start < lo)).all(), "a training window overlaps a test block or its embargo"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ends=labelled_rows(), splitter=splitters, window=st.integers(0, 15))
def test_only_leaking_rows_are_dropped(ends, splitter, window):
    "Every row that could train (known label, outside the test blocks, clear of every zone) does, up to a rolling window's size"
    times, n = ends.index, len(ends)
    for train, test in splitter.split(np.zeros(n), ends=ends, window=window):
        zones = forbidden(splitter, ends, test)
        pool = np.arange(test[0]) if isinstance(splitter, WalkForward) else np.setdiff1d(np.arange(n), test)
        clean = [i for i in pool if pd.notna(ends.iloc[i]) and all(
            (ends.iloc[i] < lo or times[i] > hi) and (times[max(i - max(window, 1) + 1, 0)] > hi or times[i] < lo) for lo, hi in zones)]
        if isinstance(splitter, WalkForward) and splitter.window == 'rolling': clean = clean[-splitter.train_size:]
        assert train.tolist() == clean


@settings(max_examples=100, deadline=None)
@given(ends=labelled_rows(), groups=st.integers(3, 8), k=st.integers(1, 3))
def test_cpcv_paths_cover_every_row_once_from_held_out_splits(ends, groups, k):
    cv = CombinatorialPurgedCV(groups, min(k, groups - 1))
    splits = list(cv.split(np.zeros(len(ends)), ends=ends))
    bounds = cv.group_bounds(len(ends))
    from math import comb
    assert cv.paths().shape == (comb(groups - 1, cv.test_groups - 1), groups)
    for path in cv.paths():
        covered = np.concatenate([np.arange(a, b + 1) for a, b in bounds])
        assert covered.tolist() == list(range(len(ends)))
        for g, s in enumerate(path):
            rows = np.arange(bounds[g][0], bounds[g][1] + 1)
            assert np.isin(rows, splits[s][1]).all() and not np.isin(rows, splits[s][0]).any()


# --- a panel: one model across a universe, split by date (issue 72) ---

@st.composite
def panels(draw):
    """A universe's rows (date, symbol) on business days; symbols listed late, halted or delisted, so dates hold different
    symbols; each row's label end 1..max_span of its symbol's own later dates ahead (NaT past its last). The shape is
    drawn by hypothesis, the bulk (who is present, each span) by a seeded generator it draws: fast at hundreds of rows"""
    days = pd.bdate_range('2020-01-01', periods=draw(st.integers(30, 120)), tz='UTC')
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    listed, max_span, rows = draw(st.floats(0.3, 1.0)), draw(st.integers(1, 6)), []
    for s in range(draw(st.integers(1, 6))):
        present = rng.random(len(days)) < listed
        present[rng.integers(len(days))] = True   # at least one date
        mine = days[present]
        spans = rng.integers(1, max_span + 1, len(mine))
        rows += [(d, f"S{s}", mine[i + k] if i + k < len(mine) else pd.NaT) for i, (d, k) in enumerate(zip(mine, spans))]
    order = rng.permutation(len(rows))   # the rows in any order: the splitter sorts dates itself
    return pd.DataFrame([rows[i] for i in order], columns=['date', 'symbol', 'end'])


date_splitters = st.one_of(
    st.builds(WalkForward, folds=st.integers(2, 5), embargo=st.integers(0, 4)),
    st.builds(PurgedKFold, folds=st.integers(2, 5), embargo=st.integers(0, 4)),
    st.builds(lambda g, k, e: CombinatorialPurgedCV(g, min(k, g - 1), e), st.integers(3, 6), st.integers(1, 2), st.integers(0, 4)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(panel=panels(), splitter=date_splitters)
def test_a_panel_is_split_by_whole_dates_and_no_training_label_reaches_a_test_date_or_its_embargo(panel, splitter):
    """Each fold's dates hold all their rows on one side; each test block's zone, computed here from the rows (embargo dates
    before it, to embargo dates after the furthest date any of its rows' labels looks at), holds no training label span;
    no row with an unknown label trains; and nothing else is dropped (the purge is not a blunt gap)"""
    from mlfin.models.dates import ByDate
    days = pd.DatetimeIndex(sorted(panel['date'].unique()))
    if len(days) < getattr(splitter, 'folds', getattr(splitter, 'groups', 2)) + 1: return
    n = len(days)
    reach = {d: g.dropna().max() for d, g in panel.groupby('date')['end']}
    for train, test in ByDate(splitter).split(panel, groups=panel['date'], ends=panel['end']):
        train_days, test_days = set(panel['date'].iloc[train]), set(panel['date'].iloc[test])
        assert not train_days & test_days
        assert len(test) == panel['date'].isin(test_days).sum(), "a test date lost some of its rows"
        assert not panel['end'].iloc[train].isna().any(), "a row with an unknown label trained"
        positions = sorted(days.get_loc(d) for d in test_days)
        blocks = np.split(np.array(positions), np.flatnonzero(np.diff(positions) > 1) + 1)
        zones = []
        for block in blocks:
            far = [reach[days[p]] for p in block if pd.notna(reach[days[p]])]
            last = max([block[-1], *(int(days.searchsorted(f)) for f in far)])
            zones.append((days[max(block[0] - splitter.embargo, 0)], days[min(last + splitter.embargo, n - 1)]))
        dated, ends = panel['date'].iloc[train], panel['end'].iloc[train]
        for lo, hi in zones:
            # a date trains whole or not at all: its reach (its rows' furthest label) lies outside the zone
            assert all((reach[d] < lo) or (d > hi) for d in set(dated)), "a training date's labels reach a test block or its embargo"
            assert ((ends < lo) | (dated > hi)).all()
        pool = days[:positions[0]] if isinstance(splitter, WalkForward) else days.difference(pd.DatetimeIndex(sorted(test_days)))
        clean = {d for d in pool if pd.notna(reach[d]) and all(reach[d] < lo or d > hi for lo, hi in zones)}
        assert train_days == clean, "a date that leaks nothing was dropped"
        assert len(train) == (panel['date'].isin(clean) & panel['end'].notna()).sum()
