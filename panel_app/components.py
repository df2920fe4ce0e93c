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
.palette { display: flex; flex-wrap: wrap; gap: 6px; margin: 4px 0 10px; align-items: center; }
.palette button { border: 2px solid transparent; border-radius: 16px; padding: 4px 12px; cursor: pointer;
  background: #f1f3f6; font: inherit; display: inline-flex; gap: 6px; align-items: center; }
.palette button.active { border-color: #1f2d3d; background: #fff; box-shadow: 0 0 0 2px #1f6feb55; }
.palette .swatch { width: 14px; height: 14px; border-radius: 3px; display: inline-block; border: 1px solid #0003; }
.palette .key { font-size: 0.75em; color: #5b6878; }
.hint { color: #5b6878; font-size: 0.85em; margin-left: 8px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--tile, 180px), 1fr)); gap: 8px; }
.tile { position: relative; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 4px;
  cursor: pointer; user-select: none; outline-offset: -1px; }
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
"""


class LabelerGrid(JSComponent):
    """Images to paint: click paints one, shift-click paints a range, keys 1–9 pick the palette entry."""

    images = param.List(default=[], doc="[{id, src, caption, detail}] in page order")
    palette = param.List(default=[], doc="[{id (label id, null = erase), name, colour}]")
    selected = param.Integer(default=0, doc="Index of the palette entry that paints")
    painted = param.Dict(default={}, doc="image id (str) -> label id or None (erase)")
    tile_width = param.Integer(default=180)

    _stylesheets: ClassVar[list[str]] = [LABELER_CSS]

    _esm = """
export function render({ model, el }) {
  const root = document.createElement('div');
  const bar = document.createElement('div'); bar.className = 'palette';
  const grid = document.createElement('div'); grid.className = 'tiles';
  root.append(bar, grid);
  let tiles = [];
  let anchor = null;

  const entry = () => model.palette[model.selected] || null;
  const named = (id) => model.palette.find((p) => p.id === id) || null;

  function paint(ids) {
    const e = entry();
    if (!e) { return; }
    const next = Object.assign({}, model.painted);
    for (const id of ids) { next[String(id)] = e.id; }
    model.painted = next;
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
    const hint = document.createElement('span'); hint.className = 'hint';
    hint.textContent = 'click paints, shift-click paints a range, keys 1-9 pick';
    bar.append(hint);
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

  function drawGrid() {
    grid.style.setProperty('--tile', model.tile_width + 'px');
    grid.replaceChildren();
    anchor = null;
    tiles = model.images.map((im, i) => {
      const tile = document.createElement('div');
      tile.className = 'tile';
      tile.dataset.id = String(im.id);
      tile.dataset.index = String(i);
      const img = document.createElement('img');
      img.src = im.src; img.alt = im.caption || ''; img.loading = 'lazy'; img.draggable = false;
      const tag = document.createElement('div'); tag.className = 'tag';
      const cap = document.createElement('div'); cap.className = 'cap'; cap.textContent = im.caption || '';
      const now = document.createElement('div'); now.className = 'now'; now.textContent = im.detail || '';
      tile.append(img, tag, cap, now);
      tile.addEventListener('click', (ev) => {
        let ids = [im.id];
        if (ev.shiftKey && anchor !== null) {
          const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
          ids = model.images.slice(a, b + 1).map((x) => x.id);
        }
        if (anchor !== null && tiles[anchor]) { tiles[anchor].classList.remove('anchor'); }
        anchor = i;
        tile.classList.add('anchor');
        paint(ids);
      });
      grid.append(tile);
      return tile;
    });
    restyle();
  }

  function restyle() { model.images.forEach((im, i) => tiles[i] && styleTile(tiles[i], im)); }

  function onKey(ev) {
    const target = ev.composedPath ? ev.composedPath()[0] : ev.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : '';
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    if (ev.key >= '1' && ev.key <= '9') {
      const i = Number(ev.key) - 1;
      if (i < model.palette.length) { model.selected = i; ev.preventDefault(); }
    }
  }
  document.addEventListener('keydown', onKey);
  model.on('remove', () => document.removeEventListener('keydown', onKey));

  model.on('palette', () => { drawPalette(); restyle(); });
  model.on('selected', drawPalette);
  model.on('images', drawGrid);
  model.on('tile_width', drawGrid);
  model.on('painted', restyle);
  drawPalette();
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
