"""What the economy added (issue 55): `mlfin run --spec macro` joins non-bar series (core CPI, Moody's yields, WTI, the
French factors) as they were known at each bar's close, trains lightgbm beside the same model without the macro group, and
its report says per symbol what the group did, with the figures and the trials counted on the question. One golden run
(conftest's `macro_golden`) read by the tests here."""
import json
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from conftest import ROOT, mlfin
from mlfin.backtest.tearsheet import figure
from mlfin.backtest.universe import GRID_THRESHOLDS
from mlfin.features import read_spec, resolve
from mlfin.models import read_models
from mlfin.report.tables import GROUP_SHOWN
from mlfin.tracking.ledger import Ledger

pytestmark = pytest.mark.e2e   # a whole run, built once


def test_the_report_says_what_the_macro_group_did_with_its_trials_counted(macro_golden):
    home, summary = macro_golden['home'], macro_golden['summary']
    train = json.loads((home/'run'/'train.json').read_text())
    variant = next(name for name, spec in read_models(ROOT/'models.yaml').items() if spec.without == ('macro',))
    plain = next(m['model'] for m in train['models']['SPX'] if m['family'] == 'lightgbm' and 'without' not in m['params'])
    # the variant trained without the macro group's columns, and was saved taking them out
    macro = read_spec('macro', ROOT/'features.yaml')['macro']
    columns = {c for name in macro for c in resolve(name).columns()}
    inputs = {m: json.loads((home/'run'/'models'/'SPX'/m/'model.json').read_text()) for m in (plain, variant)}
    assert columns <= set(inputs[plain]['inputs']) and not columns & set(inputs[variant]['inputs']), inputs[variant]['inputs']
    assert set(inputs[plain]['inputs']) - set(inputs[variant]['inputs']) == columns
    assert not set(macro) & set(inputs[variant]['features']) and set(macro) <= set(inputs[plain]['features'])
    # the figures: recomputed from every model's out-of-sample rows, on the bars both predicted
    row = next(r for r in train['group_comparisons'] if r['symbol'] == 'SPX')
    assert (row['groups'], row['with'], row['without']) == ('macro', plain, variant)
    oos = pd.read_parquet(home/'run'/'oos.parquet').query("symbol == 'SPX'")
    wide = oos.pivot_table(index=oos.index, columns='model', values='prediction')
    label = oos.groupby(level=0)['label'].first().reindex(wide.index)
    both = wide[[plain, variant]].notna().all(axis=1) & label.notna()
    auc = {m: roc_auc_score(label[both], wide.loc[both, m]) for m in (plain, variant)}
    assert row['bars'] == int(both.sum()) and row['auc_with'] == pytest.approx(auc[plain]) and row['auc_without'] == pytest.approx(auc[variant])
    assert row['auc_diff'] == pytest.approx(auc[plain] - auc[variant]) and row['low'] <= row['auc_diff'] <= row['high']
    # the sentence: the figures as every page rounds them, what the tests show, the trials counted
    [said] = summary['groups_added']['SPX']
    for x in (auc[plain], auc[variant]): assert figure(x, 4) in said, said
    assert f"one-sided bootstrap p {figure(row['bootstrap_p'], 3)}, Diebold-Mariano p {figure(row['dm_p'], 3)}" in said, said
    assert said.startswith(f"SPX, the macro group: {plain} scored AUC") and f"({variant})" in said, said
    shown = 'no verdict' if any(figure(row[k]) == 'not a number' for k in ('auc_diff', 'low', 'bootstrap_p', 'dm_p')) else GROUP_SHOWN[row['shown']]
    assert f"): {shown}" in said, said
    # the trials counted are the ledger's: every model at every point of the grid, the variant its own configuration
    found = Ledger(str(home/'ledger.db')).check()
    trials = [t for e in found.entries if e.kind == 'trials' and e.content['symbol'] == 'SPX' for t in e.content['trials']]
    configurations = {t['configuration'] for t in trials if t['kind'] == 'configuration'}
    thresholds = len({*GRID_THRESHOLDS, summary['params']['threshold']})
    assert len(configurations) == len(train['models']['SPX']) * thresholds == summary['symbols']['SPX']['skill']['trials']
    assert not {t['configuration'] for t in trials if t['model'] == variant} & {t['configuration'] for t in trials if t['model'] == plain}
    assert json.loads(next(t['params'] for t in trials if t['model'] == variant))['without'] == ['macro']
    assert f"; {len(configurations)} trials (all in this run" in said, said
    assert said in (macro_golden['reports']/'report.html').read_text()   # the report says it too
    assert said in macro_golden['stdout']   # and `mlfin run` ends with it


def test_a_variant_whose_group_the_spec_lacks_is_not_trained_and_said_once(tmp_path):
    "Named on the research spec, which has no macro group: skipped in one line; alone, a one-line refusal, nothing run"
    variant = next(name for name, spec in read_models(ROOT/'models.yaml').items() if spec.without == ('macro',))
    groups = ', '.join(read_spec('research'))
    refused = mlfin(tmp_path/'home', 'run', '--symbols', 'SPX', '--models', variant, check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (f"mlfin: error: --models: not trained: {variant} (without macro): spec research "
                                                                  f"has no such group (its groups: {groups})"), refused.stderr
    assert not (tmp_path/'home'/'run').exists()
