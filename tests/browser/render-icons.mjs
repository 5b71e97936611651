// Renders the web app's PNG icons from src/web/favicon.svg with the same headless Chromium the
// browser tests use. The PNGs are committed; run this again only when the favicon changes:
//   cd tests/browser && npm ci && node render-icons.mjs
// "any" icons are the favicon as it is (rounded square, transparent corners). Maskable icons
// (and Apple's touch icon, which iOS rounds itself) fill the whole square with the favicon's
// blue and keep the picture inside the central 80 % circle that every launcher's mask leaves.
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';

const WEB = new URL('../../src/web/', import.meta.url);
const svg = readFileSync(new URL('favicon.svg', WEB), 'utf8');
const background = svg.match(/<rect[^>]*fill="([^"]+)"/)[1];
const inner = svg.replace(/^<svg[^>]*>/, '').replace(/<\/svg>\s*$/, '').replace(/<rect[^>]*\/>/, '');

/** The favicon's picture on a full-bleed square, scaled by `scale` about the centre. */
const fullBleed = (scale) =>
  `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" fill="${background}"/>` +
  `<g transform="translate(32 32) scale(${scale}) translate(-33 -33)">${inner}</g></svg>`;

const ICONS = [
  ['icon-192.png', 192, svg],
  ['icon-512.png', 512, svg],
  ['icon-maskable-192.png', 192, fullBleed(0.7)],
  ['icon-maskable-512.png', 512, fullBleed(0.7)],
  ['apple-touch-icon.png', 180, fullBleed(0.82)],
];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  for (const [name, size, source] of ICONS) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    const sized = source.replace('<svg ', `<svg width="${size}" height="${size}" `);
    await page.setContent(`<!doctype html><body style="margin:0">${sized}</body>`);
    await page.screenshot({ path: new URL(name, WEB).pathname, omitBackground: true });
    await page.close();
    console.log(`${name} ${size}x${size}`);
  }
} finally {
  await browser.close();
}
