// Opens a page of examples/web in headless Chromium (Debian's /usr/bin/chromium, driven by
// puppeteer-core from examples/web/node_modules), waits until the page says it is done
// (document.body.dataset.state 'done' or 'error') and prints one JSON line: the page's
// window.lastResult and window.lastError, the texts it shows, its console, and the requests it
// made (any to another host than the page's is aborted and listed under "external").
//
//   node tests/web/run_page.mjs URL [--timeout 180000] [--screenshot out.png]
import {createRequire} from 'node:module';

const require = createRequire(new URL('../../examples/web/package.json', import.meta.url));
const puppeteer = require('puppeteer-core');

const [url, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const at = rest.indexOf(`--${name}`);
  return at >= 0 ? rest[at + 1] : fallback;
};
const timeout = Number(option('timeout', 180000));
const screenshot = option('screenshot', null);
const origin = new URL(url).origin;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // MediaPipe converts the image with WebGL: SwiftShader's, asked for (the automatic fallback
  // to it is deprecated in Chromium).
  args: ['--no-sandbox', '--headless=new', '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader'],
});
const out = {console: [], requests: [], external: [], failed: []};
try {
  const page = await browser.newPage();
  page.on('console', (message) => out.console.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => out.console.push(`pageerror: ${error.message}`));
  page.on('requestfailed', (request) => out.failed.push(request.url()));
  await page.setRequestInterception(true);
  page.on('request', (request) => {
    const target = request.url();
    if (target.startsWith(origin + '/') || /^(blob|data):/.test(target)) {
      out.requests.push(target.slice(origin.length));
      request.continue();
    } else {
      out.external.push(target);
      request.abort();
    }
  });
  await page.setViewport({width: 1000, height: 900});
  await page.goto(url, {waitUntil: 'load', timeout});
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state),
    {timeout, polling: 200});
  Object.assign(out, await page.evaluate(() => ({
    state: document.body.dataset.state, lastResult: window.lastResult,
    lastError: window.lastError, status: document.getElementById('status').textContent,
    error: document.getElementById('error').textContent})));
  if (screenshot) await page.screenshot({path: screenshot, fullPage: true});
} catch (error) {
  out.state = 'timeout';
  out.exception = String(error.message ?? error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
