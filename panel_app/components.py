"""Browser-side pieces the pages need beyond Panel's widgets: the Labeler's paint grid and the alarm beep.

Both are `JSComponent`s with plain ES modules (no imports, nothing fetched).  They only collect clicks
and keys; the server decides what is stored (see `HydraStore.apply_labels`).  Text is set with
`textContent`, never as HTML.
"""

from __future__ import annotations

from typing import ClassVar

import param
from panel.custom import JSComponent

LABELER_CSS = """
:host { display: block; width: 100%; }
.bar { position: sticky; top: 0; z-index: 20; background: #fff; padding: 4px 0 6px; border-bottom: 1px solid #d0d7de;
  margin-bottom: 8px; }
.palette { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 4px; align-items: center; }
.palette button { border: 2px solid transparent; border-radius: 16px; padding: 4px 12px; cursor: pointer;
  background: #f1f3f6; font: inherit; display: inline-flex; gap: 6px; align-items: center; }
.palette button.active { border-color: #1f2d3d; background: #fff; box-shadow: 0 0 0 2px #1f6feb55; }
.palette .swatch { width: 14px; height: 14px; border-radius: 3px; display: inline-block; border: 1px solid #0003; }
.palette .key { font-size: 0.75em; color: #5b6878; }
.actions { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.actions button { border: 1px solid #d0d7de; border-radius: 6px; padding: 5px 12px; cursor: pointer; font: inherit;
  background: #f6f8fa; }
.actions button.apply { background: #1f6feb; color: #fff; border-color: #1f6feb; font-weight: 600; }
.actions .note { color: #1a7f37; font-size: 0.95em; margin-left: 6px; font-weight: 600; }
.actions .note.danger { color: #b42318; } .actions .note.warning { color: #9a6700; } .actions .note.info { color: #1f2d3d; }
.keys { color: #5b6878; font-size: 0.8em; margin-top: 4px; }
.keys kbd { border: 1px solid #d0d7de; border-radius: 3px; padding: 0 4px; background: #f6f8fa; font-size: 0.95em; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--tile, 180px), 1fr)); gap: 8px; }
.tile { position: relative; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 4px;
  cursor: pointer; user-select: none; outline-offset: -1px; scroll-margin-top: 150px; scroll-margin-bottom: 20px; }
.tile:hover { border-color: #1f6feb; }
.tile img { width: 100%; display: block; border-radius: 3px; pointer-events: none; min-height: 60px;
  background: #f6f8fa; }
.tile .cap { font-size: 0.75em; color: #333; margin-top: 3px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.tile .now { font-size: 0.72em; color: #5b6878; }
.tile .tag { position: absolute; top: 8px; left: 8px; padding: 2px 8px; border-radius: 10px; color: #fff;
  font-size: 0.8em; font-weight: 600; display: none; text-shadow: 0 0 2px #0008; }
.tile.painted .tag { display: block; }
.tile.anchor { box-shadow: 0 0 0 2px #1f6feb; }
.tile.cursor { box-shadow: 0 0 0 3px #bf8700; }
.zoom { position: fixed; inset: 0; z-index: 1000; background: #000c; display: none; align-items: center;
  justify-content: center; flex-direction: column; gap: 8px; color: #fff; }
.zoom.open { display: flex; }
.zoom .pics { display: flex; gap: 12px; align-items: flex-start; justify-content: center; max-width: 96vw; }
.zoom figure { margin: 0; text-align: center; }
.zoom img { max-width: 46vw; max-height: 80vh; background: #fff; border-radius: 4px; }
.zoom .solo img { max-width: 92vw; }
.zoom figcaption, .zoom .ztext { font-size: 0.9em; }
"""

KEY_HELP = [  # (keys, what they do): shown on the page under the palette
    ("1-9", "pick a label"), ("Shift+1-9", "paint every unpainted image with that label"),
    ("A", "paint all with the picked label"), ("arrows", "move"), ("Space", "paint (Shift: a range)"),
    ("Z", "zoom (with GradCAM)"), ("Esc", "close zoom"), ("Enter", "Apply"), ("U", "undo the last Apply"),
]


