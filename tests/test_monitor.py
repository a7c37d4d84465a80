"""Drift (issue 19): each input judged by its own history. Fresh windows of an unchanged persistent input are rarely flagged;
a shift of a few spreads is caught; a planted shift in one real input of a model flags that input and no other."""
import numpy as np, pytest
from mlfin.data import load_sample
from mlfin.features import RESEARCH_SPEC, build, model_inputs, spec_names
from mlfin.monitor import input_drift, own_threshold, psi, wasserstein


def ar1(n: int, phi: float, rng, start: float = 0.0) -> np.ndarray:
    "An AR(1) path with unit innovations: a persistent input whose process never changes"
    out, x = np.empty(n), start
    for i, e in enumerate(rng.normal(size=n)): x = phi * x + e; out[i] = x
    return out


@pytest.mark.parametrize('phi', [0.9, 0.98])
def test_fresh_windows_of_an_unchanged_persistent_input_are_rarely_flagged_and_a_shift_is_caught(phi):
    rng, spread = np.random.default_rng(int(phi * 100)), 1 / np.sqrt(1 - phi ** 2)
    alarms, fixed, caught = [], [], []
    for _ in range(20):   # 20 training spans of 2,000 bars, 50 fresh 250-bar windows continuing each
        span = ar1(2000, phi, rng, start=rng.normal() * spread)
        bar, far = own_threshold(span, 250)
        flagged = lambda w: psi(span, w) > bar or wasserstein(span, w) > far
        fresh = [ar1(250, phi, rng, start=span[-1]) for _ in range(50)]
        alarms += [flagged(w) for w in fresh]
        fixed += [psi(span, w) > 0.2 for w in fresh]
        caught += [flagged(w + 3 * spread) for w in fresh[:10]]   # the process moved by three of its spreads
    assert np.mean(alarms) <= 0.05, np.mean(alarms)
    assert np.mean(fixed) > 4 * np.mean(alarms), (np.mean(fixed), np.mean(alarms))   # a fixed cut-off cries wolf
    assert np.mean(caught) >= 0.9, np.mean(caught)


def test_a_planted_shift_in_one_real_input_flags_that_input_and_no_other():
    spx = load_sample('SPX').loc['2010':'2016']
    names = spec_names(RESEARCH_SPEC)
    inputs = model_inputs(build(spx, names), spx, names).dropna()
    recent = inputs.iloc[-250:]   # an unchanged copy of the training span's end
    assert input_drift(inputs, recent).drifted() == []
    for name, spreads in (('rsi_14', 1), ('returns', 1), ('mfi_14', 1), ('obv', 3)):
        shifted = recent.assign(**{name: recent[name] + spreads * inputs[name].std()})
        assert input_drift(inputs, shifted).drifted() == [name], name
