// wattledger web UI: reads the aggregator's JSON API and draws the comparison,
// the charts (plain SVG, no library) and fleet health. No build step, nothing
// loaded from anywhere but this server.
'use strict';

(function () {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const HOUR_MS = 3600e3;
  const PRESETS = { '6h': 6 * HOUR_MS, '24h': 24 * HOUR_MS, '7d': 7 * 24 * HOUR_MS };
  const REFRESH_MS = 30e3;
  const FLEET_ROWS = 12;
  // Mining in warm colours, AI in cool ones, so a glance tells the two apart.
  const WARM = ['#e8590c', '#f59f00', '#c92a2a', '#d6336c'];
  const COOL = ['#1971c2', '#0c8599', '#7048e8', '#2b8a3e', '#5c7cfa'];

  const params = new URLSearchParams(location.search);
  // The token arrives once in the address (?token=), then lives only in this tab's
  // sessionStorage and leaves the address bar, so it is not bookmarked, shared,
  // kept in history or sent as a Referer.
  const TOKEN_KEY = 'wattledger-token';
  const token = (() => {
    const fromUrl = params.get('token');
    let t = fromUrl;
    try {
      if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
      else t = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token stays in memory for this load */ }
    if (fromUrl !== null) {
      const u = new URL(location.href);
      u.searchParams.delete('token');
      history.replaceState(null, '', u);
    }
    return t;
  })();
  const state = {
    range: PRESETS[params.get('range')] || (params.get('range') === 'custom' && params.get('from') && params.get('to'))
      ? params.get('range') : '24h',
    customFrom: params.get('from'),
    customTo: params.get('to'),
    seq: 0,
    timer: null,
    colors: new Map(),
    fleetAll: false,
    lastFleet: null,
    lastCharts: null,
    scale: 'auto',
    metric: 'revenue',
  };

  const $ = (id) => document.getElementById(id);

  // ---- formatting: every number carries its unit --------------------------------
  const nf = (digits) => new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  function fixed(v, digits) { return nf(digits).format(v); }
  function usdDigits(abs) { return abs >= 100 ? 0 : abs >= 1 ? 2 : 3; }
  function fmtUsdPerKwh(v) {
    if (!isNum(v)) return null;
    const s = '$' + fixed(Math.abs(v), usdDigits(Math.abs(v)));
    return (v < 0 ? '−' : '') + s;
  }
  function fmtUsd(v) {
    if (!isNum(v)) return null;
    const a = Math.abs(v);
    const s = '$' + fixed(a, a >= 1000 ? 0 : 2);
    return (v < 0 ? '−' : '') + s;
  }
  function fmtKwh(kwh) { const a = Math.abs(kwh); return fixed(kwh, a >= 1000 ? 0 : a >= 10 ? 1 : 2); }
  function fmtEnergy(j) {
    if (!isNum(j)) return null;
    const kwh = j / 3.6e6;
    return Math.abs(kwh) >= 10000 ? fixed(kwh / 1000, 1) + ' MWh' : fmtKwh(kwh) + ' kWh';
  }
  function fmtPct(ratio) {
    if (!isNum(ratio)) return null;
    const p = ratio * 100;
    return fixed(p, Math.abs(p) >= 10 ? 0 : 1) + ' %';
  }
  function fmtPower(w) {
    if (!isNum(w)) return null;
    return Math.abs(w) >= 1000 ? fixed(w / 1000, Math.abs(w) >= 100000 ? 0 : 1) + ' kW' : fixed(w, 0) + ' W';
  }
  // Revenue models as `GET api/models` describes them: title, palette, and which
  // field holds the efficiency with its unit. Filled once by `load()`.
  const models = new Map();
  const modelOf = (w) => models.get(w.model) || {};
  function efficiencyOf(w) {
    const f = modelOf(w).efficiency_field;
    return f && isNum(w[f]) ? w[f] : null;
  }
  function fmtEfficiency(w) {
    const v = efficiencyOf(w);
    if (v === null) return noPowerText(w);
    const unit = modelOf(w).efficiency_unit;
    return fixed(v, v >= 10 || unit === 'J/TH' ? 1 : 2) + ' ' + unit + nominalText(w);
  }
  // An efficiency from estimated power is the spec sheet's figure, not a measurement.
  function nominalText(w) {
    return w.efficiency_basis === 'nominal' || w.efficiency_basis === 'partly nominal'
      ? ' (' + w.efficiency_basis + ')' : '';
  }
  // Devices without any power reading: never shown as an efficiency of 0.
  function noPowerText(w) {
    return modelOf(w).efficiency_field && w.no_power_devices > 0 && !(w.energy_j > 0) ? 'no power reading' : null;
  }
  const dateFmt = new Intl.DateTimeFormat('en-US', { month: 'short', day: 'numeric' });
  const timeFmt = new Intl.DateTimeFormat('en-US', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const secFmt = new Intl.DateTimeFormat('en-US', { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
  function fmtDateTime(t) { return dateFmt.format(t) + ', ' + timeFmt.format(t); }
  function fmtDuration(ms) {
    const h = ms / HOUR_MS;
    if (h >= 48 && Math.abs(h / 24 - Math.round(h / 24)) < 0.01) return Math.round(h / 24) + ' d';
    if (h >= 1) return fixed(h, Number.isInteger(Math.round(h * 10) / 10) ? 0 : 1) + ' h';
    return Math.round(ms / 60e3) + ' min';
  }
  const modelName = (w) => modelOf(w).title || w.model || '';
  const isMining = (w) => modelOf(w).family === 'mining';

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c) e.append(c);
    return e;
  }
  function swatch(color) { const s = el('span', { class: 'swatch', 'aria-hidden': 'true' }); s.style.background = color; return s; }
  function na(title) { return el('span', { class: 'na', title: title || 'not applicable', text: '—' }); }

  // ---- API ---------------------------------------------------------------------
  class AuthError extends Error {}
  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    let res;
    try {
      res = await fetch(path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new Error('The aggregator did not answer (' + e.message + '). Is it still running?');
    }
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(authMessage(token));
    }
    if (!res.ok) {
      let msg = '';
      try { msg = (await res.text()).slice(0, 300); } catch (_) { /* body unreadable */ }
      throw new Error(path.split('?')[0] + ' answered HTTP ' + res.status + (msg ? ': ' + msg : ''));
    }
    return res.json();
  }
  // Only the demo's page points at `wattledger demo`; a real aggregator prints its own URL.
  function authMessage(token) {
    const demo = !!(state.status && state.status.demo);
    if (token) {
      return 'The aggregator refused the token in this page\'s address. Open the URL that '
        + (demo ? '`wattledger demo`' : '`wattledger aggregator` or your operator') + ' printed.';
    }
    return 'This aggregator requires a token. Open the page as /?token=YOUR_TOKEN (the URL printed by '
      + (demo ? '`wattledger demo`' : '`wattledger aggregator` at start') + ' has one).';
  }

  // While the demo replays the past, the range and the fleet's status are not yet
  // meaningful: say how far the replay is instead.
  function replayText(status) {
    const r = status && status.replay;
    if (!r) return null;
    const span = Date.parse(r.to) - Date.parse(r.from);
    const what = Math.abs(span - PRESETS['24h']) < 60000 ? 'the last day' : 'the last ' + fmtDuration(span);
    return 'replaying ' + what + ': ' + Math.floor(r.fraction * 100) + ' %';
  }
  function renderReplay(status) {
    const text = replayText(status);
    document.querySelector('main').dataset.replaying = text ? 'true' : 'false';
    if (!text) return;
    // Follow the replay closely (it takes seconds), not at the normal refresh interval.
    clearTimeout(state.replayTimer);
    state.replayTimer = setTimeout(() => { if (!document.hidden) load(); }, 1000);
    $('range-text').textContent = text;
    $('fleet-counts').replaceChildren(el('div', { class: 'count replay', 'data-status': 'replay' },
      el('span', { text: text + ' — device status shows once the replay is done' })));
  }

  const q = (from, to) => 'from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to);

  // The server's clock decides what "the last 6 h" means (the demo runs simulated
  // time), so presets start from the `to` of the server's default range.
  async function fetchComparison() {
    if (state.range === 'custom') {
      const from = new Date(state.customFrom), to = new Date(state.customTo);
      if (!(from < to)) throw new Error('Custom range: "From" must be before "To".');
      return api('api/workloads?' + q(from.toISOString(), to.toISOString()));
    }
    const def = await api('api/workloads');
    if (state.range === '24h' && Date.parse(def.to) - Date.parse(def.from) === PRESETS['24h']) return def;
    const to = new Date(def.to);
    const from = new Date(to.getTime() - PRESETS[state.range]);
    return api('api/workloads?' + q(from.toISOString(), to.toISOString()));
  }

  async function load() {
    const seq = ++state.seq;
    setBusy(true);
    try {
      state.status = await api('api/status').catch(() => null);
      if (models.size === 0) {
        const m = await api('api/models');
        for (const d of m.models || []) models.set(d.name, d);
      }
      const cmp = await fetchComparison();
      const workloads = cmp.workloads || [];
      const [windows, fleet, prices] = await Promise.all([
        Promise.all(workloads.map((w) =>
          api('api/workloads/' + encodeURIComponent(w.workload) + '/windows?' + q(cmp.from, cmp.to))
            .catch((e) => ({ workload: w.workload, error: e })))),
        api('api/fleet').catch((e) => ({ error: e })),
        api('api/prices?' + q(cmp.from, cmp.to)).catch((e) => ({ error: e })),
      ]);
      renderAlerts(await api('api/alerts').catch((e) => ({ error: e })));
      if (seq !== state.seq) return;
      hideBanner();
      state.prices = prices;
      assignColors(workloads);
      renderRange(cmp);
      renderKpis(cmp);
      renderComparison(cmp);
      renderCsvLink(cmp);
      state.lastCharts = [cmp, windows];
      renderCharts(cmp, windows);
      renderShares(workloads);
      state.lastFleet = fleet;
      renderFleet(fleet);
      renderReplay(state.status);
      $('updated').textContent = '· updated ' + secFmt.format(new Date());
      const windowErr = windows.find((w) => w.error);
      if (windowErr) showBanner(windowErr.error.message);
    } catch (e) {
      if (seq !== state.seq) return;
      showBanner(e.message);
      if (e instanceof AuthError) stopTimer();
    } finally {
      if (seq === state.seq) setBusy(false);
    }
  }

  function setBusy(busy) {
    $('refresh').classList.toggle('spin', busy);
    document.querySelector('main').setAttribute('aria-busy', busy ? 'true' : 'false');
  }
  function showBanner(msg) { const b = $('banner'); b.textContent = msg; b.hidden = false; }
  function hideBanner() { $('banner').hidden = true; }

  function assignColors(workloads) {
    const names = workloads.map((w) => [w.workload, w]).sort((a, b) => a[0].localeCompare(b[0]));
    let warm = 0, cool = 0;
    for (const [name, model] of names) {
      if (state.colors.has(name)) continue;
      const used = new Set(state.colors.values());
      const pal = isMining(model) ? WARM : COOL;
      let i = isMining(model) ? warm++ : cool++;
      let c = pal[i % pal.length];
      for (let k = 0; used.has(c) && k < pal.length; k++) c = pal[(++i) % pal.length];
      state.colors.set(name, c);
    }
  }
  const colorOf = (name) => state.colors.get(name) || '#868e96';

  // ---- rendering -----------------------------------------------------------------
  function renderRange(cmp) {
    const from = new Date(cmp.from), to = new Date(cmp.to);
    $('range-text').textContent = fmtDateTime(from) + ' – ' + fmtDateTime(to) + ' (' + fmtDuration(to - from) + ')';
    const t = $('comparison');
    t.dataset.from = cmp.from;
    t.dataset.to = cmp.to;
    if (state.range !== 'custom') { state.customFrom = cmp.from; state.customTo = cmp.to; }
  }

  function sum(ws, key) { return ws.reduce((a, w) => a + (isNum(w[key]) ? w[key] : 0), 0); }

  function setKpi(id, text, cls, sub) {
    const v = $(id);
    v.textContent = text;
    v.className = 'kpi-value' + (cls ? ' ' + cls : '');
    $(id + '-sub').textContent = sub || '\u00a0';
  }

  function renderKpis(cmp) {
    const ws = cmp.workloads || [];
    const ranked = ws.filter((w) => isNum(w.revenue_usd_per_kwh));
    if (ranked.length) {
      const best = ranked[0];
      const worst = ranked[ranked.length - 1];
      let sub = best.workload;
      if (ranked.length > 1 && worst.revenue_usd_per_kwh > 0) {
        sub += ' · ' + fixed(best.revenue_usd_per_kwh / worst.revenue_usd_per_kwh, 1) + '× ' + worst.workload;
      }
      setKpi('kpi-best', fmtUsdPerKwh(best.revenue_usd_per_kwh) + '/kWh', '', sub);
    } else {
      setKpi('kpi-best', '–', '', 'no measured energy yet');
    }
    const revenue = sum(ws, 'revenue_usd'), cost = sum(ws, 'energy_cost_usd'), profit = sum(ws, 'profit_usd');
    const energy = sum(ws, 'energy_j'), facility = sum(ws, 'facility_energy_j');
    setKpi('kpi-revenue', fmtUsd(revenue), '', 'energy cost ' + fmtUsd(cost));
    setKpi('kpi-profit', fmtUsd(profit), profit < 0 ? 'neg' : 'pos',
      revenue > 0 ? 'margin ' + fmtPct(profit / revenue) : '\u00a0');
    const spanMs = Date.parse(cmp.to) - Date.parse(cmp.from);
    setKpi('kpi-energy', fmtEnergy(energy), '',
      'facility ' + fmtEnergy(facility) + (spanMs > 0 ? ' · avg ' + fmtPower(energy / (spanMs / 1000)) : ''));
  }

  function numCell(field, value, text, opts) {
    const td = el('td', { class: 'num', 'data-field': field, 'data-value': isNum(value) ? String(value) : '' });
    if (text === null || text === undefined) td.append(na(opts && opts.naTitle));
    else {
      if (opts && opts.bar !== undefined) {
        const bar = el('span', { class: 'cvbar', 'aria-hidden': 'true' });
        const fill = el('i');
        fill.style.width = Math.min(100, Math.max(2, opts.bar * 100)) + '%';
        bar.append(fill);
        td.append(bar);
      }
      td.append(el('span', { class: opts && opts.cls ? opts.cls : null, text }));
    }
    return td;
  }

  // Where the numbers came from: the agents' energy ledger, or raw samples where
  // an interval has no ledger point (as GET /api/workloads reports it).
  function renderSource(ws) {
    const parts = ws.filter((w) => isNum(w.ledger_share))
      .map((w) => w.workload + ' ' + fmtPct(w.ledger_share));
    $('cmp-source').textContent = parts.length
      ? 'Energy and revenue inputs from the agents\' energy ledger (share of covered device-time; the rest from raw samples): ' + parts.join(', ') + '.'
      : '';
  }

  // What measured each workload's energy ("62 % meter, 38 % estimated"), and the
  // group meters against the devices they feed (as GET /api/workloads reports them).
  function renderBasis(cmp) {
    const ws = cmp.workloads || [];
    const parts = ws.filter((w) => w.energy_basis && w.energy_j > 0).map((w) =>
      w.workload + ': ' + w.energy_basis + (w.facility_basis !== 'pue' ? ' (facility energy by site meter)' : '')
      + (w.no_power_devices > 0 ? ', ' + w.no_power_devices + ' device(s) with no power reading' : ''));
    $('cmp-basis').textContent = parts.length ? 'Energy measured by: ' + parts.join('; ') + '.' : '';
    const gaps = (cmp.reconciliation || []).map((r) => 'meter ' + r.group + ' at ' + r.site + ' '
      + fmtKwh(r.meter_energy_j / 3.6e6) + ' kWh vs devices ' + fmtKwh(r.devices_energy_j / 3.6e6) + ' kWh, gap '
      + fmtKwh(r.gap_kwh) + ' kWh' + (isNum(r.gap_pct) ? ' (' + fixed(r.gap_pct, 1) + ' %)' : ' (meter not covering the range)'));
    $('cmp-gap').textContent = gaps.length ? 'Reconciliation: ' + gaps.join('; ') + '.' : '';
  }

  function renderComparison(cmp) {
    const body = $('comparison').tBodies[0];
    const ws = cmp.workloads || [];
    renderSource(ws);
    renderBasis(cmp);
    body.replaceChildren();
    if (!ws.length) {
      body.append(el('tr', {}, el('td', { colspan: '11', class: 'empty',
        text: 'No workload has measurements in this range yet. Agents write to /api/v2/write; the comparison fills in as windows complete.' })));
      return;
    }
    const maxCv = Math.max(0.5, ...ws.map((w) => (isNum(w.volatility_cv) ? w.volatility_cv : 0)));
    ws.forEach((w, i) => {
      const tr = el('tr', { 'data-workload': w.workload, class: i === 0 && ws.length > 1 ? 'best' : null });
      tr.append(el('td', { class: 'rank', text: String(i + 1) }));
      const name = el('th', { scope: 'row' },
        el('div', { class: 'wl' }, swatch(colorOf(w.workload)),
          el('div', {}, w.workload, el('small', { text: modelName(w) }))));
      tr.append(name);
      const eff = efficiencyOf(w);
      tr.append(
        numCell('revenue_usd_per_kwh', w.revenue_usd_per_kwh, fmtUsdPerKwh(w.revenue_usd_per_kwh), { naTitle: 'no measured energy' }),
        numCell('profit_usd_per_kwh', w.profit_usd_per_kwh, fmtUsdPerKwh(w.profit_usd_per_kwh),
          { cls: isNum(w.profit_usd_per_kwh) && w.profit_usd_per_kwh < 0 ? 'neg' : null, naTitle: 'no measured energy' }),
        numCell('volatility_cv', w.volatility_cv, fmtPct(w.volatility_cv),
          { bar: isNum(w.volatility_cv) ? w.volatility_cv / maxCv : undefined, naTitle: 'needs two or more windows' }),
        numCell('break_even_usd_per_kwh', w.break_even_usd_per_kwh, fmtUsdPerKwh(w.break_even_usd_per_kwh)),
        numCell(eff !== null ? modelOf(w).efficiency_field : 'efficiency', eff, fmtEfficiency(w),
          { naTitle: 'not applicable to ' + modelName(w) }),
        numCell('coverage', w.coverage, fmtPct(w.coverage)),
        numCell('energy_j', w.energy_j, isNum(w.energy_j) ? fmtKwh(w.energy_j / 3.6e6) : null),
        numCell('revenue_usd', w.revenue_usd, fmtUsd(w.revenue_usd)),
        numCell('profit_usd', w.profit_usd, fmtUsd(w.profit_usd),
          { cls: isNum(w.profit_usd) && w.profit_usd < 0 ? 'neg' : null }),
      );
      body.append(tr);
    });
    // Devices whose workload tag no workload names: their energy, and the tags.
    const u = cmp.unassigned;
    if (u) {
      const tags = u.tags.map((t) => (t.workload || '(no tag)') + (t.close.length ? ' (did you mean ' + t.close.join(' or ') + '?)' : ''));
      const tr = el('tr', { 'data-workload': '', class: 'unassigned' });
      tr.append(el('td', { class: 'rank', text: '' }),
        el('th', { scope: 'row' }, el('div', {}, 'unassigned',
          el('small', { text: u.devices + (u.devices === 1 ? ' device: ' : ' devices: ') + tags.join(', ') }))),
        el('td', { colspan: '6', class: 'empty', text: 'in no workload: no revenue is computed' }),
        numCell('energy_j', u.energy_j, fmtKwh(u.energy_j / 3.6e6)),
        el('td', {}), el('td', {}));
      body.append(tr);
    }
  }

  function renderLegend(id, names) {
    const box = $(id);
    box.replaceChildren(...names.map((n) => el('span', {}, swatch(colorOf(n)), n)));
  }

  function renderCharts(cmp, windows) {
    const from = Date.parse(cmp.from), to = Date.parse(cmp.to);
    const rev = [], pow = [];
    for (const w of windows) {
      if (w.error || !Array.isArray(w.windows)) continue;
      const name = w.workload;
      const rows = w.windows.map((r) => ({ t: Date.parse(r.start), end: Date.parse(r.end), r }));
      const field = state.metric === 'profit' ? 'profit_usd_per_kwh' : 'revenue_usd_per_kwh';
      rev.push({ name, color: colorOf(name), pts: rows.map((x) => [x.t, x.end, x.r[field]]) });
      // A window without measurements is a gap, not 0 kW (as the revenue chart leaves it).
      pow.push({ name, color: colorOf(name), pts: rows.map((x) => [x.t, x.end, isNum(x.r.avg_power_w) && x.r.coverage > 0 ? x.r.avg_power_w / 1000 : null]) });
    }
    renderLegend('rev-legend', rev.map((s) => s.name));
    renderLegend('pow-legend', pow.map((s) => s.name));
    const profit = state.metric === 'profit';
    const vals = rev.flatMap((s) => s.pts.map((p) => p[2])).filter((v) => isNum(v) && v > 0);
    const autoLog = vals.length > 0 && Math.max(...vals) / Math.min(...vals) > 8;
    // Profit goes negative when energy costs more than a workload earns: no log scale.
    const log = !profit && (state.scale === 'log' || (state.scale === 'auto' && autoLog));
    for (const b of document.querySelectorAll('[data-metric]')) {
      b.addEventListener('click', () => { state.metric = b.dataset.metric; if (state.lastCharts) renderCharts(...state.lastCharts); });
    }
    for (const b of document.querySelectorAll('[data-scale]')) {
      b.setAttribute('aria-pressed', String((b.dataset.scale === 'log') === log));
      b.disabled = profit && b.dataset.scale === 'log';
    }
    for (const b of document.querySelectorAll('[data-metric]')) b.setAttribute('aria-pressed', String(b.dataset.metric === state.metric));
    const what = profit ? 'Profit' : 'Revenue';
    $('rev-title').textContent = what + ' per kWh over time';
    $('rev-desc').textContent = profit
      ? 'Revenue minus the cost of the facility energy, per kWh of IT energy, per window. Below zero the workload loses money at that hour\'s energy price.'
      : 'Per window, per workload. A volatile line means the same joule earns a different amount from hour to hour.';
    lineChart($('rev-chart'), rev, from, to, { log, zeroLine: profit, fmt: (v) => fmtUsdPerKwh(v) + '/kWh', overlay: renderOverlay(cmp),
      tick: (v, step) => (v < 0 ? '−$' : '$') + fixed(Math.abs(v), log ? decimalsFor(v) : decimalsFor(step)),
      title: what + ' per kWh over time' + (log ? ' (logarithmic scale)' : '') });
    lineChart($('pow-chart'), pow, from, to, { unit: 'kW', fmt: (v) => fixed(v, v >= 100 ? 0 : v >= 10 ? 1 : 2) + ' kW', tick: (v, step) => fixed(v, decimalsFor(step)) + ' kW', title: 'Average power over time', zeroBase: true });
  }

  function decimalsFor(step) { return step >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(step) - 1e-9)); }

  function niceStep(span, target) {
    const raw = span / Math.max(1, target);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  }
  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map((m) => m * 60e3);
  function timeTicks(from, to, target) {
    const step = TIME_STEPS.find((s) => (to - from) / s <= target) || TIME_STEPS[TIME_STEPS.length - 1];
    // Align to local midnight so labels fall on round local times.
    const d = new Date(from); d.setHours(0, 0, 0, 0);
    let t = d.getTime();
    while (t < from) t += step;
    const ticks = [];
    for (; t <= to; t += step) ticks.push(t);
    return { ticks, step };
  }
  function timeLabel(t, step, first) {
    const d = new Date(t);
    if (step >= 1440 * 60e3) return dateFmt.format(d);
    if (first || (d.getHours() === 0 && d.getMinutes() === 0)) return dateFmt.format(d) + ' ' + timeFmt.format(d);
    return timeFmt.format(d);
  }

  // A line chart of windows: one path per series, a gap where a window is missing.
  // Pointer or arrow keys move a crosshair that reads out every series.
  function lineChart(fig, series, from, to, opt) {
    fig.replaceChildren();
    const W = Math.max(280, fig.clientWidth || 600), H = Math.max(160, fig.clientHeight || 280);
    const narrow = W < 480;
    const overlays = (opt.overlay && opt.overlay.series || []).filter((o) => o.pts.some((p) => isNum(p[2])));
    const m = { l: narrow ? 52 : 64, r: overlays.length ? (narrow ? 52 : 64) : 12, t: 10, b: 26 };
    const iw = W - m.l - m.r, ih = H - m.t - m.b;
    const vals = [];
    for (const s of series) for (const p of s.pts) if (isNum(p[2])) vals.push(p[2]);
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', tabindex: '0',
      'aria-label': opt.title + (vals.length ? ', ' + series.length + ' workloads; use left and right arrow keys to read values' : ', no data') });
    fig.append(root);
    if (!vals.length || !(to > from)) {
      root.append(svg('text', { class: 'nodata', x: W / 2, y: H / 2, 'text-anchor': 'middle', text: 'No complete windows in this range yet' }));
      return;
    }
    const log = opt.log && vals.some((v) => v > 0);
    const plotted = log ? vals.filter((v) => v > 0) : vals;
    let lo = Math.min(...plotted), hi = Math.max(...plotted);
    const yTicks = [];
    let y;
    if (log) {
      // Decades split 1-2-5, so a $0.08 line and a $2.90 line both show their swings.
      let a = Math.floor(Math.log10(lo) + 1e-9), b = Math.ceil(Math.log10(hi) - 1e-9);
      if (a === b) { a -= 1; b += 1; }
      const cand = [];
      for (let e = a; e <= b; e++) for (const k of [1, 2, 5]) cand.push(k * Math.pow(10, e));
      lo = Math.max(...cand.filter((c) => c <= lo));
      hi = Math.min(...cand.filter((c) => c >= hi));
      for (const c of cand) if (c >= lo * 0.999 && c <= hi * 1.001) yTicks.push([c, c]);
      const l0 = Math.log10(lo), l1 = Math.log10(hi);
      y = (v) => m.t + ih - ((Math.log10(v) - l0) / (l1 - l0)) * ih;
    } else {
      if (opt.zeroBase || opt.zeroLine || lo > 0 && lo < hi * 0.35) lo = Math.min(0, lo);
      if (opt.zeroLine) hi = Math.max(0, hi);
      if (hi === lo) { hi = hi + (Math.abs(hi) || 1) * 0.1; lo = lo - (Math.abs(lo) || 1) * 0.1; }
      const pad = (hi - lo) * 0.06;
      if (lo !== 0) lo -= pad;
      hi += pad;
      const step = niceStep(hi - lo, narrow ? 4 : 5);
      lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
      for (let v = lo; v <= hi + step / 2; v += step) yTicks.push([Math.abs(v) < step / 1e6 ? 0 : v, step]);
      y = (v) => m.t + ih - ((v - lo) / (hi - lo)) * ih;
    }
    const ok = (v) => isNum(v) && (!log || v > 0);
    const x = (t) => m.l + ((t - from) / (to - from)) * iw;

    const grid = svg('g', { class: 'grid' }), axis = svg('g', { class: 'axis' });
    for (const [v, step] of yTicks) {
      const yy = y(v).toFixed(1);
      grid.append(svg('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy }));
      axis.append(svg('text', { x: m.l - 8, y: +yy + 4, 'text-anchor': 'end', text: opt.tick(v, step) }));
    }
    const tt = timeTicks(from, to, narrow ? 3 : Math.max(3, Math.floor(iw / 110)));
    tt.ticks.forEach((t, i) => {
      const xx = x(t).toFixed(1);
      grid.append(svg('line', { x1: xx, x2: xx, y1: m.t, y2: m.t + ih }));
      axis.append(svg('text', { x: xx, y: H - 6, 'text-anchor': i === 0 && x(t) - m.l < 30 ? 'start' : 'middle', text: timeLabel(t, tt.step, i === 0) }));
    });
    root.append(grid, axis);
    if (!log && lo < 0 && hi > 0) root.append(svg('line', { class: 'zero', x1: m.l, x2: W - m.r, y1: y(0), y2: y(0) }));

    // Points sit at the middle of their window.
    const mid = (p) => (p[0] + p[1]) / 2;
    const g = svg('g', { class: 'series' });
    for (const s of series) {
      let d = '', prevEnd = null, count = 0;
      const pts = s.pts.filter((p) => p[1] > from && p[0] < to);
      for (const p of pts) {
        if (!ok(p[2])) { prevEnd = null; continue; }
        const joined = prevEnd !== null && p[0] - prevEnd <= 1e3;
        d += (joined ? 'L' : 'M') + x(mid(p)).toFixed(1) + ' ' + y(p[2]).toFixed(1);
        prevEnd = p[1];
        count++;
      }
      if (!count) continue;
      const path = svg('path', { d, stroke: s.color, 'data-workload': s.name, 'data-points': String(count) });
      g.append(path);
      // Isolated windows would be invisible as paths, so mark every point when sparse.
      if (count <= 48) {
        for (const p of pts) if (ok(p[2])) g.append(svg('circle', { cx: x(mid(p)).toFixed(1), cy: y(p[2]).toFixed(1), r: 2.6, fill: s.color }));
      }
    }
    root.append(g);
    const overlayAt = overlays.length ? drawOverlay(root, overlays, opt.overlay, x, m, W, ih, from, to, narrow) : () => [];

    // Crosshair + tooltip.
    const times = [...new Set(series.flatMap((s) => s.pts.filter((p) => ok(p[2])).map(mid)))].sort((a, b) => a - b);
    const cross = svg('line', { class: 'cross', y1: m.t, y2: m.t + ih, visibility: 'hidden' });
    const dots = svg('g');
    root.append(cross, dots);
    const tip = el('div', { class: 'tip', hidden: 'hidden', role: 'status' });
    fig.append(tip);
    let idx = -1;
    function show(i) {
      if (i < 0 || i >= times.length) return;
      idx = i;
      const t = times[i];
      cross.setAttribute('x1', x(t)); cross.setAttribute('x2', x(t)); cross.setAttribute('visibility', 'visible');
      dots.replaceChildren();
      const start = series.map((s) => s.pts.find((p) => mid(p) === t)).find(Boolean);
      tip.replaceChildren(el('b', { text: start ? timeFmt.format(start[0]) + '–' + timeFmt.format(start[1]) + ', ' + dateFmt.format(start[0]) : fmtDateTime(t) }));
      for (const s of series) {
        const p = s.pts.find((pp) => mid(pp) === t);
        if (!p || !ok(p[2])) continue;
        dots.append(svg('circle', { cx: x(t), cy: y(p[2]), r: 4.5, fill: s.color, stroke: 'white', 'stroke-width': 1.5 }));
        tip.append(el('div', {}, el('span', {}, swatch(s.color), s.name), el('span', { text: opt.fmt(p[2]) })));
      }
      for (const [o, v] of overlayAt(t)) tip.append(el('div', { class: 'overlay-read' }, el('span', {}, swatch(o.color), o.name), el('span', { text: opt.overlay.fmt(v) })));
      tip.hidden = false;
      const px = (x(t) / W) * fig.clientWidth;
      const left = px + 14 + tip.offsetWidth > fig.clientWidth ? px - 14 - tip.offsetWidth : px + 14;
      tip.style.left = Math.max(0, left) + 'px';
      tip.style.top = '8px';
    }
    function hide() { idx = -1; tip.hidden = true; cross.setAttribute('visibility', 'hidden'); dots.replaceChildren(); }
    function nearest(t) {
      let best = 0;
      for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
      return best;
    }
    root.addEventListener('pointermove', (ev) => {
      const r = root.getBoundingClientRect();
      const px = ((ev.clientX - r.left) / r.width) * W;
      if (px < m.l || px > W - m.r) return hide();
      show(nearest(from + ((px - m.l) / iw) * (to - from)));
    });
    root.addEventListener('pointerleave', hide);
    root.addEventListener('blur', hide);
    root.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight') show(idx < 0 ? times.length - 1 : Math.min(times.length - 1, idx + 1));
      else if (ev.key === 'ArrowLeft') show(idx < 0 ? times.length - 1 : Math.max(0, idx - 1));
      else if (ev.key === 'Home') show(0);
      else if (ev.key === 'End') show(times.length - 1);
      else if (ev.key === 'Escape') hide();
      else return;
      ev.preventDefault();
    });
  }

  // A price drawn over a chart as a dashed step line on its own right-hand axis:
  // each point holds from its start to its end (a market snapshot until the next).
  // Returns a reader of the values in effect at a time, for the tooltip.
  function drawOverlay(root, overlays, ov, x, m, W, ih, from, to, narrow) {
    const vals = overlays.flatMap((o) => o.pts.map((p) => p[2]).filter(isNum));
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (hi === lo) { hi += (Math.abs(hi) || 1) * 0.1; lo -= (Math.abs(lo) || 1) * 0.1; }
    const pad = (hi - lo) * 0.08;
    lo = Math.max(0, lo - pad); hi += pad;
    const step = niceStep(hi - lo, narrow ? 4 : 5);
    lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
    const y = (v) => m.t + ih - ((v - lo) / (hi - lo)) * ih;
    const cx = (t) => x(Math.min(to, Math.max(from, t))).toFixed(1);
    const axis = svg('g', { class: 'axis overlay-axis' });
    for (let v = lo; v <= hi + step / 2; v += step) axis.append(svg('text', { x: W - m.r + 8, y: +y(v).toFixed(1) + 4, 'text-anchor': 'start', text: ov.tick(v, step) }));
    const g = svg('g', { class: 'overlay' });
    for (const o of overlays) {
      let d = '';
      for (const p of o.pts) {
        if (!isNum(p[2]) || p[1] <= from || p[0] >= to) continue;
        d += (d ? 'L' : 'M') + cx(p[0]) + ' ' + y(p[2]).toFixed(1) + 'L' + cx(p[1]) + ' ' + y(p[2]).toFixed(1);
      }
      if (d) g.append(svg('path', { d, stroke: o.color, 'data-overlay': o.name, 'data-steps': String(o.pts.length) }));
    }
    root.append(axis, g);
    return (t) => overlays.map((o) => [o, (o.pts.find((p) => p[0] <= t && t < p[1]) || [])[2]]).filter(([, v]) => isNum(v));
  }

  // Shares, not absolutes, so the two lists compare at a glance: a workload that
  // takes most of the energy but little of the revenue stands out.
  function renderShares(ws) {
    const rows = ws.filter((w) => isNum(w.energy_j)).slice().sort((a, b) => b.energy_j - a.energy_j);
    shareBars($('energy-bars'), rows, (w) => w.energy_j, 'No energy measured in this range yet.', (w, share) => [
      fmtEnergy(w.energy_j), fmtPct(share) + ' of IT' + (isNum(w.facility_energy_j) ? ' · ' + fmtEnergy(w.facility_energy_j) + ' facility' : '')]);
    shareBars($('revenue-bars'), rows, (w) => (isNum(w.revenue_usd) ? Math.max(0, w.revenue_usd) : 0), 'No revenue in this range yet.', (w, share) => [
      fmtUsd(w.revenue_usd) || '—', fmtPct(share) + ' of revenue' + (isNum(w.profit_usd) ? ' · profit ' + fmtUsd(w.profit_usd) : '')]);
  }
  function shareBars(box, rows, value, empty, label) {
    box.replaceChildren();
    const total = rows.reduce((a, w) => a + value(w), 0);
    if (!rows.length || !(total > 0)) { box.append(el('p', { class: 'muted', text: empty })); return; }
    for (const w of rows) {
      const share = value(w) / total;
      const [main, sub] = label(w, share);
      const track = el('div', { class: 'bar-track', role: 'img', 'aria-label': w.workload + ': ' + main + ', ' + sub });
      const bar = el('div', { class: 'bar-it' });
      bar.style.width = Math.max(share > 0 ? 0.5 : 0, share * 100) + '%';
      bar.style.background = colorOf(w.workload);
      track.append(bar);
      box.append(el('div', { class: 'bar-row', 'data-workload': w.workload },
        el('span', { class: 'name', title: w.workload, text: w.workload }),
        track,
        el('span', { class: 'val' }, main, el('small', { text: sub }))));
    }
  }

  const STATUS_ORDER = { lost: 0, stale: 1, offline: 2, online: 3 };
  const fmtVal = (v) => new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 }).format(v);
  // Firing first (the API sorts each list), then pending; calm when empty.
  function renderAlerts(a) {
    const body = $('alerts').tBodies[0];
    body.replaceChildren();
    $('alert-notes').replaceChildren(...((a && a.notes) || []).map((n) => el('li', { text: n })));
    if (!a || a.error) {
      body.append(el('tr', {}, el('td', { colspan: '6', class: 'empty', text: 'Alerts unavailable: ' + (a && a.error ? a.error.message : 'no answer') })));
      return;
    }
    const rows = (a.firing || []).concat(a.pending || []);
    if (!rows.length) {
      const text = a.enabled ? 'All calm: nothing firing or pending.' : 'Alerts are off in this aggregator ([alerts] enabled = false).';
      body.append(el('tr', {}, el('td', { colspan: '6', class: 'empty calm', text })));
      return;
    }
    for (const r of rows) {
      const subject = Object.entries(r.labels || {}).map(([k, v]) => k + '=' + v).join(' ');
      body.append(el('tr', { 'data-state': r.state, 'data-alertname': r.alertname },
        el('td', {}, el('span', { class: 'badge ' + r.state, text: r.state })),
        el('td', {}, el('b', { text: r.alertname }), el('br'), el('span', { class: 'muted', text: subject })),
        el('td', { text: fmtDateTime(new Date(r.since)) }),
        el('td', { class: 'num', text: fmtVal(r.value) + ' ' + r.unit }),
        el('td', { class: 'num', text: fmtVal(r.threshold) + ' ' + r.unit }),
        el('td', { text: r.summary })));
    }
  }

  function renderFleet(fleet) {
    const counts = $('fleet-counts');
    const body = $('fleet').tBodies[0];
    counts.replaceChildren();
    body.replaceChildren();
    if (!fleet || fleet.error) {
      body.append(el('tr', {}, el('td', { colspan: String(FLEET_COLS), class: 'empty', text: 'Fleet status unavailable: ' + (fleet && fleet.error ? fleet.error.message : 'no answer') })));
      return;
    }
    const devs = (fleet.devices || []).slice();
    const n = { online: 0, stale: 0, lost: 0, offline: 0 };
    let below = 0, miners = 0, rated = 0;
    for (const d of devs) {
      if (d.status in n) n[d.status]++;
      if (d.kind === 'asic') {
        miners++;
        if (isNum(d.nominal_j_per_th)) rated++;
        if (d.below_nominal) below++;
      }
    }
    const count = (cls, num, label) => el('div', { class: 'count ' + cls, 'data-status': cls }, el('b', { text: String(num) }), el('span', { text: label }));
    counts.append(
      count('online', n.online, 'online of ' + devs.length + ' devices'),
      count('stale', n.stale, 'stale (late reports)'),
      count('lost', n.lost, 'lost'),
    );
    if (n.offline) counts.append(count('offline', n.offline, 'offline'));
    const idle = devs.filter((d) => d.idle === true).length;
    if (devs.some((d) => d.idle !== null && d.idle !== undefined)) counts.append(count('idle', idle, 'idle GPUs (power but no work)'));
    renderIdleRule(fleet.idle_rule);
    if (rated > 0) counts.append(count('below', below, 'of ' + rated + ' rated miners below nominal J/TH'));
    // Miners whose model has no nominal figure are neither below nor at nominal: say so.
    if (rated > 0 && miners > rated) counts.append(count('unrated', miners - rated, 'unrated (no nominal J/TH for the model)'));
    else if (miners > 0) counts.append(count('below unknown', '–', 'no nominal J/TH known for the ' + miners + ' miners'));
    // The nominal column only when some device has a nominal value.
    $('fleet').classList.toggle('no-nominal', rated === 0);
    if (!devs.length) {
      body.append(el('tr', {}, el('td', { colspan: String(FLEET_COLS), class: 'empty', text: 'No device has reported yet.' })));
      return;
    }
    devs.sort((a, b) => (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9)
      || (b.below_nominal === true) - (a.below_nominal === true)
      || String(a.workload).localeCompare(String(b.workload))
      || String(a.host).localeCompare(String(b.host))
      || String(a.device).localeCompare(String(b.device), undefined, { numeric: true }));
    const shown = state.fleetAll ? devs : devs.slice(0, FLEET_ROWS);
    for (const d of shown) {
      const eff = isNum(d.j_per_th)
        ? el('span', { class: d.below_nominal ? 'flag' : null, title: d.below_nominal ? 'worse than nominal' : null },
          (d.below_nominal ? '▲ ' : '') + fixed(d.j_per_th, 1) + ' J/TH',
          d.below_nominal ? el('span', { class: 'sr-only', text: ' (below nominal efficiency)' }) : null)
        : null;
      const seen = d.last_seen ? new Date(d.last_seen) : null;
      // GPUs and miners have a history; an inference server's energy is its GPUs'.
      const drillable = d.kind === 'gpu' || d.kind === 'asic';
      const open = drillable
        ? el('button', { type: 'button', class: 'linkish id', title: 'History of ' + d.device, text: shortDevice(d) })
        : el('span', { class: 'id', text: shortDevice(d) });
      if (drillable) open.addEventListener('click', () => openDevice(d));
      const row = el('tr', { 'data-status': d.status, class: drillable ? 'clickable' : null },
        el('td', {}, el('span', { class: 'pill ' + d.status, text: d.status })),
        el('th', { scope: 'row', class: 'dev', title: String(d.device) }, open,
          el('small', { text: (d.kind === 'asic' ? 'miner' : d.kind === 'gpu' ? 'GPU' : d.kind === 'inference' ? 'inference server' : d.kind) + (d.host ? ' · ' + d.host : '') })),
        el('td', {}, swatch(colorOf(d.workload)), ' ', d.workload || ''),
        el('td', { text: d.model || '' }),
        numCellPlain(isNum(d.power_w) ? fixed(d.power_w, 0) + ' W' : null),
        numCellPlain(eff),
        numCellPlain(isNum(d.nominal_j_per_th) ? fixed(d.nominal_j_per_th, 1) + ' J/TH' : null, 'nominal'),
        ...readingCells(d, fleet.idle_rule),
        poolCell(d),
        el('td', { text: seen ? fmtDateTime(seen) + ':' + String(seen.getSeconds()).padStart(2, '0') : '—' }),
      );
      row.dataset.device = d.device;
      if (d.idle !== null && d.idle !== undefined) row.dataset.idle = String(d.idle);
      if (drillable) row.addEventListener('click', (ev) => { if (!ev.target.closest('button')) openDevice(d); });
      body.append(row);
    }
    if (devs.length > FLEET_ROWS) {
      const btn = el('button', { type: 'button', class: 'primary', text: state.fleetAll ? 'Show problems and first ' + FLEET_ROWS : 'Show all ' + devs.length + ' devices' });
      btn.addEventListener('click', () => { state.fleetAll = !state.fleetAll; renderFleet(state.lastFleet); });
      body.append(el('tr', {}, el('td', { colspan: String(FLEET_COLS), class: 'empty' }, btn)));
    }
  }
  // The fleet table's latest readings: hashrate, temperature, fans, GPU utilisation
  // (with the idle flag), uptime and a miner's pool; "—" where the device does not report one.
  const FLEET_COLS = 14;
  // The pool's host and port (the scheme and worker are in the title), flagged when the
  // miner says the pool is down. The agent ships no credentials, so none can show here.
  function poolCell(d) {
    const td = el('td', { class: 'pool', 'data-field': 'pool_url', 'data-value': d.pool_url || '' });
    if (!d.pool_url) { td.append(na(d.kind === 'asic' ? 'not reported' : 'not applicable')); return td; }
    const host = String(d.pool_url).replace(/^[a-z0-9+.-]+:\/\//i, '');
    td.title = d.pool_url + (d.pool_user ? '\nworker ' + d.pool_user : '')
      + (d.pool_alive === true ? '\nup' : d.pool_alive === false ? '\ndown' : '');
    td.append(el('span', { text: host }));
    if (d.pool_user) td.append(el('small', { text: d.pool_user }));
    if (d.pool_alive === false) td.append(el('span', { class: 'flag', text: ' down' }));
    return td;
  }
  function fmtUptime(s) {
    if (s >= 86400) return fixed(s / 86400, s >= 864000 ? 0 : 1) + ' d';
    if (s >= 3600) return fixed(s / 3600, 1) + ' h';
    return Math.round(s / 60) + ' min';
  }
  function readingCells(d, rule) {
    const cell = (field, text, content) => {
      const td = el('td', { class: 'num', 'data-field': field, 'data-value': isNum(d[field]) ? String(d[field]) : '' });
      td.append(isNum(d[field]) ? content || text : na('not reported'));
      return td;
    };
    const util = isNum(d.util_gpu_pct) ? el('span', {}, fixed(d.util_gpu_pct, 0) + ' %',
      d.idle ? el('span', { class: 'flag idle', title: rule ? 'over ' + fixed(rule.power_above_w, 0) + ' W at under ' + fixed(rule.util_below_pct, 0) + ' % utilisation' : 'idle', text: ' idle' }) : null) : null;
    return [
      cell('hashrate_ths', isNum(d.hashrate_ths) ? fixed(d.hashrate_ths, d.hashrate_ths >= 100 ? 0 : 1) + ' TH/s' : null),
      cell('temp_c', isNum(d.temp_c) ? fixed(d.temp_c, 0) + ' °C' : null),
      cell('fan_rpm', isNum(d.fan_rpm) ? fixed(d.fan_rpm, 0) + ' rpm' : null),
      cell('util_gpu_pct', null, util),
      cell('uptime_s', isNum(d.uptime_s) ? fmtUptime(d.uptime_s) : null),
    ];
  }
  function renderIdleRule(rule) {
    $('idle-rule').textContent = rule
      ? 'A GPU is flagged idle when it draws over ' + fixed(rule.power_above_w, 0) + ' W at under ' + fixed(rule.util_below_pct, 0)
        + ' % utilisation in its latest reading (the gpu_idle_burn alert\'s thresholds). Click a device for its history.'
      : '';
  }
  function renderCsvLink(cmp) {
    $('csv-link').setAttribute('href', 'api/workloads.csv?' + q(cmp.from, cmp.to));
  }

  // Device ids carry their host (`host/id`), shown on the line below; GPU UUIDs are
  // long, so the middle is elided (the full id is in the title).
  function shortDevice(d) {
    let id = String(d.device);
    if (d.host && id.startsWith(d.host + '/')) id = id.slice(d.host.length + 1);
    if (/^GPU-[0-9a-f-]{20,}$/i.test(id)) id = id.slice(0, 12) + '…' + id.slice(-4);
    return id;
  }
  function numCellPlain(content, cls) {
    const td = el('td', { class: 'num' + (cls ? ' ' + cls : '') });
    td.append(content === null ? na() : content);
    return td;
  }

  // ---- price overlay on the revenue chart -------------------------------------------
  // From GET api/prices: the market snapshots the revenue used and each site's tariff.
  const OVERLAYS = {
    btc_usd: { label: 'BTC price', fmt: (v) => '$' + fixed(v, 0) + '/BTC',
      tick: (v) => '$' + (v >= 1000 ? fixed(v / 1000, v >= 1e5 ? 0 : 1) + 'k' : fixed(v, 0)) },
    hashprice: { label: 'Hashprice', fmt: (v) => '$' + fixed(v, 2) + '/PH/s/day', tick: (v, step) => '$' + fixed(v, decimalsFor(step)) },
    tariff: { label: 'Tariff', fmt: (v) => '$' + fixed(v, 3) + '/kWh', tick: (v, step) => '$' + fixed(v, decimalsFor(step) + 1) },
  };
  const OVERLAY_COLORS = ['#495057', '#868e96', '#343a40'];
  function overlaySeries(prices, which) {
    const end = Date.parse(prices.to);
    if (which === 'tariff') {
      return prices.tariffs.map((t, i) => ({ name: 'tariff ' + t.site, color: OVERLAY_COLORS[i % OVERLAY_COLORS.length],
        pts: t.steps.map((st) => [Date.parse(st.start), Date.parse(st.end), st.usd_per_kwh]) }));
    }
    const field = which === 'btc_usd' ? 'btc_usd' : 'hashprice_usd_per_phs_day';
    const m = prices.market;
    return [{ name: OVERLAYS[which].label, color: OVERLAY_COLORS[0],
      pts: m.map((p, i) => [Date.parse(p.time), i + 1 < m.length ? Date.parse(m[i + 1].time) : end, p[field]]) }];
  }
  // The chosen overlay for lineChart (or null), and a line under the chart saying
  // where its figures come from.
  function renderOverlay() {
    const which = $('overlay').value;
    const note = $('overlay-note');
    const prices = state.prices;
    note.textContent = '';
    if (!which) return null;
    if (!prices || prices.error) {
      note.textContent = 'Prices unavailable: ' + (prices && prices.error ? prices.error.message : 'no answer');
      return null;
    }
    const o = OVERLAYS[which];
    const series = overlaySeries(prices, which);
    if (which === 'tariff') {
      const warn = prices.tariffs.filter((t) => t.warning).map((t) => t.site + ': ' + t.warning);
      const avg = prices.tariffs.some((t) => t.averaged) ? ' Many price changes: each step is a time-weighted mean.' : '';
      note.textContent = 'Dashed: each site\'s energy tariff, right-hand axis in $/kWh.' + avg + (warn.length ? ' ' + warn.join('; ') : '');
    } else if (prices.market_source === 'none') {
      note.textContent = 'No workload here uses market data, so there is no ' + o.label.toLowerCase() + ' to draw.';
    } else {
      const src = prices.market_source === 'static' ? 'the configured [market] values' : prices.market.length + ' stored market snapshots';
      note.textContent = 'Dashed: ' + o.label.toLowerCase() + ' from ' + src + ', right-hand axis'
        + (which === 'btc_usd' ? ' in $/BTC.' : ' in $ per PH/s per day.');
    }
    return { series, fmt: o.fmt, tick: o.tick };
  }

  // ---- device drill-down ------------------------------------------------------------
  // GET api/devices/history over the page's range: power, efficiency and revenue.
  async function openDevice(d) {
    const dlg = $('drill');
    const cmp = state.lastCharts && state.lastCharts[0];
    if (!cmp) return;
    $('drill-title').textContent = shortDevice(d);
    $('drill-sub').textContent = [d.kind === 'asic' ? 'miner' : d.kind === 'gpu' ? 'GPU' : d.kind, d.host, d.workload, d.model].filter(Boolean).join(' · ');
    $('drill-summary').textContent = 'Loading…';
    $('drill-notes').replaceChildren();
    for (const id of ['drill-power', 'drill-eff', 'drill-rev']) $(id).replaceChildren();
    dlg.dataset.device = d.device;
    dlg.dataset.loaded = 'false';
    if (!dlg.open) dlg.showModal();
    let h;
    try {
      h = await api('api/devices/history?device=' + encodeURIComponent(d.device) + '&' + q(cmp.from, cmp.to));
    } catch (e) {
      $('drill-summary').textContent = e.message;
      dlg.dataset.loaded = 'error';
      return;
    }
    if (dlg.dataset.device !== d.device) return;
    renderDevice(h);
    dlg.dataset.loaded = 'true';
  }
  function renderDevice(h) {
    const from = Date.parse(h.from), to = Date.parse(h.to);
    const pts = (field, scale) => h.points.map((p) => [Date.parse(p.start), Date.parse(p.end), isNum(p[field]) ? p[field] * (scale || 1) : null]);
    const color = colorOf(h.workload);
    const one = (name, field, scale) => [{ name, color, pts: pts(field, scale) }];
    const energy = h.points.reduce((a, p) => a + (isNum(p.energy_j) ? p.energy_j : 0), 0);
    const revenue = h.points.reduce((a, p) => a + (isNum(p.revenue_usd) ? p.revenue_usd : 0), 0);
    const bucket = fmtDuration(h.bucket_s * 1000);
    $('drill-summary').textContent = fmtDuration(to - from) + ' in ' + bucket + ' buckets · '
      + (h.revenue === 'no_workload' ? 'power measured' : fmtEnergy(energy) + ' measured')
      + (h.revenue === 'per_device' ? ' · earned ' + fmtUsd(revenue) : '')
      + (h.power_basis ? ' · power: ' + h.power_basis : '');
    $('drill-notes').replaceChildren(...h.notes.map((n) => el('li', { text: n })));
    lineChart($('drill-power'), one('power', 'power_w', 1), from, to, { fmt: fmtPower, tick: (v, step) => fixed(v, decimalsFor(step)) + ' W',
      title: 'Power of ' + h.device, zeroBase: true });
    const asic = h.kind === 'asic';
    $('drill-eff-title').textContent = asic ? 'Efficiency (J/TH, lower is better)' : 'Power per utilisation point (W per %)';
    lineChart($('drill-eff'), one(asic ? 'J/TH' : 'W per %', asic ? 'j_per_th' : 'w_per_util_pct'), from, to, {
      fmt: (v) => fixed(v, 1) + (asic ? ' J/TH' : ' W/%'), tick: (v, step) => fixed(v, decimalsFor(step)),
      title: (asic ? 'J/TH' : 'Watts per utilisation point') + ' of ' + h.device });
    const revBox = $('drill-rev');
    if (h.revenue === 'per_device') {
      lineChart(revBox, one('revenue', 'revenue_usd'), from, to, { fmt: (v) => fmtUsd(v) + ' per ' + bucket,
        tick: (v, step) => '$' + fixed(v, decimalsFor(step)), title: 'Revenue of ' + h.device + ' per ' + bucket, zeroBase: true });
    } else {
      revBox.replaceChildren(el('p', { class: 'muted nodata-text', text: h.revenue === 'workload_only'
        ? 'No per-device revenue: this workload is paid on counters no single device measures (see the note above). Energy and efficiency are measured.'
        : 'No revenue: the device is in no configured workload.' }));
    }
  }

  // ---- CSV export --------------------------------------------------------------------
  // The API needs the token in a header, which a plain link cannot send: fetch the
  // file and hand it to the browser as a download.
  async function downloadCsv(ev) {
    ev.preventDefault();
    const t = $('comparison').dataset;
    const url = 'api/workloads.csv' + (t.from ? '?' + q(t.from, t.to) : '');
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      const res = await fetch(url, { headers, cache: 'no-store' });
      if (!res.ok) throw new Error('api/workloads.csv answered HTTP ' + res.status + ': ' + (await res.text()).slice(0, 300));
      const name = (/filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '') || [])[1] || 'wattledger-workloads.csv';
      const href = URL.createObjectURL(await res.blob());
      const a = el('a', { href, download: name, hidden: 'hidden' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 60e3);
    } catch (e) {
      showBanner(e.message);
    }
  }

  // ---- range selector --------------------------------------------------------------
  function toLocalInput(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
  }
  function syncControls() {
    for (const b of document.querySelectorAll('[data-range]')) b.setAttribute('aria-pressed', String(b.dataset.range === state.range));
    const custom = state.range === 'custom';
    $('custom-range').hidden = !custom;
    document.querySelector('[data-range="custom"]').setAttribute('aria-expanded', String(custom));
    const u = new URL(location.href);
    u.searchParams.set('range', state.range);
    if (custom) { u.searchParams.set('from', state.customFrom || ''); u.searchParams.set('to', state.customTo || ''); }
    else { u.searchParams.delete('from'); u.searchParams.delete('to'); }
    history.replaceState(null, '', u);
  }
  function startTimer() {
    stopTimer();
    if (state.range !== 'custom') state.timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
  }
  function stopTimer() { if (state.timer) clearInterval(state.timer); state.timer = null; }

  function setRange(range) {
    state.range = range;
    if (range === 'custom') {
      $('from').value = toLocalInput(state.customFrom);
      $('to').value = toLocalInput(state.customTo);
      syncControls();
      stopTimer();
      $('from').focus();
      return;
    }
    syncControls();
    startTimer();
    load();
  }

  function init() {
    for (const b of document.querySelectorAll('[data-range]')) b.addEventListener('click', () => setRange(b.dataset.range));
    $('range-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const f = new Date($('from').value), t = new Date($('to').value);
      if (isNaN(f) || isNaN(t) || !(f < t)) { showBanner('Choose a "From" time before the "To" time.'); return; }
      state.customFrom = f.toISOString();
      state.customTo = t.toISOString();
      syncControls();
      load();
    });
    $('refresh').addEventListener('click', () => load());
    $('csv-link').addEventListener('click', downloadCsv);
    $('overlay').addEventListener('change', () => { if (state.lastCharts) renderCharts(...state.lastCharts); });
    $('drill-close').addEventListener('click', () => $('drill').close());
    for (const b of document.querySelectorAll('[data-scale]')) {
      b.addEventListener('click', () => { state.scale = b.dataset.scale; if (state.lastCharts) renderCharts(...state.lastCharts); });
    }
    document.addEventListener('visibilitychange', () => { if (!document.hidden && state.range !== 'custom') load(); });
    let resizeTimer = null;
    window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (state.lastCharts) renderCharts(...state.lastCharts); }, 200); });
    if (state.range === 'custom') {
      $('from').value = toLocalInput(state.customFrom);
      $('to').value = toLocalInput(state.customTo);
    }
    syncControls();
    startTimer();
    load();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
