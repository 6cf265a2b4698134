// The operations page: one admin WebSocket, a snapshot every two seconds, drawn on a
// plain canvas (hexagons and points; no map tiles, nothing from the internet).
//
// The admin token is the first message on the socket, never part of its URL (URLs end
// up in proxy and access logs). A token given in the page's address as a fragment
// (/ops#token=..., as `npm run demo` prints it: browsers never send the fragment) is moved
// into sessionStorage (gone when the tab closes) and taken out of the address bar at once.
// One given the old way, in the query (?token=), has already been sent and logged: it is
// taken out of the address bar too, and not used.
(() => {
  const TOKEN_KEY = 'opsToken';
  const STALE_MS = 8_000;
  const RETRY_MS = 2_000;

  const fragment = new URLSearchParams(location.hash.slice(1));
  const params = new URLSearchParams(location.search);
  if (fragment.has('token') || params.has('token')) {
    const given = fragment.get('token');
    if (given) sessionStorage.setItem(TOKEN_KEY, given);
    fragment.delete('token');
    params.delete('token');
    const [query, hash] = [params.toString(), fragment.toString()];
    history.replaceState(history.state, '', `${location.pathname}${query ? `?${query}` : ''}${hash ? `#${hash}` : ''}`);
  }
  // Earlier versions of this page kept the token in localStorage, which outlives the tab: drop it.
  try { localStorage.removeItem(TOKEN_KEY); } catch { /* storage disabled */ }

  const $ = (id) => document.getElementById(id);
  const status = $('status');
  const login = $('login');
  const canvas = $('map');
  const ctx = canvas.getContext('2d');

  const DRIVER_COLORS = { available: '#4caf50', offered: '#ffd54f', assigned: '#42a5f5', on_trip: '#e040fb' };
  // Surge buckets, shared by the cells and the legend: a sequential scale from "no surge" to the cap.
  const SURGE = [
    { from: 1, label: '×1.0', color: '#1e2935' },
    { from: 1.25, label: '×1.25', color: '#3f3a2c' },
    { from: 1.5, label: '×1.5', color: '#6b5226' },
    { from: 2, label: '×2.0', color: '#a8691d' },
    { from: 2.5, label: '×2.5+', color: '#e58a1f' }, // up to SURGE_CAP (3 by default)
  ];
  const surgeBucket = (surge) => SURGE.reduce((found, b) => (surge >= b.from ? b : found), SURGE[0]);
  // One calm colour per node (none of them red); red is kept for shards no node owns.
  const NODE_COLORS = ['#4e79a7', '#59a89c', '#8f7fc2', '#9c755f', '#76a34f', '#b3a24a', '#6b8fb3', '#a1789b', '#5f8a8b', '#8c8c6c'];
  const UNOWNED = '#c62828';

  function setStatus(state, text, title = '') {
    status.dataset.state = state;
    status.textContent = text;
    status.title = title;
  }

  // The surge legend is drawn from the same buckets as the cells.
  document.querySelector('#surge-scale .scale').replaceChildren(...SURGE.map((b) => {
    const step = document.createElement('span');
    step.className = 'step';
    const swatch = document.createElement('span');
    swatch.className = 'swatch';
    swatch.style.background = b.color;
    step.append(swatch, b.label);
    return step;
  }));

  // Map projection: equirectangular around the middle latitude, one scale for both axes (hexagons stay hexagons).
  let view = { k: 1, cx: 0, cy: 0, scale: 1 };
  function fit(points) {
    if (points.length === 0) return;
    let [s, n, w, e] = [90, -90, 180, -180];
    for (const [lat, lng] of points) { s = Math.min(s, lat); n = Math.max(n, lat); w = Math.min(w, lng); e = Math.max(e, lng); }
    const k = Math.cos((((s + n) / 2) * Math.PI) / 180);
    const width = Math.max((e - w) * k, 0.005);
    const height = Math.max(n - s, 0.005);
    const scale = Math.min(canvas.width / width, canvas.height / height) * 0.92;
    view = { k, cx: ((w + e) / 2) * k, cy: (s + n) / 2, scale };
  }
  const xy = (lat, lng) => [canvas.width / 2 + (lng * view.k - view.cx) * view.scale, canvas.height / 2 - (lat - view.cy) * view.scale];

  function draw(snap) {
    // The view fits the city this node serves (its drivers and cells); pickups outside it are not drawn.
    fit([...snap.drivers.map((d) => [d.lat, d.lng]), ...snap.cells.flatMap((c) => c.boundary)]);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 1;
    for (const c of snap.cells) {
      ctx.beginPath();
      let [sx, sy] = [0, 0];
      c.boundary.forEach(([lat, lng], i) => {
        const [x, y] = xy(lat, lng);
        sx += x; sy += y;
        if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      });
      ctx.closePath();
      ctx.fillStyle = surgeBucket(c.surge).color;
      ctx.fill();
      ctx.strokeStyle = '#34445a';
      ctx.stroke();
      if (c.surge >= SURGE[1].from && c.boundary.length) {
        ctx.fillStyle = 'rgba(255, 255, 255, 0.85)';
        ctx.font = '600 12px system-ui, sans-serif';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        ctx.fillText(`×${c.surge.toFixed(2)}`, sx / c.boundary.length, sy / c.boundary.length);
      }
    }
    // Pickups: a white diamond; hollow for a booking made for later.
    for (const b of snap.bookings) {
      const [x, y] = xy(b.pickup.lat, b.pickup.lng);
      if (x < 0 || y < 0 || x > canvas.width || y > canvas.height) continue;
      ctx.save(); ctx.translate(x, y); ctx.rotate(Math.PI / 4);
      if (b.status === 'scheduled') {
        ctx.lineWidth = 1.5; ctx.strokeStyle = '#c8d2dc'; ctx.strokeRect(-3.5, -3.5, 7, 7);
      } else {
        ctx.lineWidth = 1; ctx.fillStyle = '#ffffff'; ctx.strokeStyle = '#0b0f14';
        ctx.fillRect(-4, -4, 8, 8); ctx.strokeRect(-4, -4, 8, 8);
      }
      ctx.restore();
    }
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = '#0b0f14';
    for (const d of snap.drivers) {
      const [x, y] = xy(d.lat, d.lng);
      ctx.beginPath(); ctx.arc(x, y, 4.5, 0, 2 * Math.PI);
      ctx.fillStyle = DRIVER_COLORS[d.status] || '#9e9e9e'; ctx.fill(); ctx.stroke();
    }
  }

  function renderShards(snap) {
    const nodes = [...snap.cluster.nodes].sort();
    const colorOf = (node) => (nodes.includes(node) ? NODE_COLORS[nodes.indexOf(node) % NODE_COLORS.length] : UNOWNED);
    const count = new Map();
    $('shards').replaceChildren(...snap.cluster.shards.map((s) => {
      const owned = nodes.includes(s.node);
      const key = owned ? s.node : '';
      count.set(key, (count.get(key) ?? 0) + 1);
      const div = document.createElement('div');
      div.textContent = s.shard;
      div.title = owned ? `shard ${s.shard} · ${s.node}` : `shard ${s.shard} · no live owner`;
      div.dataset.node = key;
      div.className = owned ? (s.node === snap.node ? 'mine' : '') : 'unowned';
      div.style.background = colorOf(s.node);
      return div;
    }));
    const entry = (color, text, cls) => {
      const item = document.createElement('span');
      item.className = `item ${cls}`;
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = color;
      item.append(swatch, text);
      return item;
    };
    const items = nodes.map((n) => {
      const item = entry(colorOf(n), `${n}${n === snap.node ? ' (this node)' : ''} · ${count.get(n) ?? 0} shards`, 'node');
      item.dataset.node = n;
      return item;
    });
    if (count.get('')) items.push(entry(UNOWNED, `unowned · ${count.get('')} shards`, 'unowned'));
    $('shard-legend').replaceChildren(...items);
  }

  function render(snap) {
    $('node').textContent = `node ${snap.node} · ${new Date(snap.at).toLocaleTimeString()}`;
    for (const [k, v] of Object.entries(snap.counters)) { const el = $(`c-${k}`); if (el) el.textContent = v; }
    $('c-cells').textContent = snap.cells.length;
    $('bookings-count').textContent = `(${snap.bookings.length})`;
    $('bookings').tBodies[0].replaceChildren(...snap.bookings.map((b) => {
      const tr = document.createElement('tr');
      tr.dataset.booking = b.id; tr.dataset.status = b.status;
      for (const text of [b.id.slice(0, 14), b.status, b.driverId || '']) { const td = document.createElement('td'); td.textContent = text; tr.append(td); }
      tr.title = b.id;
      return tr;
    }));
    renderShards(snap);
    canvas.dataset.drivers = snap.drivers.length;
    canvas.dataset.cells = snap.cells.length;
    draw(snap);
  }

  let lastFrameAt = 0;
  let socket;
  setInterval(() => {
    if (status.dataset.state === 'live' && Date.now() - lastFrameAt > STALE_MS) {
      setStatus('stale', 'stale', `no snapshot for ${Math.round((Date.now() - lastFrameAt) / 1000)} s`);
    }
  }, 1_000);

  function askForToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    setStatus('error', message);
    login.hidden = false;
    $('token-input').focus();
  }

  login.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token-input').value = '';
    login.hidden = true;
    connect();
  });

  function connect() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { askForToken('admin token needed'); return; }
    if (status.dataset.state !== 'disconnected') setStatus('connecting', 'connecting…');
    let refused = false;
    const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/v1/ws`);
    socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'auth', token, ref: 'auth' }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'ack' && m.ref === 'auth') ws.send(JSON.stringify({ type: 'ops.subscribe', ref: 'ops' }));
      else if (m.type === 'ops.snapshot') {
        lastFrameAt = Date.now();
        render(m);
        setStatus('live', 'live', `last snapshot ${new Date(m.at).toLocaleTimeString()}`);
      } else if (m.type === 'error' && (m.ref === 'auth' || m.code === 'unauthenticated')) {
        refused = true; askForToken('token refused'); ws.close();
      } else if (m.type === 'error' && m.ref === 'ops') {
        refused = true; askForToken(m.code === 'forbidden' ? 'not an admin token' : m.message); ws.close();
      }
    };
    ws.onclose = (e) => {
      if (socket !== ws) return;
      if (refused) return;
      if (e.code === 4401) { askForToken('token refused'); return; }
      setStatus('disconnected', 'disconnected', `retrying every ${RETRY_MS / 1000} s`);
      setTimeout(connect, RETRY_MS);
    };
  }
  connect();
})();
