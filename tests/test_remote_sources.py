"""Remote sources against loopback servers that answer in the providers' documented formats: Binance's
klines (through ccxt) and Yahoo's chart API (through yfinance). The bars they serve are real: the
embedded EUR/USD hourly bars as Binance's EUR/USDT market, and the embedded AAPL daily bars (raw and
adjusted close) as Yahoo's AAPL. No request leaves the machine."""
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
import numpy as np, pandas as pd
import pytest
from mlfin import data
from mlfin.errors import BadInput, NotFound
from mlfin.data.remote import fetch_exchange, fetch_yahoo
from mlfin.data.samples import read_sample


class Server:
    "A loopback HTTP server whose GET answers come from `route(path, query) -> (status, body)`"
    def __init__(self, route):
        outer = self
        self.requests = []
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path); query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append((url.path, query))
                status, body, headers = route(url.path, query)
                self.send_response(status)
                for k, v in {'Content-Type': 'application/json', **headers}.items(): self.send_header(k, v)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_header('Content-Length', str(len(payload))); self.end_headers(); self.wfile.write(payload)
            def log_message(self, *args): pass
        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
    def close(self): self.httpd.shutdown(); self.httpd.server_close()


# --- Binance (https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints) ---

EURUSD = read_sample('EURUSD').frame.set_index('ts')
MARKET = {'symbol': 'EURUSDT', 'status': 'TRADING', 'baseAsset': 'EUR', 'baseAssetPrecision': 8, 'quoteAsset': 'USDT',
          'quotePrecision': 8, 'quoteAssetPrecision': 8, 'orderTypes': ['LIMIT', 'MARKET'], 'icebergAllowed': True,
          'ocoAllowed': True, 'isSpotTradingAllowed': True, 'isMarginTradingAllowed': False, 'permissions': ['SPOT'],
          'permissionSets': [['SPOT']], 'filters': [
              {'filterType': 'PRICE_FILTER', 'minPrice': '0.00001000', 'maxPrice': '1000.00000000', 'tickSize': '0.00001000'},
              {'filterType': 'LOT_SIZE', 'minQty': '0.10000000', 'maxQty': '9000000.00000000', 'stepSize': '0.10000000'}]}


def binance(throttle_first: bool):
    state = {'throttled': not throttle_first}
    def route(path, query):
        if path == '/api/v3/exchangeInfo':
            return 200, {'timezone': 'UTC', 'serverTime': 0, 'rateLimits': [], 'exchangeFilters': [], 'symbols': [MARKET]}, {}
        if path == '/api/v3/klines':
            if not state['throttled']:
                state['throttled'] = True
                return 429, {'code': -1003, 'msg': 'Too many requests; current limit is 6000 request weight per 1 MINUTE.'}, {'Retry-After': '0'}
            assert query['symbol'] == 'EURUSDT' and query['interval'] == '1h'
            start = pd.Timestamp(int(query['startTime']), unit='ms', tz='UTC')
            rows = EURUSD[EURUSD.index >= start].head(min(int(query.get('limit', 500)), 1000))
            return 200, [[int(t.timestamp() * 1000), f"{r.open:.5f}", f"{r.high:.5f}", f"{r.low:.5f}", f"{r.close:.5f}",
                          f"{r.volume:.2f}", int(t.timestamp() * 1000) + 3_599_999, '0', 0, '0', '0', '0']
                         for t, r in zip(rows.index, rows.itertuples())], {}
        return 404, {'code': -1, 'msg': f'no route {path}'}, {}
    return route


@pytest.fixture()
def exchange():
    server = Server(binance(throttle_first=True))
    yield server, {'urls': {'api': {'public': f"{server.url}/api/v3"}}, 'options': {'fetchMarkets': {'types': ['spot']}}, 'rateLimit': 5}
    server.close()


def test_ccxt_pages_through_klines_and_backs_off_when_throttled(exchange):
    server, config = exchange
    batch = fetch_exchange('binance', 'EUR/USDT', '1h', '2017-03-01', '2017-03-31 23:00', limit=200, config=config, now='2018-01-01')
    bars = batch.inspect('EURUSDT', '1h').bars
    expected = EURUSD.loc['2017-03-01':'2017-03-31 23:00']
    assert len(bars) == len(expected) > 500 and bars.index.equals(pd.DatetimeIndex(expected.index).as_unit('ns').rename('ts'))
    np.testing.assert_allclose(bars['close'], expected['close'], atol=5e-6)
    pages = [q for p, q in server.requests if p == '/api/v3/klines']
    assert len(pages) >= 5 and pages[0] == pages[1]  # the throttled page was asked again
    assert all(int(q['limit']) == 200 for q in pages)


def test_ccxt_never_returns_the_candle_still_forming(exchange):
    _, config = exchange
    now = pd.Timestamp('2017-03-01 10:30', tz='UTC')  # the 10:00 bar is still open
    bars = fetch_exchange('binance', 'EUR/USDT', '1h', '2017-03-01', config=config, now=now).inspect('EURUSDT', '1h').bars
    assert bars.index[-1] == pd.Timestamp('2017-03-01 09:00', tz='UTC')


