
(function () {
  'use strict';
  var root = document.documentElement;
  var errors = [];
  function problem(message) {
    errors.push(String(message));
    root.setAttribute('data-errors', errors.join(' | '));
  }
  // Errors of scripts and of resources (capture: resource errors do not bubble).
  window.addEventListener('error', function (e) {
    var where = e.target && e.target !== window && e.target.tagName ? ' <' + e.target.tagName + '>' : '';
    problem('error' + where + ': ' + (e.message || e.type));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { problem('unhandled rejection: ' + e.reason); });
  document.addEventListener('securitypolicyviolation', function (e) {
    problem('blocked by the content security policy: ' + e.violatedDirective + ' ' + e.blockedURI);
  });
  var consoleError = console.error;
  console.error = function () {
    problem('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return consoleError.apply(console, arguments);
  };

  var SVG = 'http://www.w3.org/2000/svg';
  var LABELS = { t: 'teacher', s: 'student', h: 'shared', b: 'boosted', c: 'common', u: 'unscored' };
  var BEHAVIOURS = { e: 'execution', r: 'reflection', x: 'transition', '-': 'special token (no behaviour)' };
  var ROLES = [['p_T', 'teacher', '--teacher'], ['p_S', 'student', '--student'], ['p_D', 'distilled', '--distilled']];
  var style = getComputedStyle(root);
  function colour(name) { return style.getPropertyValue(name).trim(); }

  var data = JSON.parse(document.getElementById('whence-data').textContent);
  var all = data.trajectories;
  var cards = document.getElementById('cards');
  var info = document.getElementById('info');
  var state = { page: 0, size: 10, query: '', correct: 'all', has: '', pinned: null };
  var shown = all;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function prob(v) { return v < 0 ? null : v / 10000; }
  function fmt(v) { return v === null ? '–' : v.toFixed(4); }
  function correctness(c) { return c === true ? 'correct' : c === false ? 'incorrect' : 'correctness unknown'; }

  function filter() {
    var q = state.query.toLowerCase();
    shown = all.filter(function (t) {
      if (q && t.id.toLowerCase().indexOf(q) < 0) return false;
      if (state.correct === 'correct' && t.c !== true) return false;
      if (state.correct === 'incorrect' && t.c !== false) return false;
      if (state.correct === 'unknown' && t.c !== null) return false;
      if (state.has && t.l.indexOf(state.has) < 0) return false;
      return true;
    });
    var pages = Math.max(1, Math.ceil(shown.length / state.size));
    if (state.page >= pages) state.page = pages - 1;
  }

  function showInfo(t, j, pin) {
    if (state.pinned && !pin) return;
    while (info.firstChild) info.removeChild(info.firstChild);
    var head = el('div');
    head.appendChild(el('b', null, t.id));
    head.appendChild(document.createTextNode(' · action ' + j + ' · ' + LABELS[t.l[j]] + ' · ' + BEHAVIOURS[t.b[j]]));
    info.appendChild(head);
    var table = el('table');
    var hr = el('tr');
    ['', 'teacher', 'student', 'distilled'].forEach(function (h) { hr.appendChild(el('th', null, h)); });
    table.appendChild(hr);
    var pr = el('tr'); pr.appendChild(el('th', null, 'probability'));
    var kr = el('tr'); kr.appendChild(el('th', null, 'tokens'));
    for (var r = 0; r < 3; r++) {
      pr.appendChild(el('td', null, fmt(prob(t.p[3 * j + r]))));
      var k = t.k[3 * j + r];
      kr.appendChild(el('td', null, k < 0 ? '–' : String(k)));
    }
    table.appendChild(pr); table.appendChild(kr);
    info.appendChild(table);
    var pt = prob(t.p[3 * j]), ps = prob(t.p[3 * j + 1]), pd = prob(t.p[3 * j + 2]);
    if (pt !== null && ps !== null && pd !== null) {
      info.appendChild(el('div', null, 'p_T − p_S ' + (pt - ps).toFixed(4) + ' · p_T − p_D ' + (pt - pd).toFixed(4) + ' · p_S − p_D ' + (ps - pd).toFixed(4)));
    }
    info.appendChild(el('div', 't', t.x[j]));
    if (pin) info.appendChild(el('div', 'empty', 'pinned; click the action again to release'));
    info.hidden = false;
  }

  function select(card, t, j, pin) {
    if (pin) {
      var same = state.pinned && state.pinned.t === t && state.pinned.j === j;
      var old = document.querySelectorAll('.sel');
      for (var i = 0; i < old.length; i++) old[i].classList.remove('sel');
      state.pinned = null;
      if (same) { info.hidden = true; return; }
      var span = card.querySelector('.a[data-j="' + j + '"]');
      var band = card.querySelector('rect.band[data-j="' + j + '"]');
      if (span) span.classList.add('sel');
      if (band) band.classList.add('sel');
      showInfo(t, j, true);
      state.pinned = { t: t, j: j };
    } else {
      showInfo(t, j, false);
    }
  }

  function niceStep(n) {
    var raw = n / 8, p = Math.pow(10, Math.floor(Math.log(Math.max(raw, 1)) / Math.LN10));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= raw) return Math.max(1, steps[i] * p);
    return Math.max(1, 10 * p);
  }

  // p_T, p_S, p_D against action index over label bands (paper Fig. 2).
  function plot(card, t) {
    var n = t.l.length, W = 960, H = 250, L = 46, R = 10, T = 10, B = 36;
    var w = (W - L - R) / Math.max(n, 1), h = H - T - B;
    var s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'traj', role: 'img' });
    s.appendChild(svg('title', {})).textContent = 'action probabilities of ' + t.id;
    for (var j = 0; j < n; j++) {
      var band = svg('rect', { x: L + j * w, y: T, width: Math.max(w, 0.5), height: h, class: 'band', 'data-j': j,
        fill: colour('--' + LABELS[t.l[j]]), 'fill-opacity': 0.3 });
      s.appendChild(band);
    }
    for (var g = 0; g <= 5; g++) {
      var y = T + h - g * h / 5;
      s.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, stroke: '#e4e4e4', 'pointer-events': 'none' }));
      var label = svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 11 });
      label.textContent = (g / 5).toFixed(1);
      s.appendChild(label);
    }
    var step = niceStep(n);
    for (var x = 0; x < n; x += step) {
      var cx = L + (x + 0.5) * w;
      s.appendChild(svg('line', { x1: cx, x2: cx, y1: T + h, y2: T + h + 4, stroke: '#222' }));
      var tick = svg('text', { x: cx, y: T + h + 16, 'text-anchor': 'middle', 'font-size': 11 });
      tick.textContent = String(x);
      s.appendChild(tick);
    }
    var xl = svg('text', { x: L + (W - L - R) / 2, y: H - 3, 'text-anchor': 'middle', 'font-size': 12 });
    xl.textContent = 'action index';
    s.appendChild(xl);
    var yl = svg('text', { x: 12, y: T + h / 2, 'text-anchor': 'middle', 'font-size': 12, transform: 'rotate(-90 12 ' + (T + h / 2) + ')' });
    yl.textContent = 'probability';
    s.appendChild(yl);
    s.appendChild(svg('rect', { x: L, y: T, width: W - L - R, height: h, fill: 'none', stroke: '#222', 'pointer-events': 'none' }));
    for (var r = 0; r < 3; r++) {
      var points = [];
      var flush = function () {
        if (points.length > 1) s.appendChild(svg('polyline', { points: points.join(' '), fill: 'none', stroke: colour(ROLES[r][2]), 'stroke-width': 1.8, 'pointer-events': 'none' }));
        if (points.length === 1) {
          var xy = points[0].split(',');
          s.appendChild(svg('circle', { cx: xy[0], cy: xy[1], r: 2.5, fill: colour(ROLES[r][2]), 'pointer-events': 'none' }));
        }
        points = [];
      };
      for (var k = 0; k < n; k++) {
        var v = prob(t.p[3 * k + r]);
        if (v === null) { flush(); continue; }
        points.push((L + (k + 0.5) * w).toFixed(1) + ',' + (T + h - v * h).toFixed(1));
      }
      flush();
    }
    s.addEventListener('mouseover', function (e) {
      var j = e.target.getAttribute && e.target.getAttribute('data-j');
      if (j !== null && j !== undefined) select(card, t, +j, false);
    });
    s.addEventListener('click', function (e) {
      var j = e.target.getAttribute && e.target.getAttribute('data-j');
      if (j !== null && j !== undefined) select(card, t, +j, true);
    });
    return s;
  }

  function text(card, t) {
    var box = el('div', 'text');
    var special = {};
    (t.sp || []).forEach(function (i) { special[i] = true; });
    for (var j = 0; j < t.x.length; j++) {
      var span = el('span', 'a L-' + t.l[j] + (special[j] ? ' sp' : ''), t.x[j]);
      span.setAttribute('data-j', j);
      box.appendChild(span);
    }
    box.addEventListener('mouseover', function (e) {
      var j = e.target.getAttribute && e.target.getAttribute('data-j');
      if (j !== null && j !== undefined) select(card, t, +j, false);
    });
    box.addEventListener('click', function (e) {
      var j = e.target.getAttribute && e.target.getAttribute('data-j');
      if (j !== null && j !== undefined) select(card, t, +j, true);
    });
    return box;
  }

  function counts(t) {
    var c = { t: 0, s: 0, h: 0, b: 0, c: 0, u: 0 };
    for (var i = 0; i < t.l.length; i++) c[t.l[i]]++;
    return ['t', 's', 'h', 'b', 'u'].filter(function (k) { return c[k] > 0; })
      .map(function (k) { return LABELS[k] + ' ' + c[k]; }).join(' · ');
  }

  function render() {
    state.pinned = null;
    info.hidden = true;
    while (cards.firstChild) cards.removeChild(cards.firstChild);
    var pages = Math.max(1, Math.ceil(shown.length / state.size));
    document.getElementById('pageinfo').textContent =
      'page ' + (state.page + 1) + ' of ' + pages + ' (' + shown.length + ' of ' + all.length + ' trajectories)';
    var slice = shown.slice(state.page * state.size, (state.page + 1) * state.size);
    if (!slice.length) cards.appendChild(el('p', 'empty', 'No trajectory matches.'));
    slice.forEach(function (t) {
      var card = el('div', 'card');
      card.setAttribute('data-id', t.id);
      card.appendChild(el('h3', null, t.id));
      card.appendChild(el('div', 'meta', correctness(t.c) + ' · ' + t.l.length + ' actions · ' + counts(t)));
      card.appendChild(plot(card, t));
      card.appendChild(text(card, t));
      cards.appendChild(card);
    });
  }

  if (cards) {
    var update = function () { state.page = 0; filter(); render(); };
    document.getElementById('q').addEventListener('input', function (e) { state.query = e.target.value; update(); });
    document.getElementById('correct').addEventListener('change', function (e) { state.correct = e.target.value; update(); });
    document.getElementById('has').addEventListener('change', function (e) { state.has = e.target.value; update(); });
    document.getElementById('prev').addEventListener('click', function () { if (state.page > 0) { state.page--; render(); } });
    document.getElementById('next').addEventListener('click', function () {
      if ((state.page + 1) * state.size < shown.length) { state.page++; render(); }
    });
    var boxes = document.querySelectorAll('input[data-label]');
    for (var i = 0; i < boxes.length; i++) {
      boxes[i].addEventListener('change', function (e) {
        cards.classList.toggle('hide-' + e.target.getAttribute('data-label'), !e.target.checked);
      });
    }
    filter();
    render();
  }
  root.setAttribute('data-ready-ms', String(Math.round(performance.now())));
  root.setAttribute('data-ready', 'ok');
  // Milliseconds from navigation start to the load event (everything parsed, laid out and the browser ready).
  window.addEventListener('load', function () {
    setTimeout(function () { root.setAttribute('data-load-ms', String(Math.round(performance.now()))); }, 0);
  });
})();
