"""One signal rule: the service's /signals decision and the backtest's position come from the same function, shown equal for
every kind of model, target, threshold, short threshold and cost hypothesis draws (issue 18). The service side is
`service.live.decide` on a registered version's lineage tags, as the service reads them back from the registry; the backtest side
is `backtest.model_weights` on the same output as one out-of-sample row, with the run's settings and costs."""
import pandas as pd
from hypothesis import given, settings, strategies as st
from mlfin.backtest import BacktestSettings, Costs, model_weights
from mlfin.backtest.signals import LABELS as SIDES
from mlfin.features.labels import LABELS
from mlfin.models.promotion import lineage
from mlfin.serving import Forecast
from mlfin.service.live import decide

BAR = pd.Timestamp('2024-03-01', tz='UTC')


@st.composite
def cases(draw):
    label = draw(st.sampled_from(list(LABELS)))
    kind = LABELS[label].kind
    threshold = draw(st.floats(0.01, 0.99))
    short_below = draw(st.one_of(st.just(0.0), st.floats(0.0, threshold, exclude_max=True)))
    fees, slippage = draw(st.floats(0, 30)), draw(st.floats(0, 30))
    close = draw(st.floats(1, 1e5))
    if kind == 'classifier':
        value = draw(st.one_of(st.floats(0, 1), st.sampled_from([threshold, short_below])))   # the boundaries too
    else:
        move = draw(st.one_of(st.floats(-0.05, 0.05), st.just(2 * (fees + slippage) / 1e4)))
        value = move   # every regressor forecasts a return (a price forecast is served as the close it implies)
    whatif = draw(st.one_of(st.none(), st.floats(short_below, 0.99, exclude_min=True))) if kind == 'classifier' else None
    return label, kind, threshold, short_below, Costs(fees, slippage), close, value, whatif


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_the_service_signal_is_the_backtest_position(case):
    label, kind, threshold, short_below, costs, close, value, whatif = case
    # the backtest: one out-of-sample row of the model, traded with the run's settings
    rows = pd.DataFrame({'prob_up': [value]} if kind == 'classifier' else {'prediction': [value]}, index=[BAR])
    run = BacktestSettings(threshold=whatif if whatif is not None else threshold, short_below=short_below)
    position = int(model_weights(rows, costs, run)['side'].iloc[0])
    # the service: the registered version's lineage, read back from its tags as text
    made = lineage('SPX', '1d', {'label': label, 'horizon': 1, 'spec': 'research', 'threshold': threshold, 'short_below': short_below},
                   1, 'f', 2 * (costs.fees + costs.slippage))
    forecast = Forecast('SPX', '1d', BAR, value, kind, label, 'm', 'mlfin.SPX.1d', 1, close)
    served = decide(forecast, {k: str(v) for k, v in made.tags().items()}, whatif)
    assert served['label'] == SIDES[position], (served, position)