def test_ccxt_ingest_through_the_data_layer_and_bad_markets(exchange, tmp_path):
    _, config = exchange
    report = data.ingest('ccxt:binance:EUR/USDT', 'EURUSDT', '1h', start='2017-06-01', end='2017-06-30 23:00', config=config, store=tmp_path)
    assert (report.new, report.quarantined, report.calendar) == (len(EURUSD.loc['2017-06-01':'2017-06-30 23:00']), 0, '24/5')
    with pytest.raises(NotFound, match='ccxt binance BTC/EUR: no such market'):
        fetch_exchange('binance', 'BTC/EUR', '1h', '2017-06-01', config=config)
    with pytest.raises(BadInput, match='a remote source needs --timeframe and --start'):
        data.ingest('ccxt:binance:EUR/USDT', 'EURUSDT', '1h', store=tmp_path)


# --- Yahoo's chart API, as yfinance calls it ---

AAPL = read_sample('AAPL').frame.set_index('ts')


def yahoo(path, query):
    if path.startswith('/v8/finance/chart/'):
        assert path.endswith('/AAPL')
        lo = pd.Timestamp(int(query.get('period1', 0)), unit='s', tz='UTC')
        hi = pd.Timestamp(int(query.get('period2', 2_000_000_000)), unit='s', tz='UTC')
        if 'range' in query: lo = hi = AAPL.index[-1]   # the time-zone probe: one bar is enough
        rows = AAPL[(AAPL.index >= lo.normalize()) & (AAPL.index <= hi)]
        opens = [int((t + pd.Timedelta(hours=14, minutes=30)).timestamp()) for t in rows.index]  # 09:30 New York (EST)
        adj = rows['adj_factor'] * rows['close']
        meta = {'currency': 'USD', 'symbol': 'AAPL', 'exchangeName': 'NMS', 'fullExchangeName': 'NasdaqGS', 'instrumentType': 'EQUITY',
                'firstTradeDate': 345479400, 'regularMarketTime': opens[-1] if opens else 0, 'hasPrePostMarketData': True,
                'gmtoffset': -18000, 'timezone': 'EST', 'exchangeTimezoneName': 'America/New_York', 'priceHint': 2,
                'currentTradingPeriod': {k: {'timezone': 'EST', 'start': 1362148200, 'end': 1362171600, 'gmtoffset': -18000}
                                         for k in ('pre', 'regular', 'post')},
                'dataGranularity': '1d', 'range': '', 'validRanges': ['1d', '5d', '1mo', 'max']}
        result = {'meta': meta, 'timestamp': opens, 'indicators': {
            'quote': [{c: rows[c].round(4).tolist() for c in ('open', 'high', 'low', 'close')} | {'volume': rows['volume'].astype(int).tolist()}],
            'adjclose': [{'adjclose': adj.round(6).tolist()}]}}
        return 200, {'chart': {'result': [result], 'error': None}}, {}
    if path == '/v1/test/getcrumb': return 200, b'mlfin-test-crumb', {'Content-Type': 'text/plain'}
    return 200, b'', {'Set-Cookie': 'A3=mlfin-test; Path=/', 'Content-Type': 'text/html'}


@pytest.fixture()
def yahoo_session(tmp_path):
    import requests, yfinance as yf
    yf.set_tz_cache_location(str(tmp_path/'yf-cache'))
    server = Server(yahoo)
    class Loopback(requests.Session):
        "Sends yfinance's requests for *.yahoo.com to the loopback server instead"
        def request(self, method, url, *args, **kwargs):
            parts = urlsplit(url)
            if parts.hostname and parts.hostname.endswith('yahoo.com'): url = server.url + parts.path + (f"?{parts.query}" if parts.query else '')
            return super().request(method, url, *args, **kwargs)
    yield server, Loopback()
    server.close()


def test_yfinance_daily_bars_keep_yahoo_close_and_the_adjustment(yahoo_session, tmp_path):
    server, session = yahoo_session
    batch = fetch_yahoo('AAPL', '1d', '2012-01-03', '2012-12-31', session=session)
    bars = batch.inspect('AAPL', '1d').bars
    expected = AAPL.loc['2012-01-03':'2012-12-31']
    assert len(bars) == len(expected) == 250
    assert bars.index.equals(pd.DatetimeIndex(expected.index).as_unit('ns').rename('ts'))  # the session's date, 00:00 UTC
    np.testing.assert_allclose(bars['close'], expected['close'], rtol=1e-6)
    np.testing.assert_allclose(bars['adj_factor'], expected['adj_factor'], rtol=1e-5)
    assert any(p.startswith('/v8/finance/chart/AAPL') for p, _ in server.requests)
    report = data.ingest('yfinance:AAPL', 'AAPL', '1d', start='2012-01-03', end='2012-12-31', config={'session': session}, store=tmp_path)
    assert (report.new, report.calendar) == (250, 'XNYS')
    assert data.quality_report('AAPL', store=tmp_path).loc[('AAPL', '1d'), 'missing_bars'] == 0


def test_ccxt_from_the_command_line_with_a_settings_file(exchange, tmp_path):
    from typer.testing import CliRunner
    from mlfin.cli import app
    _, config = exchange
    (tmp_path/'binance.json').write_text(json.dumps(config))
    result = CliRunner().invoke(app, ['ingest', 'ccxt:binance:EUR/USDT', '--symbol', 'EURUSDT', '--timeframe', '1h', '--start', '2017-06-01',
                                      '--end', '2017-06-02 23:00', '--config', str(tmp_path/'binance.json'), '--store', str(tmp_path/'store')])
    assert result.exit_code == 0, result.output
    n = len(EURUSD.loc['2017-06-01':'2017-06-02 23:00'])  # 45: the FX week closes at 21:00 UTC that Friday
    assert result.output.startswith(f'ccxt binance EUR/USDT: EURUSDT 1h: {n} good row(s) ({n} new')