class LabelerGrid(JSComponent):
    """Images to paint with the mouse or the keyboard alone (KEY_HELP), a zoom, and a toolbar that stays on
    screen while the page scrolls.  Apply and Undo only bump a counter: the page stores, the server checks."""

    images = param.List(default=[], doc="[{id, src, large, gradcam (url or null), caption, detail}] in page order")
    palette = param.List(default=[], doc="[{id (label id, null = erase), name, colour}]")
    selected = param.Integer(default=0, doc="Index of the palette entry that paints")
    painted = param.Dict(default={}, doc="image id (str) -> label id or None (erase)")
    tile_width = param.Integer(default=180)
    apply_requests = param.Integer(default=0, doc="Bumped by the Apply button or Enter")
    undo_requests = param.Integer(default=0, doc="Bumped by the Undo button or U")
    note = param.String(default="", doc="Last result, shown in the toolbar (plain text)")
    note_kind = param.String(default="success", doc="success | info | warning | danger: the note's colour")
    key_help = param.List(default=[list(k) for k in KEY_HELP])

    _stylesheets: ClassVar[list[str]] = [LABELER_CSS]

    _esm = """
export function render({ model, el }) {
  const root = document.createElement('div');
  const top = document.createElement('div'); top.className = 'bar';
  const bar = document.createElement('div'); bar.className = 'palette';
  const actions = document.createElement('div'); actions.className = 'actions';
  const keys = document.createElement('div'); keys.className = 'keys';
  const grid = document.createElement('div'); grid.className = 'tiles';
  const zoom = document.createElement('div'); zoom.className = 'zoom';
  top.append(bar, actions, keys);
  root.append(top, grid, zoom);
  let tiles = [];
  let anchor = null;
  let cursor = -1;
  let hovered = -1;
  let zoomed = -1;

  const entry = () => model.palette[model.selected] || null;
  const named = (id) => model.palette.find((p) => p.id === id) || null;

  function paint(ids, e) {
    e = e || entry();
    if (!e) { return; }
    const next = Object.assign({}, model.painted);
    for (const id of ids) { next[String(id)] = e.id; }
    model.painted = next;
  }

  function paintRest(i) {  // every image not painted yet gets palette entry i
    const e = model.palette[i];
    if (!e) { return; }
    model.selected = i;
    paint(model.images.map((im) => im.id).filter((id) => !Object.prototype.hasOwnProperty.call(model.painted, String(id))), e);
  }

  function button(text, cls, title, onClick) {
    const b = document.createElement('button');
    b.type = 'button'; b.className = cls; b.textContent = text; b.title = title;
    b.addEventListener('click', onClick);
    return b;
  }

  function drawPalette() {
    bar.replaceChildren();
    model.palette.forEach((p, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'paint' + (i === model.selected ? ' active' : '');
      b.dataset.index = String(i);
      const sw = document.createElement('span'); sw.className = 'swatch';
      sw.style.background = p.id === null ? 'repeating-linear-gradient(45deg,#fff,#fff 3px,#bbb 3px,#bbb 6px)' : p.colour;
      const name = document.createElement('span'); name.textContent = p.name;
      const key = document.createElement('span'); key.className = 'key';
      key.textContent = i < 9 ? String(i + 1) : '';
      b.append(sw, name, key);
      b.addEventListener('click', () => { model.selected = i; });
      bar.append(b);
    });
  }

  function drawActions() {
    const note = document.createElement('span'); note.className = 'note ' + model.note_kind; note.textContent = model.note;
    actions.replaceChildren(
      button('Paint the rest', 'rest', 'Paint every image not painted yet with the picked label (Shift+1-9)',
             () => paintRest(model.selected)),
      button('Apply', 'apply', 'Store the painted labels (Enter)', () => { model.apply_requests += 1; }),
      button('Undo', 'undo', 'Put back the labels the last Apply replaced (U)', () => { model.undo_requests += 1; }),
      note);
    keys.replaceChildren();
    keys.append('Keys: ');
    model.key_help.forEach(([k, what], i) => {
      const kbd = document.createElement('kbd'); kbd.textContent = k;
      keys.append(kbd, ' ' + what + (i + 1 < model.key_help.length ? ' · ' : ''));
    });
  }

  function styleTile(tile, im) {
    const key = String(im.id);
    const has = Object.prototype.hasOwnProperty.call(model.painted, key);
    tile.classList.toggle('painted', has);
    const tag = tile.querySelector('.tag');
    if (has) {
      const p = named(model.painted[key]);
      const colour = p && p.id !== null ? p.colour : '#555';
      tile.style.outline = '4px solid ' + colour;
      tag.style.background = colour;
      tag.textContent = p ? p.name : 'erase';
    } else {
      tile.style.outline = '';
      tag.textContent = '';
    }
  }

  function moveTo(i) {
    if (!tiles.length) { return; }
    i = Math.max(0, Math.min(tiles.length - 1, i));
    if (cursor >= 0 && tiles[cursor]) { tiles[cursor].classList.remove('cursor'); }
    cursor = i;
    tiles[i].classList.add('cursor');
    tiles[i].scrollIntoView({ block: 'nearest' });
    if (zoomed >= 0) { openZoom(i); }
  }

  function paintAt(i, range) {
    let ids = [model.images[i].id];
    if (range && anchor !== null) {
      const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
      ids = model.images.slice(a, b + 1).map((x) => x.id);
    }
    if (anchor !== null && tiles[anchor]) { tiles[anchor].classList.remove('anchor'); }
    anchor = i;
    tiles[i].classList.add('anchor');
    paint(ids);
  }

  function figure(src, text, solo) {
    const f = document.createElement('figure');
    if (solo) { f.className = 'solo'; }
    const img = document.createElement('img'); img.src = src; img.alt = text;
    const cap = document.createElement('figcaption'); cap.textContent = text;
    f.append(img, cap);
    return f;
  }

  function openZoom(i) {
    const im = model.images[i];
    if (!im) { return; }
    zoomed = i;
    const pics = document.createElement('div'); pics.className = 'pics';
    pics.append(figure(im.large || im.src, 'image', !im.gradcam && !im.reference));
    if (im.gradcam) { pics.append(figure(im.gradcam, 'GradCAM', false)); }
    if (im.reference) { pics.append(figure(im.reference, 'reference', false)); }
    const text = document.createElement('div'); text.className = 'ztext';
    const p = Object.prototype.hasOwnProperty.call(model.painted, String(im.id)) ? named(model.painted[String(im.id)]) : null;
    text.textContent = (im.caption || '') + ' · ' + (im.detail || '') + (p ? ' · painted: ' + p.name : '') +
      '  (Z or Esc closes, arrows move, Space paints)';
    zoom.replaceChildren(pics, text);
    zoom.classList.add('open');
    zoom.dataset.id = String(im.id);
  }

  function closeZoom() { zoomed = -1; zoom.classList.remove('open'); zoom.replaceChildren(); }
  zoom.addEventListener('click', closeZoom);

  function drawGrid() {
    grid.style.setProperty('--tile', model.tile_width + 'px');
    grid.replaceChildren();
    anchor = null;
    cursor = -1;
    hovered = -1;
    closeZoom();
    tiles = model.images.map((im, i) => {
      const tile = document.createElement('div');
      tile.className = 'tile';
      tile.dataset.id = String(im.id);
      tile.dataset.index = String(i);
      tile.dataset.gradcam = im.gradcam ? '1' : '';
      tile.title = 'click paints, shift-click a range, Z zooms';
      const img = document.createElement('img');
      img.src = im.src; img.alt = im.caption || ''; img.loading = 'lazy'; img.draggable = false;
      const tag = document.createElement('div'); tag.className = 'tag';
      const cap = document.createElement('div'); cap.className = 'cap'; cap.textContent = im.caption || '';
      const now = document.createElement('div'); now.className = 'now'; now.textContent = im.detail || '';
      tile.append(img, tag, cap, now);
      tile.addEventListener('click', (ev) => {
        if (cursor >= 0 && tiles[cursor]) { tiles[cursor].classList.remove('cursor'); }
        cursor = i; tile.classList.add('cursor');
        paintAt(i, ev.shiftKey);
      });
      tile.addEventListener('mouseenter', () => { hovered = i; });
      tile.addEventListener('mouseleave', () => { if (hovered === i) { hovered = -1; } });
      grid.append(tile);
      return tile;
    });
    restyle();
  }

  function restyle() { model.images.forEach((im, i) => tiles[i] && styleTile(tiles[i], im)); }

  function columns() {
    const cols = getComputedStyle(grid).gridTemplateColumns.split(' ').filter((c) => c).length;
    return Math.max(1, cols);
  }

  function onKey(ev) {
    const target = ev.composedPath ? ev.composedPath()[0] : ev.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : '';
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if ((ev.key === 'Enter' || ev.key === ' ') && tag === 'button') { return; }  // the focused button's own click
    const digit = /^Digit([1-9])$/.exec(ev.code || '');
    if (digit && ev.shiftKey) {
      paintRest(Number(digit[1]) - 1); ev.preventDefault(); return;
    }
    if (ev.key >= '1' && ev.key <= '9') {
      const i = Number(ev.key) - 1;
      if (i < model.palette.length) { model.selected = i; ev.preventDefault(); }
      return;
    }
    const here = cursor < 0 ? 0 : cursor;
    switch (ev.key) {
      case 'ArrowRight': moveTo(cursor < 0 ? 0 : cursor + 1); break;
      case 'ArrowLeft': moveTo(cursor < 0 ? 0 : cursor - 1); break;
      case 'ArrowDown': moveTo(cursor < 0 ? 0 : cursor + columns()); break;
      case 'ArrowUp': moveTo(cursor < 0 ? 0 : cursor - columns()); break;
      case ' ': if (tiles.length) { if (cursor < 0) { moveTo(0); } paintAt(here, ev.shiftKey); if (zoomed >= 0) { openZoom(cursor); } } break;
      case 'Enter': model.apply_requests += 1; break;
      case 'Escape': if (zoomed < 0) { return; } closeZoom(); break;
      case 'a': case 'A': paint(model.images.map((im) => im.id)); break;
      case 'u': case 'U': model.undo_requests += 1; break;
      case 'z': case 'Z':
        if (zoomed >= 0) { closeZoom(); } else if (hovered >= 0) { openZoom(hovered); } else if (tiles.length) { moveTo(here); openZoom(here); }
        break;
      default: return;
    }
    ev.preventDefault();
  }
  document.addEventListener('keydown', onKey);
  model.on('remove', () => document.removeEventListener('keydown', onKey));

  model.on('palette', () => { drawPalette(); restyle(); });
  model.on('selected', drawPalette);
  model.on('images', drawGrid);
  model.on('tile_width', drawGrid);
  model.on('painted', restyle);
  model.on('note', drawActions);
  drawPalette();
  drawActions();
  drawGrid();
  return root;
}
"""


