"""Alerts (issue 19): the shipped rules pass `promtool test rules` (Debian's Prometheus 2.42), and every rule has a case that
fires it and a case (another series, or another time) where it stays quiet."""
import subprocess
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT/'env'/'monitoring'


def test_promtool_checks_and_unit_tests_the_shipped_rules():
    checked = subprocess.run(['promtool', 'check', 'rules', str(RULES/'alerts.yml')], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(['promtool', 'test', 'rules', 'alerts.test.yml'], cwd=RULES, capture_output=True, text=True)
    assert tested.returncode == 0 and 'SUCCESS' in tested.stdout, tested.stdout + tested.stderr


def test_every_rule_has_a_firing_and_a_quiet_case():
    rules = [r['alert'] for g in yaml.safe_load((RULES/'alerts.yml').read_text())['groups'] for r in g['rules']]
    cases = [c for t in yaml.safe_load((RULES/'alerts.test.yml').read_text())['tests'] for c in t['alert_rule_test']]
    fires = {c['alertname'] for c in cases if c.get('exp_alerts')}
    quiet = {c['alertname'] for c in cases if not c.get('exp_alerts')}
    series = {c['alertname']: t for t in yaml.safe_load((RULES/'alerts.test.yml').read_text())['tests'] for c in t['alert_rule_test']}
    # quiet beside firing: a second series in the same test that the expected alerts do not name
    beside = {name for name, t in series.items() if len(t['input_series']) > 1}
    assert sorted(rules) == sorted(set(rules)) and len(rules) >= 12
    assert set(rules) <= fires, set(rules) - fires
    assert set(rules) - {'MlfinDeadMansSwitch'} <= quiet | beside, set(rules) - quiet - beside   # the switch is meant to fire always
