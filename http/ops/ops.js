// The operations page: one admin WebSocket, a snapshot every two seconds, drawn on a
// plain canvas (hexagons and points; no map tiles, nothing from the internet).
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get('token') || localStorage.getItem('opsToken') || prompt('admin token');
  if (token) localStorage.setItem('opsToken', token);
  const status = document.getElementById('status');
  const canvas = document.getElementById('map');
  const ctx = canvas.getContext('2d');
  const COLORS = { available: '#4caf50', offered: '#ffc107', assigned: '#2196f3', on_trip: '#e040fb' };
  const nodeColor = (name, nodes) => `hsl(${(nodes.indexOf(name) * 137) % 360} 55% 35%)`;
  let view;

  function fit(points) {
    if (points.length === 0) return view;
    let [s, n, w, e] = [90, -90, 180, -180];
    for (const [lat, lng] of points) { s = Math.min(s, lat); n = Math.max(n, lat); w = Math.min(w, lng); e = Math.max(e, lng); }
    const pad = 0.1;
    return { s: s - (n - s) * pad, n: n + (n - s) * pad, w: w - (e - w) * pad, e: e + (e - w) * pad };
  }
  const xy = (lat, lng) => [((lng - view.w) / (view.e - view.w || 1)) * canvas.width, ((view.n - lat) / (view.n - view.s || 1)) * canvas.height];

  function draw(snap) {
    // The view fits the city this node serves (its drivers and cells); pickups outside it are not drawn.
    const pts = [...snap.drivers.map((d) => [d.lat, d.lng]), ...snap.cells.flatMap((c) => c.boundary)];
    view = fit(pts) || { s: 0, n: 1, w: 0, e: 1 };
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (const c of snap.cells) {
      const heat = Math.min(1, (c.surge - 1) / 2);
      ctx.beginPath();
      c.boundary.forEach(([lat, lng], i) => { const [x, y] = xy(lat, lng); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.closePath();
      ctx.fillStyle = `rgba(${Math.round(60 + 195 * heat)}, ${Math.round(80 - 40 * heat)}, 60, ${0.15 + 0.45 * heat})`;
      ctx.fill();
      ctx.strokeStyle = '#2e3b4e';
      ctx.stroke();
    }
    for (const b of snap.bookings) {
      const [x, y] = xy(b.pickup.lat, b.pickup.lng);
      if (x < 0 || y < 0 || x > canvas.width || y > canvas.height) continue;
      ctx.fillStyle = '#fff';
      ctx.save(); ctx.translate(x, y); ctx.rotate(Math.PI / 4); ctx.fillRect(-4, -4, 8, 8); ctx.restore();
    }
    for (const d of snap.drivers) {
      const [x, y] = xy(d.lat, d.lng);
      ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI);
      ctx.fillStyle = COLORS[d.status] || '#888'; ctx.fill();
    }
  }

  function render(snap) {
    document.getElementById('node').textContent = `node ${snap.node} · ${new Date(snap.at).toLocaleTimeString()}`;
    for (const [k, v] of Object.entries(snap.counters)) { const el = document.getElementById(`c-${k}`); if (el) el.textContent = v; }
    document.getElementById('c-cells').textContent = snap.cells.length;
    const tbody = document.querySelector('#bookings tbody');
    tbody.replaceChildren(...snap.bookings.slice(0, 40).map((b) => {
      const tr = document.createElement('tr');
      tr.dataset.booking = b.id; tr.dataset.status = b.status;
      for (const text of [b.id.slice(0, 14), b.status, b.driverId || '']) { const td = document.createElement('td'); td.textContent = text; tr.append(td); }
      return tr;
    }));
    const shards = document.getElementById('shards');
    shards.replaceChildren(...snap.cluster.shards.map((s) => {
      const div = document.createElement('div');
      div.textContent = s.shard; div.title = s.node; div.style.background = nodeColor(s.node, snap.cluster.nodes);
      return div;
    }));
    canvas.dataset.drivers = snap.drivers.length;
    canvas.dataset.cells = snap.cells.length;
    draw(snap);
  }

  function connect() {
    const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/v1/ws?token=${encodeURIComponent(token)}`);
    ws.onopen = () => { ws.send(JSON.stringify({ type: 'ops.subscribe' })); status.textContent = 'live'; status.dataset.state = 'live'; };
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === 'ops.snapshot') render(m);
      if (m.type === 'error') { status.textContent = m.message; status.dataset.state = 'error'; }
    };
    ws.onclose = () => { status.textContent = 'reconnecting…'; status.dataset.state = 'connecting'; setTimeout(connect, 2000); };
  }
  connect();
})();