class AlarmSound(JSComponent):
    """Beeps (WebAudio, nothing fetched) each time `beeps` grows, unless `muted`."""

    beeps = param.Integer(default=0)
    muted = param.Boolean(default=False)

    _esm = """
export function render({ model }) {
  let ctx = null;
  const span = document.createElement('span');
  span.className = 'alarm-sound';
  span.dataset.beeps = String(model.beeps);
  function beep() {
    span.dataset.beeps = String(model.beeps);
    if (model.muted) { return; }
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      ctx = ctx || new Ctx();
      if (ctx.resume) { ctx.resume(); }
      const t0 = ctx.currentTime + 0.02;
      for (let k = 0; k < 3; k++) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = 'square';
        osc.frequency.value = k === 1 ? 660 : 880;
        gain.gain.value = 0.12;
        osc.connect(gain); gain.connect(ctx.destination);
        osc.start(t0 + k * 0.28); osc.stop(t0 + k * 0.28 + 0.18);
      }
    } catch (err) { console.warn('alarm sound unavailable', err); }
  }
  // a click anywhere unlocks audio (browsers block sound until the page had a user gesture)
  document.addEventListener('pointerdown', () => {
    try { const Ctx = window.AudioContext || window.webkitAudioContext; ctx = ctx || new Ctx(); ctx.resume(); }
    catch (err) { /* no audio on this machine */ }
  }, { once: true });
  model.on('beeps', beep);
  return span;
}
"""
